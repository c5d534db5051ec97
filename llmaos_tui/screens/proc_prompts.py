"""The dialogs that ask how to change a process, shared by the host screen and the
process detail screen: a nice value, a core list, a signal (chosen, then confirmed). Each
checks the answer as it is typed and hands the caller a value ready for the wire; the
caller posts the ChangeIntent, so read-only checks and the audit stay on one path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.app import App

from llmaos_tui.screens.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen

NICE_MIN, NICE_MAX = -20, 19
SIGNALS = ["TERM", "KILL", "INT", "HUP", "QUIT", "STOP", "CONT", "USR1", "USR2"]


def parse_cpulist(text: str, cores: int) -> list[int]:
    """``"0-3,8"`` -> ``[0, 1, 2, 3, 8]``; ValueError with a reason for anything else."""
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"{part!r} is not a core or a range like 0-3") from None
        if a > b or a < 0:
            raise ValueError(f"{part!r} is not a range")
        if b >= cores:
            raise ValueError(f"no core {b} on this host (0-{cores - 1})")
        out.update(range(a, b + 1))
    if not out:
        raise ValueError("name at least one core")
    return sorted(out)


def stepped_nice(nice: int | None, step: int) -> int | None:
    """``nice`` moved by ``step`` within -20..19; None when unknown or already at the end."""
    if nice is None:
        return None
    new = max(NICE_MIN, min(NICE_MAX, nice + step))
    return None if new == nice else new


def ask_nice(app: App[Any], target: str, nice: int | None, chosen: Callable[[int], None]) -> None:
    """Ask for a nice value for ``target`` (``pid N (name)``)."""

    def check(v: str) -> str:
        try:
            n = int(v)
        except ValueError:
            return "a whole number, -20 (highest) to 19 (lowest)"
        return "" if NICE_MIN <= n <= NICE_MAX else f"{n} is out of range -20..19"

    def done(v: str | None) -> None:
        if v is not None:
            chosen(int(v))

    app.push_screen(
        PromptScreen(f"Nice value for {target}", str(nice or 0),
                     "-20 highest priority … 19 lowest; lowering needs root", check),
        done,
    )  # fmt: skip


def ask_cores(
    app: App[Any], target: str, cores: int, affinity: str | None,
    chosen: Callable[[list[int]], None],
) -> None:  # fmt: skip
    """Ask for the cores ``target`` may run on, of the host's ``cores``."""

    def check(v: str) -> str:
        try:
            parse_cpulist(v, cores)
        except ValueError as exc:
            return str(exc)
        return ""

    def done(v: str | None) -> None:
        if v is not None:
            chosen(parse_cpulist(v, cores))

    app.push_screen(
        PromptScreen(f"Cores for {target}", affinity or f"0-{cores - 1}",
                     f"a core list such as 0-3,8 (this host: 0-{cores - 1})", check),
        done,
    )  # fmt: skip


def ask_signal(app: App[Any], target: str, host: str, chosen: Callable[[str], None]) -> None:
    """Ask which signal to send ``target`` on ``host``, then confirm it."""

    def confirmed(sig: str, yes: bool | None) -> None:
        if yes:
            chosen(sig)

    def picked(sig: str | None) -> None:
        if sig is not None:
            app.push_screen(
                ConfirmScreen(f"Send SIG{sig} to {target} on {host}?"), partial(confirmed, sig)
            )

    app.push_screen(ChoiceScreen(f"Signal for {target}", SIGNALS), picked)
