"""Small helpers the console tests share."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from llmaos_tui.fleet.local import LocalLink

DATA = Path(__file__).resolve().parent / "data"
RECORDING = DATA / "recorded_stream.ndjson"


def scripted(mode: str, *extra: str, name: str = "scripted") -> LocalLink:
    """A link to tests/data/scripted_agent.py in the given misbehaviour mode."""
    return LocalLink(name, [sys.executable, str(DATA / "scripted_agent.py"), mode, *extra])


async def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")
        await asyncio.sleep(0.05)
