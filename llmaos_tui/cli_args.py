"""The CLI's argument types: numbers bounded as the wire bounds them, so a bad value is an
argparse error (exit 2) with the value echoed back safely, never a traceback. Shared by
every ``cli*`` module (kept apart from cli.py so they need not import it back)."""

from __future__ import annotations

import argparse
import math
from typing import Any

PRIORITY_MIN, PRIORITY_MAX = -1000, 1000  # protocol.Priority
MAX_SIZE = (1 << 63) - 1
"""The largest memory size: the agent stores it in SQLite, whose integers are 64-bit."""
MAX_SECONDS = 7 * 86400.0
"""The longest timeout, settle or period the CLI takes (a week)."""
NO_HOSTS = "no hosts (drop --no-local, or add -H HOST)"
"""What a command that needs a host says when the arguments name none."""


def size(text: str) -> int:
    """``512M``, ``8G``, ``1.5T``, ``4096`` -> bytes; anything else (``inf``, ``nan``, a
    negative or beyond 2**63-1 bytes) is an argparse error."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    shown = ascii(text)  # the value echoed back, with nothing a terminal would obey
    try:
        value = float(num) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {shown} (try 512M or 8G)") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a size: {shown} (a finite number, try 8G)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"a size cannot be negative: {shown}")
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"too large: {shown} (at most {MAX_SIZE} bytes)")
    return int(value)


def bounded(lo: int, hi: int, what: str) -> Any:
    """An argparse type: a whole number in ``lo..hi`` (the wire's bounds)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a whole number: {text!a} ({what}: {lo}..{hi})"
            ) from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({what}: {lo}..{hi})")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


priority = bounded(PRIORITY_MIN, PRIORITY_MAX, "priority")


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 to a week."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!a}") from None
    if not 0 <= value <= MAX_SECONDS:  # false for nan too
        raise argparse.ArgumentTypeError(f"{text!a}: seconds from 0 to {MAX_SECONDS:.0f} (a week)")
    return value


def python_version(text: str) -> tuple[int, int]:
    """An argparse type: a Python version the agent runs on, ``3.10`` or newer."""
    parts = text.strip().split(".")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 2 for p in parts):
        raise argparse.ArgumentTypeError(f"not a Python version: {text!a} (e.g. 3.12)")
    version = (int(parts[0]), int(parts[1]))
    if version[0] != 3 or version[1] < 10:
        raise argparse.ArgumentTypeError(f"{text!a}: the agent needs Python 3.10 or newer")
    return version
