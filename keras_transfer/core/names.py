"""Helpers that turn a misspelt name, or another library's long error, into a message a user can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to `n` entries of `choices` that look most like `name`, best first."""
    choices = list(choices)
    scored = []
    for position, choice in enumerate(choices):
        matcher = difflib.SequenceMatcher(None, name, choice)
        if matcher.real_quick_ratio() >= 0.5 and matcher.quick_ratio() >= 0.5 and matcher.ratio() >= 0.5:
            scored.append((-matcher.ratio(), position, choice))
    # Equal scores keep the choices' own order (difflib would put 'lite4' before 'lite0').
    found = [choice for _, _, choice in sorted(scored)[:n]]
    if not found:
        # Prefix matches catch "resnet" -> "resnet50" that difflib scores low.
        found = [c for c in choices if c.startswith(name) or name.startswith(c)][:n]
    return found


def unknown_name_message(kind: str, name: str, choices: Iterable[str], *, where: str = "") -> str:
    """Format "unknown <kind> 'x' (in where); did you mean 'y'?" with the valid choices."""
    choices = list(choices)
    near = closest(name, choices)
    msg = f"unknown {kind} {name!r}"
    if where:
        msg += f" in {where}"
    if near:
        msg += "; did you mean " + " or ".join(repr(c) for c in near) + "?"
    if len(choices) <= 40:
        msg += f" Valid {kind}s: {', '.join(choices)}."
    else:
        msg += f" ({len(choices)} valid {kind}s; the first and last: {', '.join(choices[:5])}, ..., {', '.join(choices[-5:])})."
    return msg


def printable(text: str) -> str:
    """`text` safe to print on a terminal: characters that are not printable (escape sequences,
    carriage returns, line breaks, bidi overrides) shown as `\\x1b`-style escapes, the rest as is.

    File and class names come from whoever made the data; printed raw, `ESC[2J` clears the
    user's screen and a carriage return overwrites the line before it.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def first_line(error: BaseException, limit: int = 300) -> str:
    """A runtime's error message cut to its first non-empty line (runtimes append stack traces)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
