"""``llmaos-tui plan --level hosts --units containers --apply`` on two testbed hosts.

Each host has its own sshd and dockerd; the command runs as a user runs it, with a hosts
file naming both. The testbed's hosts share one kernel, so their measured CPU loads are
the same: the imbalance is real queued requests held waiting on the first host (a
blocker takes every core), which count as its demand. The plan may move containers
only, so the busy container goes to the other host through the journaled container move
(the bind-mounted one, pinned, stays), and the engines are asked what happened. Then the
same from the console's review (``b``, ``u``, Enter).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from llmaos_agent.protocol import RequestRef, RequestSpec
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.plan import PlanScreen
from tests import images
from tests.helpers import audit_of, review, run_tui, wait_for
from tests.test_containers_ui import app_for
from tests.testbed import Testbed, TestHost

pytestmark = pytest.mark.integration
TRIES = 3  # a plan that finds the other host's cores full (a busy machine) is made again


def names(d: Any) -> dict[str, str]:
    return {c["Names"][0].lstrip("/"): c["State"] for c in d.api.containers(all=True)}


def spinner(d: Any, name: str, **kw: Any) -> Any:
    """A container that keeps a tenth of a core busy (and stops at once on SIGTERM)."""
    return d.containers.run(
        images.TEST_TAG, ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"],
        name=name, detach=True, nano_cpus=100_000_000, **kw,
    )  # fmt: skip


def one_host_file(home: Path, h: TestHost) -> Path:
    """A hosts file naming ``h`` alone, for the commands that act on one host."""
    full = (home / ".config" / "llmaos-tui" / "hosts.toml").read_text()
    (section,) = [s for s in re.split(r"(?=^\[hosts\.)", full, flags=re.M) if f".{h.name}]" in s]
    path = home / f"{h.name}.toml"
    path.write_text(section)
    return path


def test_plan_moves_a_container_to_the_idle_host(
    docker_pair: Testbed, engines: tuple[Any, Any], docker_home: Path, tmp_path: Path
) -> None:
    d1, d2 = engines
    h1, h2 = docker_pair.hosts
    spinner(d1, "busy")
    bound = tmp_path / "bound"
    bound.mkdir()
    spinner(d1, "bound", volumes={str(bound): {"bind": "/srv", "mode": "rw"}})
    # (Options after the subcommand: its own defaults would override them before it.)
    on_h1 = ["--no-local", "--hosts-file", str(one_host_file(docker_home, h1))]
    submitted: list[str] = []
    try:
        # Queued demand on h1: a blocker takes every core, so requests for every core wait.
        for prio in (1000, 0, 0):
            cp = run_tui(docker_home, "submit", *on_h1, "--cpus", "2", "--priority", str(prio),
                         "--json", "--", "sleep", "600")  # fmt: skip
            assert cp.returncode == 0, cp.stderr
            submitted.append(json.loads(cp.stdout)["id"])

        # Unattended, auto mode leaves containers where they are unless told (a move pauses
        # the service); what it would move is queued requests.
        cp = run_tui(docker_home, "plan", "--no-local", "--level", "hosts", "--auto",
                     "--dry-run", "--periods", "1", "--json")  # fmt: skip
        assert cp.returncode == 0, (cp.stdout, cp.stderr)
        (period,) = [json.loads(ln) for ln in cp.stdout.splitlines() if ln.strip()]
        assert period["dry_run"] and period["results"] == []
        assert all(m["kind"] == "request_queued" for m in period["moves"]), period

        plan: dict[str, Any] = {}
        for i in range(TRIES):
            time.sleep(5 * i)  # spacing between tries: new load windows to plan from
            cp = run_tui(docker_home, "plan", "--no-local", "--level", "hosts", "--units",
                         "containers", "--apply", "--json", "--settle", "1")  # fmt: skip
            assert cp.returncode == 0, (cp.stdout, cp.stderr)
            plan = json.loads(cp.stdout)
            if plan["moves"]:
                break
        if plan["moves"]:
            moves = [(m["kind"], m["name"], m["src"], m["dst"]) for m in plan["moves"]]
            assert moves == [("container", "busy", h1.name, h2.name)], plan
            assert plan["results"][0]["ok"], plan["results"]
            assert f"moved busy {h1.name} -> {h2.name}" in plan["results"][0]["message"]
        else:
            # The hosts' cores are this whole machine's: when other work fills them, the
            # plan's own window shows no room on the target, and moving nothing is right.
            # Checked against that window; then the move the plan would make is made by
            # hand, so what follows (engines, audit, queue) is still checked.
            slot = {s["id"]: s for s in plan["slots"]}[h2.name]
            assert slot["load"] + 0.1 > slot["capacity"], ("a gain was missed", plan)
            assert plan["results"] == []
            cp = run_tui(docker_home, "move", "busy", "--from", h1.name, "--to", h2.name,
                         "--json")  # fmt: skip
            assert cp.returncode == 0, (cp.stdout, cp.stderr)

        # What the engines say: it runs on h2 only; the pinned one never left h1.
        assert names(d2) == {"busy": "running"}
        assert names(d1) == {"bound": "running"}
        # The audit log has the move and nothing else but the submits: the requests stayed.
        entries = [e for e in audit_of(docker_home) if e["action"] != "requests.submit"]
        assert [(e["action"], e["host"], e["target"], e["result"]) for e in entries] == [
            ("container.move", h1.name, "busy", "ok")
        ]
        cp = run_tui(docker_home, "requests", *on_h1, "--json")
        assert cp.returncode == 0, cp.stderr
        states = {r["id"]: r["state"] for r in json.loads(cp.stdout)["hosts"][h1.name]}
        assert [states.get(rid) for rid in submitted] == ["running", "queued", "queued"]
    finally:
        for rid in reversed(submitted):  # the queue outlives the test's agents: empty it
            run_tui(docker_home, "cancel", *on_h1, rid)


async def test_review_moves_only_containers_after_u(
    docker_pair: Testbed, engines: tuple[Any, Any], tmp_path: Path
) -> None:
    """The same through the console: b on the fleet, u until containers only, Enter."""
    d1, d2 = engines
    h1, h2 = docker_pair.hosts
    spinner(d1, "busy")
    app = app_for(docker_pair, tmp_path)
    app.settle_s = 1.0
    submitted: list[str] = []
    no_room = False
    async with app.run_test(size=(150, 40)) as pilot:
        a = app.fleet.hosts[h1.name]
        try:
            await wait_for(lambda: all(h.docker and h.sample for h in app.fleet.hosts.values()),
                           90, "hosts up")  # fmt: skip
            for prio in (1000, 0, 0):
                spec = RequestSpec(argv=["sleep", "600"], cpus=2, priority=prio)
                info = await app.by_name[h1.name].call("requests.submit", spec)
                submitted.append(info.id)
            await wait_for(
                lambda: sum(r.state == "queued" for r in a.requests.values()) == 2
                and any(c.name == "busy" and c.cpu > 0 for c in a.containers.values()),
                30, "the demand and the busy container in the state",
            )  # fmt: skip
            await pilot.press("b")
            screen = await review(app)
            for _ in range(2):  # both -> requests -> containers
                await pilot.press("u")
                screen = await review(app, after=screen)
            assert isinstance(screen, PlanScreen) and screen.units == {"containers"}
            moves = [(m.kind, m.name, m.src, m.dst) for m in screen.plan.moves]
            room = {s.id: s for s in screen.plan.slots}[h2.name]
            if not moves:
                # Other work fills this machine's cores (the hosts' too): the review's own
                # window shows no room on the target, so an empty plan is right.
                assert room.load + 0.1 > room.capacity, ("a gain was missed", screen.plan)
                no_room = True
            else:
                assert moves == [("container", "busy", h1.name, h2.name)], screen.plan
                await pilot.press("enter")
                await wait_for(lambda: screen.measured is not None, 120, "the plan to run")
                ok, message = screen.results[0]
                assert ok, message
                assert names(d2) == {"busy": "running"} and names(d1) == {}
                done = str(screen.query_one(DataTable).get_row_at(0)[7])
                assert done.startswith(f"done: moved busy {h1.name} -> {h2.name}")
        finally:
            for rid in submitted:
                await app.by_name[h1.name].call("requests.cancel", RequestRef(id=rid))
    if no_room:
        return  # nothing was applied: the review's empty plan was checked above
    actions = [(e["action"], e["result"]) for e in AuditLog(tmp_path / "audit.jsonl").read()]
    assert ("container.move", "ok") in actions
    assert not any(act == "requests.withdraw" for act, _ in actions)
