"""Transient failures: something outside the work is unavailable for a while.

`TransientError` is the one base class for "try again later, nothing is wrong with
the request": the typed clients' transport failures and their 5xx and 429 answers
subclass it. Loops that must never give up on an outage (the consumer loop) ask
`is_outage(exc)`, which also counts a database that is unavailable and finds an
outage wrapped by another error; web requests answer such an outage with a 503.
"""

from __future__ import annotations

__all__ = ["TransientError", "causes", "is_outage", "is_transient"]

from collections.abc import Iterator

import sqlalchemy as sa


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


# SQLSTATEs retried for as long as they last: deadlock and serialization failure
# depend on what other transactions did, not on the message; the server going away
# (class 08 connection, 53 out of resources, 57P01-57P03 shutting down or not yet
# accepting connections, 58 system error) is an outage. Every other SQLSTATE, such
# as a statement or lock timeout (57014, 55P03) or a value too large for an index
# (class 54), may be the message's own doing: retried a bounded number of times, then
# dead-lettered, so it never holds the partition forever.
_TRANSIENT_CODES = frozenset({"40P01", "40001", "57P01", "57P02", "57P03"})
_OUTAGE_CLASSES = frozenset({"08", "53", "58"})


def is_outage(exc: BaseException) -> bool:
    """Tell an outage (retry without end) from a fault of the message (the table above).

    Looks through the whole cause chain, so an outage wrapped by another error (a
    two-phase commit that failed because a database went away, a domain error
    raised from a client's `TransportError`) still counts.
    """
    for error in causes(exc):
        if isinstance(error, TransientError | sa.exc.TimeoutError):
            return True
        if isinstance(error, sa.exc.DBAPIError):
            code = getattr(error.orig, "pgcode", None)
            if code:
                return code in _TRANSIENT_CODES or code[:2] in _OUTAGE_CLASSES
            # No SQLSTATE: the server never answered (connection refused or lost).
            if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
                return True
    return False
