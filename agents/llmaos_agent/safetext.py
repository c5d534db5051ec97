"""Untrusted text made safe for a terminal: the one sanitiser every text output uses.

Everything a host reports (process names and command lines, user, request, container,
image and volume names, labels, host names, error texts, log lines) may hold control
characters that a terminal obeys: ESC sequences that set the title, clear the screen or
move the cursor, C1 controls (a lone 0x9b is a CSI on many terminals), DEL, and bidi or
zero-width format characters that make text read other than it is. :func:`clean` turns
each such character into a visible escape, as htop does, so the operator sees that it is
there and the terminal never acts on it. JSON output does not use this: it is exact, and
its encoder escapes control characters itself.

Stdlib only and cheap on the common path (plain text is returned as it is), since both
the agent's CLI and every widget of the console call it per cell.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "clean_lines", "is_clean"]

# C0 (but tab and newline, which callers that keep lines allow), DEL, C1; the bidi
# embeddings, overrides and isolates; zero-width and other invisible format characters;
# line and paragraph separators; the BOM; interlinear annotation marks.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"
    "\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb]"
)
_UNSAFE_NO_LINES = re.compile(_UNSAFE.pattern[:-1] + "\t\n]")

_NAMED = {"\x1b": "\\e", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x07": "\\a", "\x08": "\\b"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    return _hex(ord(ch))


def _hex(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def clean(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control and format character shown as an escape (``\\e``,
    ``\\x9b``, ``\\u202e``). Tabs and newlines are escaped too unless ``keep_newlines``
    (a log view that shows lines); a carriage return always is."""
    s = text if isinstance(text, str) else str(text)
    pat = _UNSAFE if keep_newlines else _UNSAFE_NO_LINES
    if pat.search(s) is None and not _has_other_format(s):
        return s
    s = pat.sub(_escape, s)
    if _has_other_format(s):
        s = "".join(_hex(ord(c)) if _is_format(c) else c for c in s)
    return s


def clean_lines(text: str) -> list[str]:
    """The lines of ``text`` (a log), each cleaned: split at every line boundary
    (``str.splitlines``: CR, VT, FF, FS-RS, NEL and U+2028/2029 too, so none of them is
    left to move the cursor), tabs kept (a log's columns), nothing else kept raw."""
    return [clean(line, keep_newlines=True) for line in text.splitlines()]


def is_clean(text: str) -> bool:
    """Whether ``text`` reaches a terminal as it is (nothing :func:`clean` would change)."""
    return clean(text) == text


def _is_format(c: str) -> bool:
    # Other format (Cf) characters beyond the listed ones (soft hyphen is harmless
    # and common in names, so it stays); lone surrogates cannot be drawn.
    return c != "\xad" and unicodedata.category(c) in ("Cf", "Cs")


def _has_other_format(s: str) -> bool:
    if s.isascii():
        return False
    return any(_is_format(c) for c in s)
