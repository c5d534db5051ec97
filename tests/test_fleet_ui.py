"""The fleet screen with several hosts (heat map, sorting, filtering) and the trust dialog.

The hosts play the recorded agent stream; variants of it, with other core counts
and loads, are written to tmp_path so the hosts differ the way real ones do.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Input, Static

from llmaos_agent.protocol import GpuSample, Memory, Sample
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.screens.fleet import FleetScreen, HostDetail, link_facts
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.trust import TrustScreen
from llmaos_tui.widgets.heatmap import CORE, GPU, GPU_MARK, HeatMap
from llmaos_tui.widgets.host_table import HostFacts, HostTable, host_matches
from tests.helpers import RECORDING, scripted, wait_for

SIZE = (140, 45)
LOADS = {"delta": 0.2, "alpha": 0.9, "echo": 0.5, "bravo": 0.1, "charlie": 0.7}
"""Five hosts, listed out of name order and out of load order."""


def variant(tmp_path: Path, name: str, load: float, cores: int) -> Path:
    """The recording with every sample's cores at ``load`` (and ``cores`` of them)."""
    out = []
    for line in RECORDING.read_text().splitlines():
        msg = json.loads(line)
        params = msg.get("params", {})
        if msg.get("method") == "hello":
            params["host"]["cores"] = cores
        samples = params.get("samples", []) if msg.get("method") == "history" else [params]
        for s in samples:
            if "cpu" in s:
                s["cpu"] = [load] * cores
        out.append(json.dumps(msg))
    path = tmp_path / f"{name}.ndjson"
    path.write_text("\n".join(out) + "\n")
    return path


def fleet_app(tmp_path: Path, *, down: bool = False) -> LlmaosApp:
    links: list[Link] = [
        ReplayLink(variant(tmp_path, n, load, cores=4 + 2 * i), name=n)
        for i, (n, load) in enumerate(LOADS.items())
    ]
    if down:
        links.append(scripted("exit", name="broken"))
    return LlmaosApp(links, cursor_blink=False)


async def played(app: LlmaosApp, pilot: Pilot[None], *, down: bool = False) -> None:
    def ready() -> bool:
        hosts = app.fleet.hosts
        ups = [h for n, h in hosts.items() if n in LOADS]
        ok = all(h.status is HostStatus.UP and h.procs and len(h.history) > 3 for h in ups)
        return ok and (not down or hosts["broken"].status is HostStatus.DOWN)

    await wait_for(ready, what="the recordings played")
    await pilot.pause(0.3)  # past the 50 ms coalescing of host updates


def fleet(app: LlmaosApp) -> FleetScreen:
    assert isinstance(app.screen, FleetScreen)
    return app.screen


# ---------------------------------------------------------------- heat map


async def test_heat_map_shows_a_cell_per_core_and_gpu_of_every_up_host(tmp_path: Path) -> None:
    app = fleet_app(tmp_path, down=True)
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot, down=True)
        screen = fleet(app)
        heat = screen.query_one(HeatMap)
        assert not heat.display or not screen.heatmap_shown
        await pilot.press("h")
        await pilot.pause()
        assert screen.heatmap_shown and not screen.query_one(HostTable).display
        text = heat.text
        ups = [h for h in app.fleet.hosts.values() if h.name in LOADS]
        assert text.count(CORE) == sum(h.cores for h in ups) == sum(4 + 2 * i for i in range(5))
        assert text.count(GPU) == sum(len(h.sample.gpus) for h in ups if h.sample)
        assert text.count(GPU) == 2 * len(ups)  # the recording has two GPUs
        for name in LOADS:  # each host's cells follow its name: cores, the mark, GPUs
            cells = re.search(rf"{name} +([{CORE}{GPU}{GPU_MARK}]+)", text)
            cores = app.fleet.hosts[name].cores
            assert cells and cells[1] == CORE * cores + GPU_MARK + GPU * 2
        broken = re.search(r"broken +(down[^\n]*)", text)  # dimmed, its status, no cells
        assert broken and CORE not in broken[1] and GPU not in broken[1]
        dim = heat.get_component_rich_style("heatmap--down")
        segments = [seg for strip in heat.lines() for seg in strip]
        assert any(seg.text.startswith("broken") and seg.style == dim for seg in segments)
        assert heat.host_names == screen.query_one(HostTable).shown_names
        await pilot.press("h")
        assert not screen.heatmap_shown
        assert screen.query_one(HostTable).has_focus


async def test_heat_map_follows_the_theme_and_redraws_only_on_change(tmp_path: Path) -> None:
    app = fleet_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot)
        await pilot.press("h")
        await pilot.pause()
        heat = fleet(app).query_one(HeatMap)

        def colours() -> set[str]:
            return {str(seg.style.color) for strip in heat.lines() for seg in strip if seg.style}

        dark, dark_text = colours(), heat.text
        app.theme = "llmaos-light"
        await pilot.pause(0.2)
        assert heat.text == dark_text
        assert colours() != dark  # the ramp comes from the theme


def fake_host(name: str, cores: int, gpus: int, load: float) -> HostState:
    h = HostState(name=name, status=HostStatus.UP)
    h.sample = Sample(
        t=1.0,
        seq=1,
        cpu=[load] * cores,
        mem=Memory(100, 50, 50, 0, 0),
        gpus=[GpuSample(index=i, uuid=f"GPU-{i}", name="g", util=load) for i in range(gpus)],
    )
    return h


class HostsApp(App[None]):
    """One fleet widget alone, given ``hosts``."""

    def __init__(self, widget: HeatMap | HostTable, hosts: list[HostState]) -> None:
        super().__init__()
        self.widget, self.hosts = widget, hosts

    def compose(self) -> ComposeResult:
        yield self.widget

    def on_mount(self) -> None:
        self.widget.update_hosts(self.hosts)


async def test_two_hundred_hosts_of_64_cores_one_host_a_row() -> None:
    hosts = [fake_host(f"gpu{i:03d}", 64, 8, (i % 10) / 10) for i in range(200)]
    app = HostsApp(HeatMap(id="map"), hosts)
    async with app.run_test(size=(250, 80)) as pilot:
        await pilot.pause()
        heat = app.query_one(HeatMap)
        width = heat.size.width
        heat._cache.clear()  # time the cells built from scratch, as on new samples
        heat._strips = None
        started = time.perf_counter()
        text = heat.text
        first = time.perf_counter() - started
        assert text.count(CORE) == 200 * 64 and text.count(GPU) == 200 * 8
        lines = text.splitlines()
        assert all(len(ln) <= width for ln in lines)
        assert len(lines) == 1 + 200  # the legend, then a host a row
        assert [ln.split()[0] for ln in lines[1:]] == [h.name for h in hosts]
        # A repaint with nothing new reuses every host's cells.
        started = time.perf_counter()
        assert heat.text == text
        again = time.perf_counter() - started
        print(
            f"200 x (64 + 8) cells: first render {first * 1e3:.1f} ms, cached {again * 1e3:.1f} ms"
        )


async def test_a_narrow_map_wraps_each_host_onto_lines_of_its_own() -> None:
    hosts = [fake_host("big", 64, 2, 0.5), fake_host("small", 4, 0, 0.1)]
    app = HostsApp(HeatMap(id="map"), hosts)
    async with app.run_test(size=(40, 20)) as pilot:
        await pilot.pause()
        heat = app.query_one(HeatMap)
        lines = heat.text.splitlines()[1:]
        room = heat.size.width - len("small ")
        big = math.ceil((64 + 1 + 2) / room)
        assert len(lines) == big + 1 and heat.size.height == big + 2
        assert lines[0].startswith("big ") and lines[1].startswith(" " * 6)
        assert lines[big].startswith("small") and lines[big].count(CORE) == 4


async def test_heat_map_cursor_selects_a_host_and_enter_opens_it(tmp_path: Path) -> None:
    app = fleet_app(tmp_path, down=True)
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot, down=True)
        screen = fleet(app)
        await pilot.press("h")
        await pilot.pause()
        heat = screen.query_one(HeatMap)
        assert heat.has_focus and heat.cursor_host == heat.host_names[0]
        cursor = heat.get_component_rich_style("heatmap--cursor")

        def lit() -> list[str]:
            """The hosts whose label is drawn in the cursor's colours."""
            return [
                seg.text.strip()
                for strip in heat.lines()[1:]
                for seg in list(strip)[:1]
                if seg.style and seg.style.bgcolor == cursor.bgcolor
            ]

        assert lit() == [heat.host_names[0]]
        await pilot.press("down", "down")
        await pilot.pause()
        third = heat.host_names[2]
        assert heat.cursor_host == third and lit() == [third]
        detail = " ".join(text_of(screen.query_one(HostDetail)))
        assert detail.startswith(third)  # the detail line follows the map's cursor
        await pilot.press("N")  # a re-sort keeps the cursor on its host
        await pilot.pause()
        assert heat.cursor_host == third and lit() == [third]
        await pilot.press("end")
        await pilot.pause()
        last = heat.host_names[-1]
        assert heat.cursor_host == last
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, HostScreen), what="the host screen")
        opened = app.screen
        assert isinstance(opened, HostScreen) and opened.host.name == last


def text_of(w: Widget) -> list[str]:
    strips = w.render_lines(Region(0, 0, w.size.width, w.size.height))
    return ["".join(seg.text for seg in strip).strip() for strip in strips]


def drawn(table: HostTable) -> list[str]:
    """The table's lines as drawn now (header first), each stripped."""
    return [table.render_line(y).text.strip() for y in range(table.size.height)]


async def test_table_draws_each_update_and_sort_where_cells_are_cached() -> None:
    hosts = [fake_host(f"h{i}", 4, 0, 0.1 * (i + 1)) for i in range(5)]
    app = HostsApp(HostTable(id="table"), hosts)
    async with app.run_test(size=(120, 12)) as pilot:
        await pilot.pause()
        table = app.query_one(HostTable)
        before = drawn(table)
        assert before[1].startswith("h0") and " 10%" in before[1]
        assert before[3].startswith("h2") and " 30%" in before[3]
        # One host's load changes: its row is drawn with the new figure, the others as before.
        hosts[2].sample = fake_host("h2", 4, 0, 0.9).sample  # the fleet state updates in place
        table.update_hosts([hosts[2]])
        await pilot.pause()
        after = drawn(table)
        assert " 90%" in after[3] and " 30%" not in after[3]
        assert after[1:3] == before[1:3] and after[4:6] == before[4:6]
        # A sort moves the rows; every line shows its own host's figures.
        table.sort_by("cpu")
        await pilot.pause()
        rows = [ln for ln in drawn(table)[1:] if ln]
        assert [r.split()[0] for r in rows] == ["h2", "h4", "h3", "h1", "h0"]
        assert " 90%" in rows[0] and " 50%" in rows[1] and " 10%" in rows[-1]

        # The cursor's highlight is drawn on its row, and follows it.
        def lit() -> list[int]:
            backs = [
                next(seg.style.bgcolor for seg in table.render_line(y) if seg.style)
                for y in range(1, 6)
            ]
            return [i for i, bg in enumerate(backs) if backs.count(bg) == 1]

        table.focus()
        await pilot.pause()
        at = table.cursor_row
        assert lit() == [at]
        assert at == 4  # it stayed on h0, now the last row
        await pilot.press("up")
        await pilot.pause()
        assert table.cursor_row == 3 and lit() == [3]


# ------------------------------------------------------ sorting, filtering


async def test_sort_keys_order_the_hosts_and_the_heat_map(tmp_path: Path) -> None:
    app = fleet_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot)
        table = fleet(app).query_one(HostTable)
        assert table.shown_names == list(LOADS)  # fleet order until asked
        by_load = sorted(LOADS, key=LOADS.__getitem__, reverse=True)
        await pilot.press("P")
        assert table.sort_key == "cpu" and table.shown_names == by_load
        await pilot.press("I")
        assert table.shown_names == by_load[::-1]
        await pilot.press("N")
        assert table.shown_names == sorted(LOADS)
        await pilot.press("C")  # cores: 4, 6, 8, ... in fleet order, biggest first
        assert table.shown_names == list(LOADS)[::-1]
        await pilot.press("P", "h")
        await pilot.pause()
        assert fleet(app).query_one(HeatMap).host_names == by_load
        await pilot.press("N")  # the sort keys work in the heat map too
        assert fleet(app).query_one(HeatMap).host_names == sorted(LOADS)


async def test_cursor_stays_on_its_host_across_resorts_and_enter_opens_it(
    tmp_path: Path,
) -> None:
    app = fleet_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot)
        table = fleet(app).query_one(HostTable)
        await pilot.press("down", "down")
        assert table.selected_host == "echo"
        await pilot.press("P")
        assert table.selected_host == "echo"
        assert table.shown_names.index("echo") == table.cursor_row == 2
        await pilot.press("N")
        assert table.selected_host == "echo" and table.cursor_row == 4
        await pilot.press("enter")
        assert isinstance(app.screen, HostScreen) and app.screen.host.name == "echo"


async def test_slash_filters_hosts_by_name_and_status(tmp_path: Path) -> None:
    app = fleet_app(tmp_path, down=True)
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot, down=True)
        screen = fleet(app)
        table = screen.query_one(HostTable)
        assert len(table.shown_names) == 6
        await pilot.press("slash")
        assert screen.query_one(Input).has_focus
        await pilot.press(*"ha")  # alpha, charlie
        assert table.shown_names == ["alpha", "charlie"]
        await pilot.press("escape")
        assert len(table.shown_names) == 6 and isinstance(app.screen, FleetScreen)
        await pilot.press("slash", *"status:down", "enter")
        assert table.shown_names == ["broken"]
        assert table.has_focus  # Enter keeps the filter and gives the keys back
        await pilot.press("h")
        await pilot.pause()
        assert screen.query_one(HeatMap).host_names == ["broken"]
        await pilot.press("h", "slash", "ctrl+u", *"ha", "enter")
        assert table.shown_names == ["alpha", "charlie"]
        await pilot.press("down", "enter")  # Enter still opens the host under the cursor
        assert isinstance(app.screen, HostScreen) and app.screen.host.name == "charlie"


def test_filter_words_all_match() -> None:
    h = HostState(name="gpu-a", target="alice@10.0.0.7", status=HostStatus.STALE)
    assert host_matches(h, "")
    assert host_matches(h, "GPU")
    assert host_matches(h, "alice")
    assert host_matches(h, "gpu s:stale")
    assert host_matches(h, "stale")
    assert not host_matches(h, "gpu status:up")
    assert not host_matches(h, "gpu-b")
    assert not host_matches(h, "group:train")
    assert host_matches(h, "g:train", ["train", "eu"]) and host_matches(h, "eu", ["train", "eu"])
    assert not host_matches(h, "group:gpu", ["train"])
    assert host_matches(h, "10.0.0", target="10.0.0.9") and not host_matches(h, "alice", target="b")


def test_link_facts_read_the_inventory_group_and_target() -> None:
    ssh_like = ReplayLink(RECORDING, name="gpu1")
    ssh_like.spec = HostSpec(name="gpu1", host="10.0.0.7", user="alice", group="train")  # type: ignore[attr-defined]
    rec = ReplayLink(RECORDING, name="rec")
    facts = link_facts([ssh_like, rec])
    assert facts["gpu1"] == HostFacts("alice@10.0.0.7", ("train",))
    assert facts["rec"] == HostFacts(rec.target, ())


async def test_group_words_filter_by_the_inventory_group(tmp_path: Path) -> None:
    """group:G (g:G) matches the group of each host's inventory entry, which the host
    states do not carry: the screen reads it off the links (an SSH link's spec)."""
    app = fleet_app(tmp_path)
    groups = {"alpha": "train", "charlie": "train", "echo": "infer"}
    for w in app.watchers:
        if w.state.name in groups:
            w.link.spec = HostSpec(  # type: ignore[attr-defined]
                name=w.state.name, host=f"{w.state.name}.lab", group=groups[w.state.name]
            )
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot)
        table = fleet(app).query_one(HostTable)
        await pilot.press("slash", *"group:train", "enter")
        assert sorted(table.shown_names) == ["alpha", "charlie"]
        await pilot.press("slash", "ctrl+u", *"g:inf", "enter")
        assert table.shown_names == ["echo"]
        await pilot.press("slash", "ctrl+u", *"train alpha", "enter")  # a plain word: a group too
        assert table.shown_names == ["alpha"]
        await pilot.press("slash", "ctrl+u", *"group:nosuch", "enter")
        assert table.shown_names == []
        await pilot.press("escape")
        assert len(table.shown_names) == len(LOADS)


async def test_palette_offers_the_heat_map_and_the_sorts(tmp_path: Path) -> None:
    app = fleet_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await played(app, pilot)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for t in ("Heat map", "Filter hosts", "Sort hosts by CPU", "Sort hosts by β CPU"):
            assert t in commands
        commands["Sort hosts by CPU"].callback()
        table = fleet(app).query_one(HostTable)
        assert table.shown_names == sorted(LOADS, key=LOADS.__getitem__, reverse=True)
        commands["Heat map"].callback()
        assert fleet(app).heatmap_shown


# ------------------------------------------------------------ trust dialog

FINGERPRINT = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"


class TrustApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[bool | None] = []

    def on_mount(self) -> None:
        self.ask()

    def ask(self) -> None:
        self.push_screen(
            TrustScreen("gpu[1]", "alice@10.0.0.7:2222", "ssh-ed25519", FINGERPRINT, "/tmp/kh [x]"),
            self.answers.append,
        )


async def test_trust_dialog_shows_the_fingerprint_and_where_it_goes() -> None:
    app = TrustApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TrustScreen)
        shown = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert FINGERPRINT in shown and "ssh-ed25519" in shown
        assert "gpu[1]" in shown and "alice@10.0.0.7:2222" in shown  # not read as markup
        assert "/tmp/kh [x]" in shown
        assert app.screen.query_one("#refuse", Button).has_focus


async def test_trust_dialog_trusts_only_on_t() -> None:
    app = TrustApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("enter")  # a stray Enter refuses, never trusts
        await pilot.pause()
        assert app.answers == [False]
        for key, answer in (("t", True), ("escape", False), ("r", False)):
            app.ask()
            await pilot.pause()
            await pilot.press("tab", "tab")  # the focus cannot reach Trust either
            assert app.screen.focused is None or app.screen.focused.id != "trust"
            await pilot.press(key)
            await pilot.pause()
            assert app.answers[-1] is answer
        assert app.answers == [False, True, False, False]
        app.ask()
        await pilot.pause()
        await pilot.click("#trust")
        await pilot.pause()
        assert app.answers[-1] is True
