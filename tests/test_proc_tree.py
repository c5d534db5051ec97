"""The host screen's process table as htop's tree (``t`` and F5), its GPU% column, its
state letters and Enter for a process's detail, with Textual's Pilot on a small app
that shows one host's screen fed with a fixed process table and sample, as the app
feeds it (``HostState`` then ``refresh_host``); and once over the recorded stream.

What is checked is what an operator reads: the order of the rows, the COMMAND cells
with their tree glyphs, the GPU% cells, the header, and the message Enter sends.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot

from llmaos_agent.protocol import GpuProc, GpuSample, Memory, Proc, Sample
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.proc_detail import OpenProcDetail
from llmaos_tui.widgets.process_table import MAX_LEAD, ProcessTable, tree_rows
from tests.helpers import RECORDING, wait_for

SIZE = (160, 40)
GB = 1 << 30


def proc(pid: int, ppid: int, name: str, cpu: float = 0.0, status: str = "S") -> Proc:
    return Proc(pid, ppid, name, "root", cpu, 10 << 20, 0, "0-3", 0, status,
                1_700_000_000.0 + pid, None, f"/usr/bin/{name}")  # fmt: skip


# init ─┬─ sshd ─┬─ bash ── vim
#       │        └─ bash
#       └─ cron
# kthreadd ── kworker;  an orphan whose parent is not in the table
TABLE = [
    proc(1, 0, "init", 0.5),
    proc(10, 1, "sshd", 1.0),
    proc(11, 10, "bash", 5.0),
    proc(12, 11, "vim", 2.0),
    proc(13, 10, "bash", 3.0),
    proc(20, 1, "cron", 9.0),
    proc(2, 0, "kthreadd", 0.0),
    proc(30, 2, "kworker", 0.2),
    proc(100, 999, "orphan", 4.0),
]


def sample(gpus: list[GpuSample]) -> Sample:
    return Sample(t=1.0, seq=1, cpu=[0.1] * 4, mem=Memory(64 * GB, 8 * GB, 56 * GB, 0, 0),
                  gpus=gpus)  # fmt: skip


def gpu(index: int, *procs: GpuProc) -> GpuSample:
    return GpuSample(index=index, uuid=f"GPU-{index}", name="H100", util=0.5,
                     mem_used=4 * GB, mem_total=80 * GB, procs=list(procs))  # fmt: skip


class OneHost(App[None]):
    """A host screen over a fixed host; what it asks the app for is kept."""

    def __init__(self, procs: list[Proc], gpus: list[GpuSample] | None = None) -> None:
        super().__init__()
        self.host = HostState(name="syn")
        self.host.status = HostStatus.UP
        self.host.sample = sample(gpus or [])
        self.host.procs = {p.pid: p for p in procs}
        self.host.procs_version = 1
        self.opened: list[OpenProcDetail] = []

    def on_mount(self) -> None:
        self.push_screen(HostScreen(self.host, cursor_blink=False))

    def on_open_proc_detail(self, message: OpenProcDetail) -> None:
        self.opened.append(message)

    def feed(self, procs: list[Proc] | None = None, gpus: list[GpuSample] | None = None) -> None:
        """A new sample (and process table), as the app hands the screen one."""
        if procs is not None:
            self.host.procs = {p.pid: p for p in procs}
            self.host.procs_version += 1
        if gpus is not None:
            self.host.sample = sample(gpus)
        screen = self.screen
        assert isinstance(screen, HostScreen)
        screen.refresh_host()


async def table_of(pilot: Pilot[None]) -> ProcessTable:
    app = pilot.app
    await wait_for(lambda: isinstance(app.screen, HostScreen), what="the host screen")
    table = app.screen.query_one(ProcessTable)
    await wait_for(lambda: table.row_count > 0, what="the process rows")
    return table


def commands(table: ProcessTable) -> list[tuple[int, str]]:
    """(pid, COMMAND cell) in display order, the command's path left out."""
    return [
        (pid, str(table.get_cell(str(pid), "name").plain).replace("/usr/bin/", ""))
        for pid in table.shown_pids
    ]


def cell(table: ProcessTable, pid: int, column: str) -> str:
    return str(table.get_cell(str(pid), column).plain)


def drawn_lines(app: App[Any], table: ProcessTable) -> list[str]:
    strips = app.screen._compositor.render_strips()
    r = table.region
    return ["".join(seg.text for seg in strips[y]) for y in range(r.y, r.bottom)]


def footer(app: App[Any]) -> str:
    return "".join(seg.text for seg in app.screen._compositor.render_strips()[-1])


def on_row(table: ProcessTable, pid: int) -> None:
    table.move_cursor(row=table.get_row_index(str(pid)), animate=False)


# ------------------------------------------------------------------ the tree


async def test_t_and_f5_show_the_tree_parents_first_with_htops_glyphs() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        flat = table.shown_pids
        assert flat == [20, 11, 100, 13, 12, 10, 1, 30, 2]  # CPU%, the top first
        await pilot.press("t")
        await wait_for(lambda: table.tree_view, what="the tree")
        assert commands(table) == [  # roots and siblings by CPU%, the top first
            (100, "orphan"),
            (1, "init"),
            (20, "├─ cron"),
            (10, "└─ sshd"),
            (11, "   ├─ bash"),
            (12, "   │  └─ vim"),
            (13, "   └─ bash"),
            (2, "kthreadd"),
            (30, "└─ kworker"),
        ]
        await pilot.pause()
        lines = drawn_lines(app, table)
        assert any("   │  └─ /usr/bin/vim" in ln for ln in lines), lines
        await pilot.press("f5")
        await wait_for(lambda: not table.tree_view, what="the flat table")
        assert table.shown_pids == flat
        assert cell(table, 12, "name") == "/usr/bin/vim"  # no glyphs left behind
        await pilot.press("f5")
        await wait_for(lambda: table.tree_view, what="the tree again")
        assert table.shown_pids[:2] == [100, 1]


async def test_the_sort_orders_siblings_in_the_tree() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        await pilot.press("t", "N")  # by PID, the smallest first
        await pilot.pause()
        assert table.sort_key == "pid" and not table.reverse
        assert commands(table) == [
            (1, "init"),
            (10, "├─ sshd"),
            (11, "│  ├─ bash"),
            (12, "│  │  └─ vim"),
            (13, "│  └─ bash"),
            (20, "└─ cron"),
            (2, "kthreadd"),
            (30, "└─ kworker"),
            (100, "orphan"),
        ]
        await pilot.press("I")  # inverted: the biggest pid first, parents still first
        await pilot.pause()
        assert table.shown_pids == [100, 2, 30, 1, 20, 10, 13, 11, 12]
        assert cell(table, 20, "name").startswith("├─ ")
        assert cell(table, 10, "name").startswith("└─ ")


async def test_the_filter_keeps_a_matchs_ancestors_in_the_tree() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        await pilot.press("t", "slash", *"vim", "enter")
        await wait_for(lambda: table.needle == "vim", what="the filter")
        assert commands(table) == [
            (1, "init"),
            (10, "└─ sshd"),
            (11, "   └─ bash"),
            (12, "      └─ vim"),
        ]
        await pilot.press("f5")  # flat: only the match
        await wait_for(lambda: not table.tree_view, what="the flat table")
        assert table.shown_pids == [12]


async def test_minus_collapses_a_subtree_and_plus_expands_it() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        await pilot.press("t")
        await wait_for(lambda: table.tree_view, what="the tree")
        on_row(table, 10)
        await pilot.press("minus")
        await pilot.pause()
        assert commands(table) == [
            (100, "orphan"),
            (1, "init"),
            (20, "├─ cron"),
            (10, "└+ [3] sshd"),  # bash, vim and bash hidden under it
            (2, "kthreadd"),
            (30, "└─ kworker"),
        ]
        assert table.selected is not None and table.selected.pid == 10
        # A new table keeps it collapsed; a process added under it counts.
        app.feed([*TABLE, proc(14, 13, "top", 0.1)])
        await pilot.pause()
        assert cell(table, 10, "name") == "└+ [4] /usr/bin/sshd"
        on_row(table, 1)
        await pilot.press("minus")
        await pilot.pause()
        assert commands(table)[:3] == [(100, "orphan"), (1, "+ [6] init"), (2, "kthreadd")]
        await pilot.press("plus")
        await pilot.pause()
        assert table.shown_pids[:4] == [100, 1, 20, 10]  # sshd still collapsed
        on_row(table, 10)
        await pilot.press("plus")
        await pilot.pause()
        assert len(table.shown_pids) == len(TABLE) + 1
        assert cell(table, 14, "name") == "      └─ /usr/bin/top"
        on_row(table, 12)
        await pilot.press("minus")  # a leaf: nothing to hide, nothing marked
        await pilot.pause()
        assert cell(table, 12, "name") == "   │  └─ /usr/bin/vim"


async def test_collapsing_moves_the_cursor_off_a_hidden_row_to_its_ancestor() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        await pilot.press("t")
        await wait_for(lambda: table.tree_view, what="the tree")
        on_row(table, 12)
        table.collapse(10)
        await pilot.pause()
        assert 12 not in table.shown_pids
        assert table.selected is not None and table.selected.pid == 10


async def test_minus_and_plus_do_nothing_in_the_flat_table() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        before = table.shown_pids
        on_row(table, 10)
        await pilot.press("minus", "plus")
        await pilot.pause()
        assert table.shown_pids == before and not table.collapsed


async def test_ppid_loops_and_a_pid_its_own_parent_draw_once_each() -> None:
    hostile = [
        proc(500, 501, "loop-a", 1.0),
        proc(501, 500, "loop-b", 2.0),
        proc(502, 502, "own-parent", 3.0),
        proc(503, 500, "under-loop", 0.5),
        proc(600, 602, "ring-1"),
        proc(601, 600, "ring-2"),
        proc(602, 601, "ring-3"),
    ]
    app = OneHost(TABLE + hostile)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        await pilot.press("t")
        await wait_for(lambda: table.tree_view, what="the tree")
        shown = table.shown_pids
        assert sorted(shown) == sorted(p.pid for p in TABLE + hostile)  # each once
        assert cell(table, 502, "name") == "/usr/bin/own-parent"  # a root
        # Each loop hangs from one of its members, the others under it.
        assert shown.index(501) < shown.index(500) < shown.index(503)
        assert cell(table, 500, "name").endswith("─ /usr/bin/loop-a")
        ring = sorted(shown.index(p) for p in (600, 601, 602))
        assert ring == list(range(ring[0], ring[0] + 3))  # one tree, together
        await pilot.press("slash", *"under", "enter")  # ancestors through a loop
        await wait_for(lambda: table.needle == "under", what="the filter")
        assert sorted(table.shown_pids) == [500, 501, 503]
        on_row(table, 500)
        await pilot.press("minus")
        await pilot.pause()
        assert 503 not in table.shown_pids


def test_a_deep_chain_draws_without_recursion_and_bounded_indentation() -> None:
    chain = {i: proc(i, i - 1, f"p{i}") for i in range(10, 20_010)}
    rows = tree_rows(chain, lambda p: p.cpu, True)
    assert [pid for pid, _ in rows] == sorted(chain)
    assert max(len(prefix) for _, prefix in rows) <= MAX_LEAD + 3


# ---------------------------------------------------------------- GPU% and state


async def test_gpu_share_column_sums_sm_over_gpus_and_says_dash_where_unreported() -> None:
    gpus = [
        gpu(0, GpuProc(11, 2 * GB, 0.25, 0.1), GpuProc(12, GB, None, None)),
        gpu(1, GpuProc(11, 2 * GB, 0.5, 0.2), GpuProc(13, GB, 0.0, 0.0)),
    ]
    app = OneHost(TABLE, gpus)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        assert "gpup" in {c.key for c in table.shown_columns}
        assert cell(table, 11, "gpup") == "75.0"  # 25% + 50%
        assert cell(table, 12, "gpup") == "-"  # its device does not report shares
        assert cell(table, 13, "gpup") == "0.0"  # reported, idle
        assert cell(table, 20, "gpup") == "-"  # not on a GPU
        await pilot.pause()
        header = drawn_lines(app, table)[0]
        assert header.index("GPU MEM") < header.index("GPU%"), header
        table.sort_by("gpup")
        await pilot.pause()
        assert table.shown_pids[:2] == [11, 13]
        assert "GPU%▼" in drawn_lines(app, table)[0]
        # The next sample's shares, with the same process table: the cells follow.
        app.feed(gpus=[gpu(0, GpuProc(13, GB, 0.9, 0.3)), gpu(1)])
        await pilot.pause()
        assert cell(table, 13, "gpup") == "90.0"
        assert cell(table, 11, "gpup") == "-"
        assert table.shown_pids[0] == 13


async def test_no_gpu_share_column_on_a_host_without_gpus() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        await pilot.pause()
        assert "GPU%" not in drawn_lines(app, table)[0]
        assert "GPU MEM" in drawn_lines(app, table)[0]


@pytest.mark.parametrize(
    ("status", "shown"),
    [("t", "t"), ("T", "T"), ("Z", "Z"), ("R", "R"), ("I", "I"), ("sleeping", "S")],
)
async def test_state_letters_show_as_the_agent_sends_them(status: str, shown: str) -> None:
    app = OneHost([*TABLE, proc(700, 1, "odd", 50.0, status)])
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        assert cell(table, 700, "state") == shown


# ------------------------------------------------------------------- detail


async def test_enter_asks_for_the_detail_of_the_process_under_the_cursor() -> None:
    app = OneHost(TABLE)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        await wait_for(lambda: "Detail" in footer(app), what="Detail in the footer")
        on_row(table, 12)
        await pilot.press("enter")
        await wait_for(lambda: bool(app.opened), what="the detail asked for")
        (m,) = app.opened
        assert (m.host, m.pid, m.create_time) == ("syn", 12, 1_700_000_012.0)
        await pilot.press("t")  # in the tree too
        await wait_for(lambda: table.tree_view, what="the tree")
        on_row(table, 30)
        await pilot.press("enter")
        await wait_for(lambda: len(app.opened) == 2, what="a second detail")
        assert app.opened[1].pid == 30


# ---------------------------------------------------------- over a recording


async def test_the_recorded_hosts_tree_holds_every_process_once() -> None:
    app = LlmaosApp([ReplayLink(RECORDING, name="rec")], cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["rec"]
        await wait_for(lambda: len(host.procs) > 5, what="the replay")
        table = await table_of(pilot)
        await pilot.press("t")
        await wait_for(lambda: table.tree_view, what="the tree")
        # The replay's last table: its rows are all there once the stream has ended.
        await wait_for(lambda: sorted(table.shown_pids) == sorted(host.procs), 60, "all rows")
        shown = table.shown_pids
        for pid in shown:
            p = host.procs[pid]
            if p.ppid in host.procs and p.pid > 1 and p.name != "kthreadd":
                assert shown.index(p.ppid) < shown.index(pid), (pid, p.ppid)
                assert "─ " in cell(table, pid, "name")
