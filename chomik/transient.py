"""Transient failures: something outside the work is unavailable for a while.

`TransientError` is the one base class for "try again later, nothing is wrong with
the request": the typed clients' transport failures and their 5xx and 429 answers
subclass it. Loops that must never give up on an outage (the consumer loop) ask
`is_transient(exc)`, which also finds a transient error wrapped by another one.
"""

from __future__ import annotations

__all__ = ["TransientError", "causes", "is_transient"]

from collections.abc import Iterator


class TransientError(Exception):
    """A remote service is unavailable for now (down, overloaded, timing out)."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its cause chain (`__cause__`, or an unsuppressed `__context__`)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` or any error in its cause chain is a `TransientError`."""
    return any(isinstance(e, TransientError) for e in causes(exc))
