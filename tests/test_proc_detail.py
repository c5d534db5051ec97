"""The process detail screen (llmaos_tui/screens/proc_detail.py) in a small App: every
field shows at 80x24 and 120x40, a hostile command line (ESC, OSC, C1, bidi) is shown
cleaned and the terminal gets none of it, a field the agent could not read shows why,
the keys post the host screen's intents, the figures change in place, Esc closes; and
snapshots of the screen at both sizes (a pinned clock and time zone)."""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input

from llmaos_agent.protocol import Renice, SendSignal, SetAffinity
from llmaos_tui.screens.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from llmaos_tui.screens.intents import ChangeIntent
from llmaos_tui.screens.proc_detail import ProcDetailScreen, RefreshProcDetail
from llmaos_tui.screens.proc_detail_model import GpuUse, ProcDetail, age, state_words
from llmaos_tui.theming import builtin_theme_dir, load_theme_file
from llmaos_tui.widgets.graph import Graph
from tests.helpers import wait_for

SIZES = [(80, 24), (120, 40)]
START = 1_700_000_000.0
NOW = START + 2 * 3600 + 5 * 60  # 2h 5m later


def detail(**kw: Any) -> ProcDetail:
    base = ProcDetail(
        host="gpu-a",
        pid=4242,
        create_time=START,
        name="python3",
        cmdline=["/usr/bin/python3", "train.py", "--lr", "0.1", "--data", "/data/set one"],
        cwd="/home/alice/runs/exp-17",
        user="alice",
        threads=12,
        open_files=37,
        nice=5,
        affinity="0-7",
        cgroup="/user.slice/user-1000.slice/session-3.scope",
        container="trainer-7",
        start_time=START,
        state="S",
        rss=3_400_000_000,
        gpus=[GpuUse(0, 3_100_000_000, 0.45, 0.12, "NVIDIA H100")],
        cpu_history=[0.5 + 0.5 * math.sin(i / 5) for i in range(120)],
        mem_history=[1e9 + 1e7 * i for i in range(120)],
        cores=8,
    )
    return replace(base, **kw)


class DetailApp(App[None]):
    def __init__(self, d: ProcDetail, *, read_only: bool = False, theme: str = "") -> None:
        super().__init__()
        self.detail = d
        self.read_only = read_only
        self.theme_name = theme
        self.intents: list[ChangeIntent] = []

    def on_mount(self) -> None:
        if self.theme_name:
            self.register_theme(load_theme_file(builtin_theme_dir() / f"{self.theme_name}.toml"))
            self.theme = self.theme_name
        self.push_screen(ProcDetailScreen(self.detail, read_only=self.read_only, clock=lambda: NOW))

    def on_change_intent(self, message: ChangeIntent) -> None:
        self.intents.append(message)


def screen_output(app: App[Any]) -> tuple[str, str]:
    """(the text on screen, the stream a terminal would receive)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True,
        color_system="truecolor", record=True, legacy_windows=False, safe_box=False,
    )  # fmt: skip
    console.print(app.screen._compositor.render_update(full=True))
    stream = console.file.getvalue()  # type: ignore[attr-defined]
    return console.export_text(styles=False), stream


def shown(app: App[Any]) -> str:
    return screen_output(app)[0]


async def opened(pilot: Pilot[None], *texts: str) -> str:
    await wait_for(lambda: isinstance(pilot.app.screen, ProcDetailScreen), what="detail open")
    await wait_for(lambda: all(t in shown(pilot.app) for t in texts), what=f"{texts} shown")
    return shown(pilot.app)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC for the test (the start time is drawn in local time)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# ------------------------------------------------------------------ model


def test_state_letters_in_words() -> None:
    assert state_words("T") == "T stopped"
    assert state_words("Z") == "Z zombie"
    assert state_words("t") == "t traced"
    assert state_words("R") == "R running"
    assert state_words("?") == "?"
    assert state_words(None) == "?"


def test_age_in_words() -> None:
    assert [age(s) for s in (42, 425, 7500, 90000)] == ["42s", "7m 5s", "2h 5m", "1d 1h"]


# ------------------------------------------------------------------ fields


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_field_shows(size: tuple[int, int], utc: None) -> None:
    app = DetailApp(detail())
    async with app.run_test(size=size) as pilot:
        text = await opened(pilot, "python3")
        for want in [
            "pid 4242",
            "on gpu-a",
            "/usr/bin/python3 train.py --lr 0.1 --data '/data/set one'",
            "S sleeping",
            "alice",
            "Threads    12",
            "Open files 37",
            "Nice       5",
            "Affinity   0-7",
            "RSS        3.2G",
            "2023-11-14 22:13:20 (2h 5m ago)",
            "/home/alice/runs/exp-17",
            "/user.slice/user-1000.slice/session-3.scope",
            "trainer-7",
            "GPU0",
            "2.9G  SM 45%  mem bw 12%",
            "CPU",
            "max 100%",
            "f9 Kill",
            "esc Back",
        ]:
            assert want in text, f"{want!r} not on the {size} screen:\n{text}"
        cpu, mem = (
            app.screen.query_one("#cpu-graph", Graph),
            app.screen.query_one("#mem-graph", Graph),
        )
        # Both graphs on screen, whole, with their history.
        for g in (cpu, mem):
            assert g.region.height == 5 and g.region.bottom <= size[1] - 1
        assert cpu.series[0].values[-1] == pytest.approx(detail().cpu_history[-1])
        assert (
            "RSS" in text and "max 2.0G" in text
        )  # 2.19e9 bytes, in binary units as the table has them


async def test_a_long_command_line_is_wrapped_never_cut() -> None:
    argv = ["/opt/app/bin/server"] + [f"--flag{i}=value{i}" for i in range(40)]
    app = DetailApp(detail(cmdline=argv))
    async with app.run_test(size=(80, 24)) as pilot:
        text = await opened(pilot, "/opt/app/bin/server")
        flat = "".join(line.strip() for line in text.splitlines())
        assert " ".join(argv).replace(" ", "") in flat.replace(" ", "")
        assert "--flag39=value39" in text


async def test_a_hostile_command_line_is_shown_cleaned() -> None:
    osc, csi, c1, bidi = "\x1b]0;PWNED\x07", "\x1b[2J\x1b[31m", "\x9b6n", "\u202egnp.exe"
    app = DetailApp(
        detail(
            cmdline=f"/bin/sh -c {osc}{csi}{c1} {bidi}\u200b",
            name="x\x1b[1mbold",
            cwd="/tmp/\x1b]8;;http://evil\x07link",
            cgroup="/\u2066iso\u2069",
            user="eve\x1b[5m",
        )
    )
    async with app.run_test(size=(120, 40)) as pilot:
        text, stream = screen_output(app)
        text = await opened(pilot, "/bin/sh -c")
        text, stream = screen_output(app)
        for esc in ["\\e]0;PWNED\\a", "\\e[2J\\e[31m", "\\x9b6n", "\\u202egnp.exe", "\\u200b"]:
            assert esc in text, f"{esc!r} not shown:\n{text}"
        assert "x\\e[1mbold" in text and "eve\\e[5m" in text
        assert "\\e]8;;http://evil\\alink" in text and "\\u2066iso\\u2069" in text
        ours = re.sub(r"\x1b\[[0-9;]*[mH]|\x1b\[\?[0-9;]*[hl]", "", stream)
        for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\u200b", "\u2066"):
            assert raw not in ours, f"{raw!r} reached the terminal"


async def test_fields_the_agent_could_not_read_show_why() -> None:
    d = detail(
        cwd=None,
        open_files=None,
        threads=None,
        gpus=None,
        container=None,
        reasons={
            "cwd": "permission denied",
            "open_files": "permission denied (another user's process)",
            "gpus": "no NVML on this host",
            "container": "not in a container",
        },
    )
    app = DetailApp(d)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await opened(pilot, "python3")
        assert "cwd        permission denied" in text
        assert "Open files permission denied (another" in text
        assert "\n" + " " * 12 + "user's process)" in text  # wrapped under its value
        assert "Threads    n/a" in text  # no reason given: n/a
        assert "GPUs       no NVML on this host" in text
        assert "Container  not in a container" in text


# ------------------------------------------------------------------ keys


async def test_nice_keys_post_renice_intents() -> None:
    app = DetailApp(detail())
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, "python3")
        await pilot.press("f7")
        await pilot.press("f8")
        await wait_for(lambda: len(app.intents) == 2, what="two intents")
        down, up = app.intents
        assert (down.host, down.method, down.target) == (
            "gpu-a",
            "proc.renice",
            "pid 4242 (python3)",
        )
        assert down.params == Renice(pid=4242, create_time=START, nice=4)
        assert up.params == Renice(pid=4242, create_time=START, nice=6)
        assert down.before == "nice 5"
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, PromptScreen), what="the nice prompt")
        field = app.screen.query_one(Input)
        field.value = "30"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen) and len(app.intents) == 2  # out of range
        field.value = "10"
        await pilot.press("enter")
        await wait_for(lambda: len(app.intents) == 3, what="the third intent")
        assert app.intents[-1].params == Renice(pid=4242, create_time=START, nice=10)
        assert isinstance(app.screen, ProcDetailScreen)


async def test_affinity_key_posts_the_core_list() -> None:
    app = DetailApp(detail())
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, "python3")
        await pilot.press("a")
        await wait_for(lambda: isinstance(app.screen, PromptScreen), what="the affinity prompt")
        field = app.screen.query_one(Input)
        assert field.value == "0-7"
        field.value = "0-1,9"  # no core 9 on an 8-core host
        await pilot.press("enter")
        await pilot.pause()
        assert not app.intents
        field.value = "0-1,6"
        await pilot.press("enter")
        await wait_for(lambda: len(app.intents) == 1, what="the affinity intent")
        (it,) = app.intents
        assert it.method == "proc.affinity" and it.before == "cores 0-7"
        assert it.params == SetAffinity(pid=4242, create_time=START, cores=[0, 1, 6])


async def test_kill_key_asks_then_posts_the_signal() -> None:
    app = DetailApp(detail())
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, "python3")
        await pilot.press("k")
        await wait_for(lambda: isinstance(app.screen, ChoiceScreen), what="the signal list")
        await pilot.press("down", "enter")  # TERM is first, KILL second
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("enter")  # a stray Enter refuses
        await wait_for(lambda: isinstance(app.screen, ProcDetailScreen), what="back")
        assert not app.intents
        await pilot.press("f9")
        await wait_for(lambda: isinstance(app.screen, ChoiceScreen), what="the signal list")
        await pilot.press("down", "enter")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(lambda: len(app.intents) == 1, what="the signal intent")
        (it,) = app.intents
        assert it.method == "proc.signal" and it.before == "S"
        assert it.params == SendSignal(pid=4242, create_time=START, signal="KILL")


async def test_read_only_and_exited_change_nothing() -> None:
    app = DetailApp(detail(), read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await opened(pilot, "python3")
        assert "f9 Kill" not in text and "Nice -" not in text
        await pilot.press("f7", "f8", "n", "a", "k")
        await pilot.pause()
        assert isinstance(app.screen, ProcDetailScreen) and not app.intents
    app = DetailApp(detail(gone="no such process"))
    async with app.run_test(size=(80, 24)) as pilot:
        text = await opened(pilot, "exited: no such process")
        await pilot.press("f7", "n", "a", "k")
        await pilot.pause()
        assert isinstance(app.screen, ProcDetailScreen) and not app.intents


async def test_esc_closes() -> None:
    app = DetailApp(detail())
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, "python3")
        await pilot.press("escape")
        await wait_for(lambda: not isinstance(app.screen, ProcDetailScreen), what="closed")
        assert len(app.screen_stack) == 1


# ------------------------------------------------------------------ refresh


async def test_refresh_changes_the_fields_and_graphs_in_place() -> None:
    app = DetailApp(detail())
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, "Threads    12")
        screen = app.screen
        assert isinstance(screen, ProcDetailScreen)
        cpu = screen.query_one("#cpu-graph", Graph)
        builds = cpu.rebuilds
        newer = detail(
            threads=13,
            state="T",
            nice=7,
            cpu_history=[*detail().cpu_history[1:], 2.5],
        )
        screen.update_detail(newer)
        text = await opened(pilot, "Threads    13", "T stopped", "250%  max 250%")
        assert "Nice       7" in text
        assert screen.query_one("#cpu-graph", Graph) is cpu and cpu.rebuilds == builds + 1
        # The same figures again: nothing is drawn again.
        screen.update_detail(newer)
        await pilot.pause()
        assert cpu.rebuilds == builds + 1
        # By message too; and an answer for another process (a reused pid) is ignored.
        screen.post_message(RefreshProcDetail(detail(threads=14)))
        await opened(pilot, "Threads    14")
        screen.update_detail(detail(threads=99, create_time=START + 1))
        await pilot.pause()
        assert "Threads    99" not in shown(app)
        await pilot.press("f8")
        await wait_for(lambda: len(app.intents) == 1, what="an intent")
        assert app.intents[0].params == Renice(pid=4242, create_time=START, nice=6)


# ------------------------------------------------------------------ snapshots


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_detail_snapshot(snap_compare: object, size: tuple[int, int], utc: None) -> None:
    app = DetailApp(
        detail(open_files=None, reasons={"open_files": "permission denied"}), theme="llmaos-dark"
    )

    async def before(pilot: Pilot[None]) -> None:
        await opened(pilot, "python3", "S sleeping")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=size, run_before=before)  # type: ignore[operator]
