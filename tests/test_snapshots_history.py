"""Snapshot tests of the host screen with history (issue 16): per-core sparklines in the
wide core cells, per-GPU utilisation and memory sparklines in the GPU detail form, and
the GPU processes' SM and memory-bandwidth shares, in both bundled themes.

The hosts are replayed streams with a known 150-sample history
(:func:`tests.test_history_graphs.write_recording`): the recorded stream (2 cores, 2
GPUs) at 130x40, and tests/data/big's 8-core 2-GPU host at 200x60, where 8 full cells
are wide enough for their sparklines. Regenerate after an intended change with
``pytest tests/test_snapshots_history.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from llmaos_tui.app import HostChanged, LlmaosApp
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.host import HostScreen
from tests.data import make_big_recordings as big
from tests.helpers import RECORDING, wait_for
from tests.test_history_graphs import HISTORY, app_for, write_recording

THEMES = ["llmaos-dark", "llmaos-light"]
CASES = [("2c-2g", RECORDING, (130, 40)), ("8c-2g", big.path(8, 2), (200, 60))]


async def _played(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, LlmaosApp)
    hosts = list(app.fleet.hosts.values())
    await wait_for(
        lambda: all(
            h.status is HostStatus.UP and h.procs and h.io.version > HISTORY for h in hosts
        ),
        what="the recording played",
    )
    # As tests/test_snapshots.py: the fleet β history stopped at a fixed length, so the
    # header does not depend on how fast this machine is.
    app.ticker.pause()
    app.fleet.beta_history.clear()
    for _ in range(3):
        app.fleet.tick()
    app.post_message(HostChanged(hosts[0].name))
    await pilot.pause(0.5)
    assert isinstance(app.screen, HostScreen)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize(("name", "source", "size"), CASES, ids=[c[0] for c in CASES])
def test_host_screen_with_history(
    snap_compare: object,
    tmp_path: Path,
    theme: str,
    name: str,
    source: Path,
    size: tuple[int, int],
) -> None:
    app = app_for(write_recording(tmp_path / f"{name}.ndjson", source), theme)
    assert snap_compare(app, terminal_size=size, run_before=_played)  # type: ignore[operator]
