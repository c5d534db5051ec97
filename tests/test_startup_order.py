"""What the console does before its first readable screen, and what it leaves for after.

One host's console: the move recovery (the move modules, the SQLite journal) starts once
the host screen has drawn the host's first processes, not before them; a host that never
sends any does not keep it from starting (a timer starts it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmaos_tui import app as app_module
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.widgets.process_table import ProcessTable
from tests.helpers import RECORDING, scripted, wait_for


async def test_one_hosts_recovery_starts_after_its_first_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its lines a tenth of a second apart: the first frame is drawn before the processes come.
    # The timer that starts the recovery anyway is put out of reach: on a starved machine
    # the rows may take longer than its 2 s, and this test is about the rows.
    monkeypatch.setattr(app_module, "RECOVER_AFTER_S", 120.0)
    app = LlmaosApp([ReplayLink(RECORDING, name="rec", delay=0.1)], cursor_blink=False,
                    audit=AuditLog(tmp_path / "audit.jsonl"))  # fmt: skip
    rows_when_started: list[int] = []
    start = app._start_recovery

    def spy() -> None:
        if not app._recovery_started:
            rows_when_started.append(app.screen.query_one(ProcessTable).row_count)
        start()

    app._start_recovery = spy  # type: ignore[method-assign]
    async with app.run_test(size=(160, 45)):
        await wait_for(lambda: bool(rows_when_started), what="the recovery started")
        assert isinstance(app.screen, HostScreen)
        assert rows_when_started[0] >= 5
        await wait_for((tmp_path / "moves.sqlite").exists, what="the journal opened")


async def test_a_host_without_processes_does_not_hold_the_recovery(tmp_path: Path) -> None:
    app = LlmaosApp([scripted("silent")], cursor_blink=False,
                    audit=AuditLog(tmp_path / "audit.jsonl"))  # fmt: skip
    async with app.run_test(size=(160, 45)):
        assert isinstance(app.screen, HostScreen)
        await wait_for(
            (tmp_path / "moves.sqlite").exists,
            timeout=app_module.RECOVER_AFTER_S + 15,
            what="the journal opened",
        )
        assert app.screen.query_one(ProcessTable).row_count == 0
