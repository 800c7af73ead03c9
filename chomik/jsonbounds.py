"""JSON bodies with bounded nesting and number length, checked before any parser.

Python's parser recurses once per level (about 1,000 levels raise RecursionError)
and refuses integers of more than 4,300 digits with a ValueError; both would
otherwise reach the views, the rate limiter or webargs as a 500.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_LENGTH = 100


class JsonBoundsError(ValueError):
    """A JSON text nested too deeply or with a number literal too long."""


def _number(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        if len(text) > MAX_NUMBER_LENGTH:
            raise JsonBoundsError(
                f"A number of more than {MAX_NUMBER_LENGTH} characters"
            )
        return kind(text)

    return parse


def _refuse_constant(name: str) -> Any:
    raise JsonBoundsError(f"{name} is not JSON")


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed value (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level + 1)
            if level + 1 > MAX_DEPTH:
                break
            stack.extend((item, level + 1) for item in node)
    return deepest


def loads(text: str | bytes) -> Any:
    """Parse JSON, refusing deep nesting, long numbers and NaN/Infinity."""
    try:
        value = json.loads(
            text,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_refuse_constant,
        )
    except RecursionError as exc:
        raise JsonBoundsError(f"Nested more than {MAX_DEPTH} levels deep") from exc
    if depth(value) > MAX_DEPTH:
        raise JsonBoundsError(f"Nested more than {MAX_DEPTH} levels deep")
    return value
