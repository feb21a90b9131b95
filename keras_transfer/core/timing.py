"""How long: durations read and written in words, a run's time budget, and a phase's estimate.

`parse_duration` reads what `--time-limit` takes (`90s`, `10m`, `1h`, `1.5h`); `TimeBudget` counts
a run's limit down from its start; `Eta` says once, from a phase's first items, how long the rest
of it will take. The first item is never timed: it traces the pass (or converts the model).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

DURATION_EXAMPLE = "10m (also 90s, 1h, 1.5h)"
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh])")
_SECONDS = {"s": 1, "m": 60, "h": 3600}
# Items timed after the first before a phase says how long it has left: enough to smooth a
# batch's jitter, few enough that the line comes early in a long phase.
ETA_AFTER = 5
# A phase with less than this left (seconds) says nothing: its end comes before the line is read.
ETA_MIN_SECONDS = 10.0


def parse_duration(text: str) -> float:
    """Seconds in a duration written as a number and a unit: `90s`, `10m`, `1h`, `1.5h`.

    Raises ValueError for anything else (a bare number, another unit, zero).
    """
    match = _DURATION.fullmatch(str(text).strip().lower())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration; write a number and s, m or h: {DURATION_EXAMPLE}")
    return float(match[1]) * _SECONDS[match[2]]


def format_duration(seconds: float) -> str:
    """A duration the way a person says it: `0.52 s`, `36 s`, `3 min`, `1 h 05 min`."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class TimeBudget:
    """A run's time limit in seconds (None: no limit), counted from when the budget was made."""

    limit: float | None = None
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        """Seconds left (infinite without a limit, 0 once spent)."""
        if self.limit is None:
            return math.inf
        return max(0.0, self.limit - (time.monotonic() - self.started))

    @property
    def spent(self) -> bool:
        """True once the limit has passed."""
        return self.remaining() <= 0

    def describe(self) -> str:
        """The limit in words, for log lines: `10 min`."""
        return "no limit" if self.limit is None else format_duration(self.limit)


def worth_saying(left: float) -> bool:
    """Whether a phase with `left` seconds to go is long enough to say so (`ETA_MIN_SECONDS`)."""
    return left >= ETA_MIN_SECONDS


class Eta:
    """One line, once, saying how long a phase of `total` items has left, from its first items.

    Call `step(done)` after each item; after the first `ETA_AFTER` items past the first it logs
    `"{phase}: about 40 s left (75 more batches at ~0.52 s)"`, unless the phase is nearly done
    or has less than `ETA_MIN_SECONDS` left.
    """

    def __init__(self, phase: str, total: int, unit: str, log: Callable[[str], None], *, after: int = ETA_AFTER):
        self.phase, self.total, self.unit, self.log, self.after = phase, total, unit, log, after
        self.first: float | None = None
        self.said = False

    def step(self, done: int) -> None:
        now = time.monotonic()
        if done == 1:
            self.first = now
            return
        if self.said or self.first is None or done - 1 < self.after:
            return
        self.said = True
        left = self.total - done
        if left < self.after:
            return  # nearly done: the estimate would arrive with the end
        per = (now - self.first) / (done - 1)
        if not worth_saying(per * left):
            return
        units = self.unit + ("es" if self.unit.endswith(("s", "ch", "sh", "x")) else "s")
        self.log(f"{self.phase}: about {format_duration(per * left)} left ({left} more {units} at "
                 f"~{format_duration(per)})")
