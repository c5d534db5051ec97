"""The one sanitiser for untrusted host text: what it escapes, what it leaves, properties.

Also the console's helpers over it (a cleaned Rich Text keeps its styles, a table cell
is never read as markup) and the CLI's ASCII-only JSON for the agent's ``sample``.
"""

from __future__ import annotations

import json
import sys
import unicodedata

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from rich.text import Text

from llmaos_agent.cli import ascii_json
from llmaos_agent.safetext import clean, clean_lines, is_clean
from llmaos_tui.widgets.text import safe, safe_cell, safe_lines, safe_log, safe_text

C0 = {chr(c) for c in range(0x20)}
C1 = {chr(c) for c in range(0x80, 0xA0)}
BIDI_AND_FORMAT = {
    "\u061c", *map(chr, range(0x200B, 0x2010)), *map(chr, range(0x202A, 0x202F)),
    "\u2028", "\u2029", *map(chr, range(0x2060, 0x2065)), *map(chr, range(0x2066, 0x2070)),
    "\ufeff", "\ufff9", "\ufffa", "\ufffb",
}  # fmt: skip
HOSTILE = [
    "\x1b]2;PWNED\x07",  # OSC: set the window title
    "\x1b[2J",  # CSI: clear the screen
    "\x9b2J",  # C1 CSI
    "evil\u202etxt.exe",  # right-to-left override
    "a\u200bb",  # zero-width space
    "\u2066isolate\u2069",
    "\x7f",
    "\x1bP+q\x1b\\",  # DCS
]


def _unsafe(ch: str, keep_newlines: bool = False) -> bool:
    if keep_newlines and ch in "\n\t":
        return False
    return (
        ch in C0
        or ch in C1
        or ch == "\x7f"
        or ch in BIDI_AND_FORMAT
        or (unicodedata.category(ch) in ("Cf", "Cs") and ch != "\xad")
    )


# ---------------------------------------------------------------------------- examples


def test_the_named_cases() -> None:
    assert clean("\x1b]2;PWNED\x07") == "\\e]2;PWNED\\a"
    assert clean("\x1b[2J") == "\\e[2J"
    assert clean("\x9b2J") == "\\x9b2J"
    assert clean("x\x7fy") == "x\\x7fy"
    assert clean("evil\u202etxt") == "evil\\u202etxt"
    assert clean("a\u200bb") == "a\\u200bb"
    assert clean("\u2066x\u2069") == "\\u2066x\\u2069"
    assert clean("\x00\x08\r") == "\\x00\\b\\r"
    assert clean("tag\U000e0041") == "tag\\U000e0041"  # a Cf beyond the listed ones


def test_newlines_and_tabs_only_when_asked() -> None:
    assert clean("a\nb\tc") == "a\\nb\\tc"
    assert clean("a\nb\tc", keep_newlines=True) == "a\nb\tc"
    assert clean("a\r\nb", keep_newlines=True) == "a\\r\nb"  # CR never: it rewrites lines


def test_plain_text_is_unchanged_and_the_same_object() -> None:
    for s in ["", "python serve.py --port 8000", "[kworker/0:1]", "ünïcödé 中文 ✓ β", "a\xadb"]:
        assert clean(s) is s
        assert is_clean(s)


def test_not_a_string_is_shown_as_its_str() -> None:
    assert clean(42) == "42"
    assert clean(None) == "None"


def test_clean_lines_splits_at_every_line_break_and_keeps_tabs() -> None:
    text = "one\ttwo\r\nthree\rfour\x0bfive\x85six\u2028seven\x1b[2J"
    assert clean_lines(text) == ["one\ttwo", "three", "four", "five", "six", "seven\\e[2J"]


# -------------------------------------------------------------------------- properties


@given(st.text())
def test_nothing_unsafe_survives(s: str) -> None:
    out = clean(s)
    assert not any(_unsafe(c) for c in out), ascii(out)
    assert clean(out) == out  # idempotent: what it writes is plain


@given(st.text())
def test_nothing_unsafe_survives_with_newlines_kept(s: str) -> None:
    out = clean(s, keep_newlines=True)
    assert not any(_unsafe(c, keep_newlines=True) for c in out), ascii(out)
    assert out.count("\n") == s.count("\n")
    for line in clean_lines(s):
        assert "\n" not in line and not any(_unsafe(c, keep_newlines=True) for c in line)


@given(st.text(alphabet=st.characters(codec="utf-8").filter(lambda c: not _unsafe(c))))
def test_printable_text_is_left_alone(s: str) -> None:
    assert clean(s) == s


@given(st.lists(st.sampled_from([*HOSTILE, "plain", " ", "[red]x[/]", "é"]), max_size=8))
def test_hostile_pieces_are_all_escaped(parts: list[str]) -> None:
    s = "".join(parts)
    out = clean(s)
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    assert out.count("\\e") >= s.count("\x1b")


# ----------------------------------------------------------------- the console's helpers


def test_safe_is_text_never_markup() -> None:
    t = safe("[red]x[/] [link=http://evil]y[/link] \x1b[2J")
    assert isinstance(t, Text)
    assert t.plain == "[red]x[/] [link=http://evil]y[/link] \\e[2J"
    assert t.spans == []


def test_safe_cell_turns_a_str_into_text_and_cleans_a_text() -> None:
    cell = safe_cell("[/]\u202e")  # as a str DataTable cell, "[/]" would raise
    assert isinstance(cell, Text) and cell.plain == "[/]\\u202e"
    assert safe_cell(3) == 3
    plain = Text("fine", style="bold")
    assert safe_text(plain) is plain


def test_safe_text_keeps_styles_and_lines() -> None:
    t = Text("ok ", style="bold")
    t.append("x\x1b]2;P", "red")
    t.append("\nnext\u200b")
    out = safe_text(t)
    assert out.plain == "ok x\\e]2;P\nnext\\u200b"
    assert out.style == "bold"
    (span,) = [s for s in out.spans if s.style == "red"]
    assert out.plain[span.start : span.end] == "x\\e]2;P"


def test_safe_log_and_lines() -> None:
    assert safe_log("a\tb\r\n\x1b[2Jc\n").plain == "a\tb\n\\e[2Jc"
    assert safe_lines(["head:", "  \x9b x"]).plain == "head:\n  \\x9b x"


# ------------------------------------------------------------------------------- JSON


@given(st.dictionaries(st.text(max_size=5), st.text(), max_size=4))
def test_ascii_json_is_the_same_document_in_ascii(doc: dict[str, str]) -> None:
    out = ascii_json(msgspec.json.encode(doc))
    assert out.isascii() and "\x7f" not in out and "\x1b" not in out
    assert json.loads(out) == doc


def test_console_json_escapes_control_characters_itself() -> None:
    """The console's ``--json`` goes through ``json.dumps`` (ensure_ascii): exact, and no
    raw control, C1 or bidi character in what it prints."""
    s = "".join(HOSTILE)
    out = json.dumps({"name": s})
    assert out.isascii() and "\x1b" not in out and "\x7f" not in out
    assert json.loads(out)["name"] == s


def test_plain_text_is_cheap() -> None:
    """The common path returns at once (every table cell and CLI field goes through it)."""
    import timeit

    line = "python -m vllm.entrypoints.openai.api_server --model llama --port 8000"
    per_call = min(timeit.repeat(lambda: clean(line), number=2000, repeat=3)) / 2000
    assert per_call < (50e-6 if sys.flags.dev_mode else 20e-6), per_call


def test_every_code_point() -> None:
    """All of Unicode at once: nothing unsafe comes out, everything else stays."""
    every = "".join(chr(c) for c in range(0x110000))
    out = clean(every)
    assert not any(_unsafe(c) for c in out)
    kept = {c for c in every if not _unsafe(c)}
    assert kept <= set(out)
