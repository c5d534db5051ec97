"""Pilot tests of a Slurm cluster's jobs on the requests screen, against a real cluster.

A real one-node cluster (munged, slurmctld, slurmd: :mod:`tests.slurm_cluster`) is given
to the console as the hosts file's ``[slurm.test]`` with ``host = "local"``; jobs are
submitted with Slurm's own ``sbatch``, keys are pressed as an operator would, and the
effect is read back from Slurm (``squeue``) and from the console's table and audit log.

The app is :class:`LlmaosApp` once it derives from :class:`SlurmActions` and its
ChangeIntent handler asks :meth:`SlurmActions.slurm_change` first; until then the test
builds that app here (the same two lines).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.text import Text

from llmaos_agent.protocol import RequestRef
from llmaos_tui.app import LlmaosApp
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.intents import ChangeIntent
from llmaos_tui.screens.requests import RequestsScreen
from llmaos_tui.slurm import LocalRunner, SlurmClient
from llmaos_tui.slurm_actions import SlurmActions
from llmaos_tui.widgets.synced_table import SyncedTable
from tests.conftest import need
from tests.helpers import wait_for
from tests.slurm_cluster import SlurmCluster, slurm_available

SIZE = (130, 40)
DEADLINE = 90.0  # seconds; slurmctld schedules every few seconds, and CI is busy
HOST = "slurm:test"

if issubclass(LlmaosApp, SlurmActions):
    SlurmApp: type[LlmaosApp] = LlmaosApp
else:

    class _SlurmApp(LlmaosApp, SlurmActions):  # what app.py is to become
        def on_change_intent(self, intent: ChangeIntent) -> None:
            if self.slurm_change(intent):
                intent.prevent_default()  # LlmaosApp's own handler is not to see it

    SlurmApp = _SlurmApp


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    why = slurm_available()
    need(why is None, why or "")
    with SlurmCluster(priority="multifactor", gpus=2) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_jobs_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "cluster" in request.fixturenames:
        c: SlurmCluster = request.getfixturevalue("cluster")
        if ids := c.job_ids():
            c.run("scancel", *ids)


def sbatch(c: SlurmCluster, *args: str) -> str:
    out = c.run("sbatch", "--parsable", f"--chdir={c.root / 'out'}", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def squeue(c: SlurmCluster, job: str, field: str) -> str:
    """One field of a job as Slurm itself says (``%T`` state, ``%r`` reason)."""
    return c.run("squeue", "-h", "-t", "all", "-j", job, "-o", field).stdout.strip()


def blocker(c: SlurmCluster, tmp_path: Path) -> tuple[str, Path]:
    """A running job holding every CPU until the returned file exists, and a queued one
    behind it."""
    flag = tmp_path / "go"
    job = sbatch(c, "-J", "blocker", "-c", str(c.cpus),
                 f"--wrap=while [ ! -e {flag} ]; do sleep 0.2; done")  # fmt: skip
    deadline = time.monotonic() + DEADLINE
    while squeue(c, job, "%T") != "RUNNING":
        assert time.monotonic() < deadline, f"the blocker did not run: {c.log_tail()}"
        time.sleep(0.2)  # poll interval
    return job, flag


def make_app(c: SlurmCluster, tmp_path: Path, *, read_only: bool = False) -> LlmaosApp:
    app = SlurmApp(
        [], read_only=read_only, cursor_blink=False, audit=AuditLog(tmp_path / "audit.jsonl")
    )
    client = SlurmClient("test", LocalRunner(env=c.env, cwd=str(c.root / "out")))
    app.slurm_clients = [client]  # as the CLI's run_app does
    return app


def state_cell(screen: RequestsScreen, job: str) -> str:
    table = screen.query_one(SyncedTable)
    key = f"{HOST}/slurm:test:{job}"
    if key not in table.keys:
        return ""
    cell = table.get_cell(key, "STATE")
    return cell.plain if isinstance(cell, Text) else str(cell)


def notices(app: LlmaosApp) -> list[str]:
    return [n.message for n in app._notifications]


async def open_requests(app: LlmaosApp, pilot: object, jobs: list[str]) -> RequestsScreen:
    await pilot.press("r")  # type: ignore[attr-defined]
    screen = app.screen
    assert isinstance(screen, RequestsScreen)
    await wait_for(lambda: all(state_cell(screen, j) for j in jobs), DEADLINE, "the jobs shown")
    return screen


async def select(pilot: object, screen: RequestsScreen, job: str) -> None:
    table = screen.query_one(SyncedTable)
    key = f"{HOST}/slurm:test:{job}"
    table.move_cursor(row=table.keys.index(key))
    await wait_for(lambda: screen._selected_key() == key, 10, f"the cursor on {job}")


@pytest.mark.integration
async def test_jobs_shown_and_held_from_the_keyboard(cluster: SlurmCluster, tmp_path: Path) -> None:
    c = cluster
    running, flag = blocker(c, tmp_path)
    queued = sbatch(c, "-J", "behind", "--gres=gpu:1", "--wrap=true")
    app = make_app(c, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_requests(app, pilot, [running, queued])
        assert state_cell(screen, running) == "running"
        assert state_cell(screen, queued) == "queued"
        table = screen.query_one(SyncedTable)
        row = table.get_row(f"{HOST}/slurm:test:{queued}")
        texts = [x.plain if isinstance(x, Text) else str(x) for x in row]
        host, rid, _state, name, user, _prio, cpus, gpus, nodes = texts[:9]
        assert (host, rid, name, user, cpus, gpus, nodes) == (
            HOST, f"slurm:test:{queued}", "behind", "root", "1", "1", "1"
        )  # fmt: skip
        assert "Slurm test" in str(screen.query_one("#title").render())

        await select(pilot, screen, queued)
        t0 = time.monotonic()
        await pilot.press("h")
        await wait_for(lambda: state_cell(screen, queued) == "held", DEADLINE, "the row held")
        held_s = time.monotonic() - t0
        assert squeue(c, queued, "%r") == "JobHeldAdmin"  # Slurm itself holds it

        t0 = time.monotonic()
        await pilot.press("h")  # on a held job: release
        await wait_for(lambda: state_cell(screen, queued) == "queued", DEADLINE, "released")
        release_s = time.monotonic() - t0
        assert squeue(c, queued, "%T") == "PENDING"
        assert squeue(c, queued, "%r") not in ("JobHeldAdmin", "JobHeldUser")
        print(f"\nslurm ui: key press -> held in the table {held_s * 1000:.0f} ms, "
              f"-> released {release_s * 1000:.0f} ms")  # fmt: skip
    flag.touch()
    audit = AuditLog(tmp_path / "audit.jsonl").read()
    assert [(e["action"], e["result"], e["target"]) for e in audit] == [
        ("requests.hold", "ok", f"request slurm:test:{queued}"),
        ("requests.release", "ok", f"request slurm:test:{queued}"),
    ]
    assert audit[0]["before"].startswith("queued") and audit[0]["after"].startswith("held")


@pytest.mark.integration
async def test_read_only_changes_nothing_in_slurm(cluster: SlurmCluster, tmp_path: Path) -> None:
    c = cluster
    running, flag = blocker(c, tmp_path)
    queued = sbatch(c, "-J", "stays", "--wrap=true")
    app = make_app(c, tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_requests(app, pilot, [running, queued])
        await select(pilot, screen, queued)
        shown = {b.binding.id for b in screen.active_bindings.values() if b.enabled}
        assert not shown & {"requests.raise", "requests.cancel", "requests.hold", "requests.top"}
        await pilot.press("h", "plus", "t", "c")
        # A change that reaches the app anyway (another screen, a script) is refused there.
        rid = f"slurm:test:{queued}"
        app.post_message(ChangeIntent(HOST, "requests.hold", RequestRef(id=rid), f"request {rid}"))
        await wait_for(lambda: any("read-only" in n for n in notices(app)), 10, "the notice")
        await pilot.pause(0.5)
        assert state_cell(screen, queued) == "queued"
    assert squeue(c, queued, "%T") == "PENDING"
    assert squeue(c, queued, "%r") not in ("JobHeldAdmin", "JobHeldUser")
    audit = AuditLog(tmp_path / "audit.jsonl").read()
    assert [(e["action"], e["result"]) for e in audit] == [
        ("requests.hold", "refused: read-only console")
    ]
    flag.touch()


@pytest.mark.integration
async def test_slurm_refusal_shown_in_its_words(cluster: SlurmCluster, tmp_path: Path) -> None:
    c = cluster
    running, flag = blocker(c, tmp_path)
    app = make_app(c, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_requests(app, pilot, [running])
        await select(pilot, screen, running)
        await pilot.press("t")  # Slurm moves only pending jobs to the top
        await wait_for(lambda: len(AuditLog(tmp_path / "audit.jsonl").read()) == 1, 30, "audit")
        entry = AuditLog(tmp_path / "audit.jsonl").read()[0]
        assert entry["action"] == "requests.top"
        words = f"Job is no longer pending execution for job {running}"
        assert entry["result"] == f"refused: {words}"
        await wait_for(lambda: any(words in n for n in notices(app)), 10, "Slurm's words")
        assert any(n.startswith(f"{HOST} (local): ") for n in notices(app))
        assert state_cell(screen, running) == "running"
    assert squeue(c, running, "%T") == "RUNNING"
    flag.touch()
