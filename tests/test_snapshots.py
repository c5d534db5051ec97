"""Snapshot tests: the fleet and host screens in both bundled themes, from a recording;
big hosts (tests/data/big) at small and large terminals, a subset of them in the light
theme too; the containers, requests, move and plan screens over the same hosts with
fixed containers, requests, pre-check answers and plan, and a pinned clock for the ages.

The recording (tests/data/recorded_stream.ndjson) is a real agent's stream, so the
screens show what an operator would see; nothing in it depends on this machine.
Regenerate after an intended change with ``pytest tests/test_snapshots.py
--snapshot-update`` and look at the SVGs before committing them.
"""

from __future__ import annotations

from dataclasses import replace

import msgspec
import pytest
from textual.pilot import Pilot

from llmaos_agent.protocol import Container, RequestInfo
from llmaos_tui.app import HostChanged, LlmaosApp
from llmaos_tui.balance import Move, Plan
from llmaos_tui.balance.model import Slot
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.ops.move_model import MovePlan
from llmaos_tui.screens.containers import ContainersScreen
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.move import (
    MovePlanQuery,
    MovePlanReady,
    MoveScreen,
    MoveTargetImage,
    MoveTargetsQuery,
)
from llmaos_tui.screens.plan import PlanScreen
from llmaos_tui.screens.requests import RequestsScreen
from tests.helpers import DATA, RECORDING, wait_for

SIZE = (130, 40)
THEMES = ["llmaos-dark", "llmaos-light"]


def _app(theme: str, *names: str) -> LlmaosApp:
    links = [ReplayLink(RECORDING, name=n) for n in names]
    return LlmaosApp(links, theme=theme, cursor_blink=False)


async def _played(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, LlmaosApp)
    hosts = list(app.fleet.hosts.values())
    await wait_for(
        lambda: all(h.status is HostStatus.UP and h.procs and len(h.history) > 3 for h in hosts),
        what="the recording played",
    )
    # The fleet β history grows once a second: stop the clock and give it a fixed
    # length, so the header's sparkline does not depend on how fast this machine is.
    app.ticker.pause()
    app.fleet.beta_history.clear()
    for _ in range(3):
        app.fleet.tick()
    app.post_message(HostChanged(hosts[0].name))
    await pilot.pause(0.5)  # past the coalescing of host updates (250 ms on the fleet)


@pytest.mark.parametrize("theme", THEMES)
def test_fleet_screen(snap_compare: object, theme: str) -> None:
    app = _app(theme, "gpu-a", "gpu-b")

    async def before(pilot: Pilot[None]) -> None:
        await _played(pilot)
        assert isinstance(pilot.app.screen, FleetScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


@pytest.mark.parametrize("theme", THEMES)
def test_host_screen(snap_compare: object, theme: str) -> None:
    app = _app(theme, "gpu-a")

    async def before(pilot: Pilot[None]) -> None:
        await _played(pilot)
        assert isinstance(pilot.app.screen, HostScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


@pytest.mark.parametrize("theme", THEMES)
def test_fleet_heat_map(snap_compare: object, theme: str) -> None:
    app = _app(theme, "gpu-a", "gpu-b", "gpu-c")

    async def before(pilot: Pilot[None]) -> None:
        await _played(pilot)
        assert isinstance(pilot.app.screen, FleetScreen)
        await pilot.press("h")
        await pilot.pause(0.1)
        assert pilot.app.screen.heatmap_shown

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


# ------------------------------------------------- big hosts, small terminals

BIG = [
    (8, 0, (80, 24)),
    (64, 8, (80, 24)),
    (256, 8, (80, 24)),
    (64, 8, (120, 40)),
    (96, 2, (120, 40)),
    (256, 0, (120, 40)),
    (64, 8, (200, 60)),
    (256, 8, (200, 60)),
]
"""A representative set of tests/data/big's recordings and sizes: every core form (full,
compact, tiny, dense) and both GPU forms; tests/test_host_layout.py counts all 36."""


@pytest.mark.parametrize(
    ("cores", "gpus", "size"), BIG, ids=[f"{c}c-{g}g-{w}x{h}" for c, g, (w, h) in BIG]
)
def test_big_host_screen(
    snap_compare: object, cores: int, gpus: int, size: tuple[int, int]
) -> None:
    app = _big_app(cores, gpus, "llmaos-dark")
    assert snap_compare(app, terminal_size=size, run_before=_host_shown)  # type: ignore[operator]


BIG_LIGHT = [(64, 8, (80, 24)), (64, 8, (120, 40)), (256, 8, (200, 60))]
"""The light theme over a subset of :data:`BIG`: the compact and dense core forms, the
GPU panel, and the smallest and largest terminals, where a colour too pale for a white
background would show first."""


@pytest.mark.parametrize(
    ("cores", "gpus", "size"),
    BIG_LIGHT,
    ids=[f"{c}c-{g}g-{w}x{h}" for c, g, (w, h) in BIG_LIGHT],
)
def test_big_host_screen_light(
    snap_compare: object, cores: int, gpus: int, size: tuple[int, int]
) -> None:
    app = _big_app(cores, gpus, "llmaos-light")
    assert snap_compare(app, terminal_size=size, run_before=_host_shown)  # type: ignore[operator]


def _big_app(cores: int, gpus: int, theme: str) -> LlmaosApp:
    name = f"host-{cores}c-{gpus}g"
    link = ReplayLink(DATA / "big" / f"{name}.ndjson", name=name)
    return LlmaosApp([link], theme=theme, cursor_blink=False)


async def _host_shown(pilot: Pilot[None]) -> None:
    await _played(pilot)
    assert isinstance(pilot.app.screen, HostScreen)


# ------------------------------------------- containers, requests, move, plan

NOW = 1_800_000_000.0
"""The clock of the screens below: ages and uptimes count from it."""


def container(host: str, name: str, image: str, **kw: object) -> Container:
    fields: dict[str, object] = {
        "id": (host + name).encode().hex().ljust(64, "0")[:64], "name": name, "image": image,
        "image_id": f"sha256:{name}", "state": "running", "status": "Up", "created": NOW - 9e4,
        "started": NOW - 7_200.0,
    }  # fmt: skip
    fields.update(kw)
    return msgspec.convert(fields, Container)


CONTAINERS = {
    "gpu-a": [
        container("gpu-a", "vllm-llama", "vllm/vllm-openai:v0.6.3", cpu=3.42, mem=18 << 30,
                  gpus=2, ports=["8000->8000/tcp"], volumes=["hf-cache:/root/.cache"],
                  health="healthy"),
        container("gpu-a", "redis", "redis:7.4", cpu=0.08, mem=96 << 20,
                  ports=["6379->6379/tcp"], volumes=["redis-data:/data"], started=NOW - 86_400.0),
        container("gpu-a", "old-eval", "eval-harness:0.3", state="exited", status="Exited (0)",
                  started=None),
    ],
    "gpu-b": [
        container("gpu-b", "embedder", "tei:1.5", cpu=1.10, mem=2 << 30, gpus=1,
                  ports=["8080->80/tcp"], health="starting", started=NOW - 45.0),
    ],
}  # fmt: skip


def request(rid: str, name: str, state: str, priority: int, **kw: object) -> RequestInfo:
    fields: dict[str, object] = {
        "id": rid, "name": name, "argv": ["python", f"{name}.py"], "shell": False,
        "priority": priority, "cpus": 1, "gpus": 0, "share_gpu": False, "mem": 0,
        "state": state, "seq": int(rid[-1]), "submitted": NOW - 600.0,
    }  # fmt: skip
    fields.update(kw)
    return msgspec.convert(fields, RequestInfo)


REQUESTS = {
    "gpu-a": [
        request("r-a1", "finetune", "running", 100, cpus=8, gpus=2, started=NOW - 5_400.0,
                reason="cores 0-7, GPUs 0,1"),
        request("r-a2", "eval-batch", "queued", 50, cpus=4, reason="waiting for 2 GPUs"),
        request("r-a3", "nightly-index", "held", 0, cpus=2, reason="held by alice"),
    ],
    "gpu-b": [
        request("r-b1", "embed-docs", "running", 10, cpus=2, gpus=1, started=NOW - 90.0,
                reason="cores 0-1, GPU 0"),
        request("r-b2", "sweep", "done", 0, ended=NOW - 30.0, exit_code=0, reason="exit 0"),
    ],
}  # fmt: skip


class FixedApp(LlmaosApp):
    """The console with the move dialog's questions answered from fixed data (no engine):
    gpu-b lacks the image and passes the pre-check, gpu-c has it."""

    def on_move_targets_query(self, q: MoveTargetsQuery) -> None:
        q.prevent_default()  # LlmaosApp's own handler would ask the engines
        for t in q.targets:
            q.screen.post_message(MoveTargetImage(t, t == "gpu-c"))

    def on_move_plan_query(self, q: MovePlanQuery) -> None:
        q.prevent_default()
        streamed = q.target != "gpu-c"
        c = q.container
        notes = {"finish": "remove source"}
        if not streamed:
            notes["image"] = "present on target: not streamed"
        plan = MovePlan(
            container=c.name, container_id=c.id, source=q.source, target=q.target,
            image=c.image, image_id=c.image_id, stream_image=streamed, image_size=0,
            was_running=True, commit=q.commit, keep_source=q.keep_source, volumes=[],
            binds=[], ports=[], gpus=[],
            steps=["inspect", "precheck", "image", "create", "stop", "copy", "start",
                   "verify", "finish"],
            step_notes=notes,
        )  # fmt: skip
        q.screen.post_message(MovePlanReady(q.target, plan, []))


async def _fixed(pilot: Pilot[None]) -> LlmaosApp:
    """The recording played, then each host given an engine, containers and requests."""
    await _played(pilot)
    app = pilot.app
    assert isinstance(app, LlmaosApp)
    for h in app.fleet.hosts.values():
        assert h.hello is not None
        caps = msgspec.structs.replace(h.hello.caps, docker=True, docker_reason=None)
        h.hello = msgspec.structs.replace(h.hello, caps=caps)
        h.containers = {c.id: c for c in CONTAINERS.get(h.name, [])}
        h.containers_version += 1
        h.requests = {r.id: r for r in REQUESTS.get(h.name, [])}
        h.requests_version += 1
    return app


async def _shown(pilot: Pilot[None], screen: object) -> None:
    await wait_for(lambda: pilot.app.screen is screen, what=f"{screen} shown")
    await pilot.pause(0.3)


@pytest.mark.parametrize("theme", THEMES)
def test_containers_screen(snap_compare: object, theme: str) -> None:
    app = FixedApp([ReplayLink(RECORDING, name=n) for n in ("gpu-a", "gpu-b")],
                   theme=theme, cursor_blink=False)  # fmt: skip

    async def before(pilot: Pilot[None]) -> None:
        fixed = await _fixed(pilot)
        screen = ContainersScreen(fixed.fleet, None)
        screen.clock = lambda: NOW
        fixed.push_screen(screen)
        await _shown(pilot, screen)
        await pilot.press("down")  # the cursor on the second row

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


@pytest.mark.parametrize("theme", THEMES)
def test_requests_screen(snap_compare: object, theme: str) -> None:
    app = FixedApp([ReplayLink(RECORDING, name=n) for n in ("gpu-a", "gpu-b")],
                   theme=theme, cursor_blink=False)  # fmt: skip

    async def before(pilot: Pilot[None]) -> None:
        fixed = await _fixed(pilot)
        screen = RequestsScreen(fixed.fleet, None)
        screen.clock = lambda: NOW
        fixed.push_screen(screen)
        await _shown(pilot, screen)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


@pytest.mark.parametrize("theme", THEMES)
def test_move_dialog(snap_compare: object, theme: str) -> None:
    app = FixedApp([ReplayLink(RECORDING, name=n) for n in ("gpu-a", "gpu-b", "gpu-c")],
                   theme=theme, cursor_blink=False)  # fmt: skip

    async def before(pilot: Pilot[None]) -> None:
        fixed = await _fixed(pilot)
        screen = MoveScreen(fixed.fleet, "gpu-a", CONTAINERS["gpu-a"][0])
        fixed.push_screen(screen)
        await _shown(pilot, screen)
        await wait_for(lambda: screen.plan_for == "gpu-b", what="the pre-check shown")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


def review_plan() -> Plan:
    """A hosts-level plan over gpu-a (busy) and gpu-b (idle): a queued request and a
    container to move; the betas are the plan's own (Plan.predict)."""
    slots = (Slot("gpu-a", "hosts", 16.0, 13.0), Slot("gpu-b", "hosts", 16.0, 3.0))
    moves = (
        Move("gpu-a/r-a2", "gpu-a", "gpu-b", 4.0, 0.0, 0.0, "queued, gpu-b has room",
             kind="request_queued", name="eval-batch"),
        Move("gpu-a/" + CONTAINERS["gpu-a"][1].id, "gpu-a", "gpu-b", 1.0, 0.0, 0.0,
             "lowers beta", kind="container", name="redis"),
    )  # fmt: skip
    draft = Plan("hosts", 0.0, 0.0, 0.0, moves, slots)
    before, one, both = draft.predict([]), draft.predict([0]), draft.predict([0, 1])
    moves = (
        replace(moves[0], gain=before - one, beta_after=one),
        replace(moves[1], gain=one - both, beta_after=both),
    )
    return Plan("hosts", before, both, 0.0, moves, slots)


@pytest.mark.parametrize("theme", THEMES)
def test_plan_review(snap_compare: object, theme: str) -> None:
    app = FixedApp([ReplayLink(RECORDING, name=n) for n in ("gpu-a", "gpu-b")],
                   theme=theme, cursor_blink=False)  # fmt: skip

    async def before(pilot: Pilot[None]) -> None:
        fixed = await _fixed(pilot)
        screen = PlanScreen(review_plan(), "the fleet", None)
        fixed.push_screen(screen)
        await _shown(pilot, screen)
        await pilot.press("down", "space")  # the container move deselected

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]
