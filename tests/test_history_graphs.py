"""The host screen's per-core and per-GPU history sparklines (issue 16), and each GPU
process's SM and memory-bandwidth share in the GPU panel.

The host is a replayed agent stream (:func:`write_recording`): the recorded stream's
hello and live samples, its history message replaced by :data:`HISTORY` samples of known
per-core and per-GPU figures, and its GPU processes given NVML's utilisation shares as a
protocol-6 agent sends them. The stream plays at once, so what the screen shows right
after attaching can only have come from the agent's history ring; what a user reads off
the screen (the sparkline's characters) is checked against the recording's own figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from textual.pilot import Pilot

from llmaos_agent.protocol import PROTOCOL_VERSION, Sample
from llmaos_tui.app import HostChanged, LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.widgets.core_bars import CoreBars
from llmaos_tui.widgets.gpu_panel import GpuPanel
from llmaos_tui.widgets.graph import sparkline_cell
from tests.data import make_big_recordings as big
from tests.helpers import RECORDING, wait_for
from tests.test_host_layout import cores_drawn, visible_lines
from tests.test_line_widgets import _mismatches

HISTORY = 150
"""History samples in the recording: more than any sparkline at these sizes shows."""
SHARES = {7848: (0.45, 0.12)}
"""pid -> (SM, memory bandwidth) share given to the recording's GPU processes; the
other GPU process gets none (a device that does not report them)."""


def _core_load(k: int, core: int) -> float:
    # A sawtooth a core, out of step: every level of the sparkline shows.
    return ((k * 7 + core * 31) % 101) / 100


def _gpu_util(k: int, gpu: int) -> float:
    return ((k * 3 + gpu * 50) % 101) / 100


def _gpu_mem(k: int, gpu: int, total: int) -> int:
    return total * ((k * 5 + gpu * 20) % 101) // 100


def write_recording(path: Path, source: Path = RECORDING) -> Path:
    """``source`` (the recorded stream, or one of tests/data/big) with a
    :data:`HISTORY`-sample history of known figures (just before its first live sample)
    and GPU process shares; returns ``path``."""
    msgs = [json.loads(ln) for ln in source.read_text().splitlines() if ln.strip()]
    # The console's own protocol: the figures are those of a current agent.
    msgs[0]["params"]["protocol"] = PROTOCOL_VERSION
    hist = next(m for m in msgs if m.get("method") == "history")
    template = hist["params"]["samples"][0]
    first_t = next(m["params"]["t"] for m in msgs if m.get("method") == "sample")
    samples = []
    for k in range(HISTORY):
        s = json.loads(json.dumps(template))
        s["t"] = first_t - (HISTORY - k) * 0.25
        s["seq"] = k + 1
        s["cpu"] = [_core_load(k, c) for c in range(len(s["cpu"]))]
        for j, g in enumerate(s["gpus"]):
            g["util"] = _gpu_util(k, j)
            g["mem_used"] = _gpu_mem(k, j, g["mem_total"])
        samples.append(s)
    hist["params"]["samples"] = samples
    for m in msgs:
        if m.get("method") != "sample":
            continue
        m["params"]["seq"] += HISTORY
        for g in m["params"].get("gpus") or []:
            g["procs"] = [
                [p[0], p[1], *SHARES[p[0]]] if p[0] in SHARES else p[:2] for p in g["procs"]
            ]
    path.write_text("".join(json.dumps(m) + "\n" for m in msgs))
    return path


def app_for(path: Path, theme: str = "llmaos-dark") -> LlmaosApp:
    return LlmaosApp([ReplayLink(path, name="gpu-a")], theme=theme, cursor_blink=False)


def recorded(path: Path) -> list[dict[str, Any]]:
    """Every sample of the recording, history first, oldest first."""
    msgs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    out: list[dict[str, Any]] = []
    for m in msgs:
        if m.get("method") == "history":
            out.extend(m["params"]["samples"])
        elif m.get("method") == "sample":
            out.append(m["params"])
    return out


async def played(pilot: Pilot[None], samples: int) -> tuple[HostScreen, HostState]:
    app = pilot.app
    assert isinstance(app, LlmaosApp)
    host = next(iter(app.fleet.hosts.values()))
    await wait_for(
        lambda: host.status is HostStatus.UP and bool(host.procs) and host.io.version >= samples,
        what="the recording played",
    )
    await pilot.pause(0.3)  # the screen drawn from it
    screen = app.screen
    assert isinstance(screen, HostScreen)
    return screen, host


def spark(values: list[float | None], width: int) -> str:
    """What a sparkline of whole percents (as the rings keep them) shows."""
    return sparkline_cell([None if v is None else round(v * 100) / 100 for v in values], width)


async def test_core_and_gpu_sparklines_are_full_from_the_history_ring(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "history.ndjson")
    samples = recorded(path)
    async with app_for(path).run_test(size=(130, 40)) as pilot:
        screen, _host = await played(pilot, len(samples))
        bars, gpus = screen.query_one(CoreBars), screen.query_one(GpuPanel)
        core_lines = visible_lines(screen, bars)
        assert sorted(cores_drawn(core_lines)) == [0, 1], core_lines
        w = bars.spark_width
        assert w >= 20, f"no room for a sparkline? {core_lines}"
        text = "\n".join(core_lines)
        for core in range(2):
            want = spark([s["cpu"][core] for s in samples][-w:], w)
            assert " " not in want  # full: the history ring holds more than it shows
            assert want in text, f"core {core}: want {want!r} in\n{text}"
        gpu_lines = visible_lines(screen, gpus)
        gtext = "\n".join(gpu_lines)
        gw = gpus.spark_width
        assert gw >= 10, gpu_lines
        for j in range(2):
            util = [s["gpus"][j]["util"] for s in samples][-gw:]
            mem = [s["gpus"][j]["mem_used"] / s["gpus"][j]["mem_total"] for s in samples][-gw:]
            assert spark(util, gw) in gtext, f"GPU{j} util: want {spark(util, gw)!r} in\n{gtext}"
            assert spark(mem, gw) in gtext, f"GPU{j} memory: want {spark(mem, gw)!r} in\n{gtext}"


async def test_a_live_sample_moves_the_sparkline_even_with_the_same_loads(
    tmp_path: Path,
) -> None:
    path = write_recording(tmp_path / "history.ndjson")
    samples = recorded(path)
    async with app_for(path).run_test(size=(130, 40)) as pilot:
        screen, host = await played(pilot, len(samples))
        bars = screen.query_one(CoreBars)
        w = bars.spark_width
        last = host.sample
        assert last is not None
        loads = [s["cpu"][0] for s in samples]
        # The same loads again, twice: the bars do not change, the history does.
        for n in (1, 2):
            again = msgspec.structs.replace(last, t=last.t + n, seq=last.seq + n)
            assert isinstance(again, Sample)
            host.on_sample(again)
            loads.append(last.cpu[0])
            pilot.app.post_message(HostChanged(host.name))
            want = spark(loads[-w:], w)
            await wait_for(
                lambda want=want: want in "\n".join(visible_lines(screen, bars)),  # type: ignore[misc]
                what=f"core 0's sparkline {want!r} after {n} more samples",
            )


async def test_gpu_processes_show_their_sm_and_bandwidth_shares(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "history.ndjson")
    async with app_for(path).run_test(size=(130, 40)) as pilot:
        screen, host = await played(pilot, len(recorded(path)))
        lines = visible_lines(screen, screen.query_one(GpuPanel))
        name = host.procs[7848].name
        with_share = [ln for ln in lines if "7848 " in ln]
        assert with_share and f"7848 {name} 18G sm 45% gmbw 12%" in with_share[0], lines
        # A process the device gave no share for says none (not "sm 0%").
        other = [ln for ln in lines if "7845 " in ln]
        assert other and "sm " not in other[0].split("7845 ", 1)[1], lines


async def test_no_sparklines_where_there_is_no_room(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "history.ndjson")
    async with app_for(path).run_test(size=(60, 24)) as pilot:
        screen, _host = await played(pilot, len(recorded(path)))
        bars = screen.query_one(CoreBars)
        lines = visible_lines(screen, bars)
        assert bars.spark_width == 0
        assert sorted(cores_drawn(lines)) == [0, 1], lines
        assert not any(ch in "".join(lines) for ch in "▁▂▃▄▅▆▇"), lines


async def test_the_line_drawn_sparklines_match_their_text(tmp_path: Path) -> None:
    """The panels' line path draws the sparklines segment for segment and style for
    style as Textual draws their Rich Text (tests/test_line_widgets.py's check)."""
    path = write_recording(tmp_path / "history.ndjson", big.path(8, 2))
    async with app_for(path).run_test(size=(200, 60)) as pilot:
        screen, _host = await played(pilot, len(recorded(path)))
        bars, gpus = screen.query_one(CoreBars), screen.query_one(GpuPanel)
        assert bars.spark_width and gpus.spark_width
        assert _mismatches(bars) + _mismatches(gpus) == []
