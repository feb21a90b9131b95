"""One table of what each setting may be, checked by one function with one message format.

After scikit-learn's `_parameter_constraints`: choices and ranges are declared once, as data, next
to the settings they constrain (`DataConfig`, `HeadConfig`, the run config), and `check_constraints`
reports the first violation as "<key path> must be ..., got ..." — or, for a misspelt choice,
"unknown value ... in <key path>; did you mean ...?". Code below the boundary never re-checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from keras_transfer.core.names import unknown_name_message


@dataclass(frozen=True)
class OneOf:
    """The value must be one of `choices` (strings get a "did you mean" suggestion)."""

    choices: tuple

    def violation(self, value: Any, where: str) -> str | None:
        if value in self.choices:
            return None
        if isinstance(value, str) and all(isinstance(c, str) for c in self.choices):
            return unknown_name_message("value", value, self.choices, where=where)
        return f"{where} must be one of {', '.join(map(_show, self.choices))}, got {_show(value)}"


@dataclass(frozen=True)
class Interval:
    """A number in a range; `closed` says which ends belong to it ("both", "left", "right", "neither")."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    integer: bool = False

    def violation(self, value: Any, where: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and not isinstance(value, int)):
            return f"{where} must be {'an integer' if self.integer else 'a number'} {self.describe()}, got {_show(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            # inf passed every open-ended range: learning_rate: .inf trained to NaN weights, exit 0.
            return f"{where} must be a finite number {self.describe()}, got {_show(value)}"
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        if low_ok and high_ok:
            return None
        return f"{where} must be {self.describe()}, got {_show(value)}"

    def describe(self) -> str:
        if self.high is None:
            return f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}"
        if self.low is None:
            return f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


Constraint = OneOf | Interval


def _show(value: Any) -> str:
    if value is True or value is False:
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def check_constraints(obj: Any, table: Mapping[str, Constraint], *, prefix: str = "",
                      error: type[Exception] = ValueError) -> None:
    """Check every `key.path` of `table` in `obj` (a dataclass tree or mapping); raise on the first violation.

    A `*` in a path walks every item of a list or mapping (`training.stages.*.epochs`); a None value is
    skipped (optional settings are constrained only when given). `prefix` is prepended to the key
    paths in messages (`data.` for a DataConfig checked on its own).
    """
    for path, constraint in table.items():
        for where, value in _values_at(obj, path.split("."), prefix.rstrip(".")):
            if value is None:
                continue
            message = constraint.violation(value, where)
            if message:
                raise error(message)


def _values_at(obj: Any, parts: list[str], where: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield where, obj
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        items = obj.items() if isinstance(obj, Mapping) else enumerate(obj or ())
        for key, item in items:
            yield from _values_at(item, rest, f"{where}.{key}" if where else str(key))
        return
    value = obj.get(head) if isinstance(obj, Mapping) else getattr(obj, head, None)
    if value is None and rest:
        return
    yield from _values_at(value, rest, f"{where}.{head}" if where else head)
