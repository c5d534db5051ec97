"""Pilot tests of the containers screen and the move dialog, against real hosts.

Two testbed hosts, each with its own sshd and dockerd; the console reaches them over SSH
with the agent pushed as a zipapp, as it reaches any host. What the operator sees (the
rows, the log, the dialog's outcome) is checked, and what happened is read back from the
engines themselves: the container stopped and started, moved with its data, or (read-only)
left alone.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from textual.widgets import DataTable, Label, RichLog, Static

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.ssh import SshLink, SshOptions
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.journal import MoveJournal
from llmaos_tui.screens.containers import ContainerLogScreen, ContainersScreen
from llmaos_tui.screens.dialogs import ConfirmScreen
from llmaos_tui.screens.move import MoveScreen
from tests import images
from tests.helpers import wait_for
from tests.testbed import Testbed, TestHost

pytestmark = pytest.mark.integration
SIZE = (170, 45)
PORT = 18090


def links(docker_pair: Testbed, known_hosts: Path | None = None) -> list[Link]:
    options = SshOptions(
        known_hosts=known_hosts or docker_pair.known_hosts,
        client_keys=[str(docker_pair.client_key)],
        config=[],
        use_agent=False,
        connect_timeout=5.0,
    )
    return [
        SshLink(
            HostSpec(name=h.name, host=h.addr, user="root", python=sys.executable), options=options
        )
        for h in docker_pair.hosts
    ]


def app_for(
    docker_pair: Testbed, tmp_path: Path, read_only: bool = False,
    known_hosts: Path | None = None,
) -> LlmaosApp:  # fmt: skip
    return LlmaosApp(
        links(docker_pair, known_hosts), read_only=read_only, cursor_blink=False,
        audit=AuditLog(tmp_path / "audit.jsonl"), journal=MoveJournal(tmp_path / "moves.sqlite"),
    )  # fmt: skip


def run_web(d: Any) -> Any:
    web = d.containers.run(
        images.TEST_TAG,
        ["sh", "-c", "echo hello-from-web; exec httpd -f -p 80 -h /data"],
        name="web",
        detach=True,
        volumes={"webdata": {"bind": "/data", "mode": "rw"}},
        ports={"80/tcp": PORT},
    )
    code, out = web.exec_run(["sh", "-c", "echo data that moves > /data/index.html"])
    assert code == 0, out
    return web


def state_of(d: Any, name: str) -> str | None:
    found = d.api.containers(all=True, filters={"name": f"^/{name}$"})
    return str(found[0]["State"]) if found else None


def row_texts(screen: ContainersScreen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def select(pilot: Any, screen: ContainersScreen, host: str, name: str) -> None:
    await wait_for(
        lambda: any(h == host and c.name == name for h, c in screen._rows), 30, f"{name} listed"
    )
    index = next(i for i, (h, c) in enumerate(screen._rows) if h == host and c.name == name)
    table = screen.query_one(DataTable)
    while table.cursor_row != index:
        await pilot.press("down" if table.cursor_row < index else "up")
    sel = screen.selected()
    assert sel is not None and sel[1].name == name


async def web_selected(app: Any, pilot: Any, host: str) -> ContainersScreen:
    """Once every host is up with its engine: the containers screen, on ``host``'s web."""
    await wait_for(
        lambda: all(h.docker and h.sample for h in app.fleet.hosts.values()), 90, "hosts up"
    )
    await pilot.press("c")
    screen = app.screen
    assert isinstance(screen, ContainersScreen)
    await select(pilot, screen, host, "web")
    return screen


def ssh_sessions(tb: Testbed, host: TestHost) -> int:
    """Established SSH connections the host's sshd serves now (as `ss` shows them there)."""
    out = tb.exec(host, ["ss", "-Htn", "state", "established", "( sport = :22 )"]).stdout
    return len(out.splitlines())


def logins(host: TestHost) -> int:
    """Logins the host's sshd has accepted so far (its log)."""
    return (host.dir / "sshd.log").read_text(errors="replace").count("Accepted publickey")


def http(addr: str) -> bytes:
    with urllib.request.urlopen(f"http://{addr}:{PORT}/index.html", timeout=5) as r:
        body: bytes = r.read()
        return body


async def test_containers_screen_acts_and_moves(
    docker_pair: Testbed, engines: tuple[Any, Any], tmp_path: Path
) -> None:
    d1, d2 = engines
    h1, h2 = docker_pair.hosts
    run_web(d1)
    app = app_for(docker_pair, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await web_selected(app, pilot, h1.name)
        row = next(r for r in row_texts(screen) if r[1] == "web")
        assert row[0] == h1.name and row[3] == "running" and images.TEST_TAG in row[2]
        assert f"{PORT}->80/tcp" in row[8] and "webdata:/data" in row[9]

        # Logs.
        await pilot.press("l")
        assert isinstance(app.screen, ContainerLogScreen)
        log = app.screen.query_one(RichLog)
        await wait_for(lambda: any("hello-from-web" in str(line.text) for line in log.lines),
                       15, "the container's output")  # fmt: skip
        await pilot.press("escape")

        # Stop (confirmed), then start again.
        await pilot.press("S")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(lambda: state_of(d1, "web") == "exited", 30, "web stopped")
        await wait_for(
            lambda: any(c.state == "exited" for _, c in screen._rows), 20, "exited shown"
        )
        await pilot.press("s")
        await wait_for(lambda: state_of(d1, "web") == "running", 30, "web started")
        await wait_for(lambda: any(r[3] == "running" for r in row_texts(screen) if r[1] == "web"),
                       20, "running shown")  # fmt: skip

        # Move it to the other host through the dialog.
        await select(pilot, screen, h1.name, "web")
        await pilot.press("m")
        move = app.screen
        assert isinstance(move, MoveScreen)
        await wait_for(lambda: move.plan_for == h2.name, 60, "the pre-check")
        plan_text = str(move.query_one("#plan", Static).render())
        assert "Pre-check passed" in plan_text, plan_text
        # Live mode says why it is unavailable here (no experimental engines), then off again.

        def plan_says(words: str) -> bool:
            return move.plan_for == h2.name and words in str(
                move.query_one("#plan", Static).render()
            )

        await pilot.press("v")
        await wait_for(lambda: plan_says("live mode is unavailable"), 60, "the live check")
        assert plan_says(f"the engine on {h2.name} does not run with experimental features")
        assert "Refused" in str(move.query_one("#plan", Static).render())
        await pilot.press("v")
        await wait_for(lambda: plan_says("Pre-check passed"), 60, "the pre-check again")
        await wait_for(lambda: move.has_image.get(h2.name) is False, 30, "image: no")
        sessions = {h.name: ssh_sessions(docker_pair, h) for h in docker_pair.hosts}
        logged_in = {h.name: logins(h) for h in docker_pair.hosts}
        await pilot.press("enter")
        await wait_for(lambda: move.finished is not None, 180, "the move to end")
        outcome = str(move.query_one("#outcome", Static).render())
        assert move.finished == "moved", outcome
        # The move's streams went over an SSH connection of its own to each host (one more
        # login each, as `llmaos-tui move` makes), closed once it ended; the links stay.
        assert {h.name: logins(h) - logged_in[h.name] for h in docker_pair.hosts} == {
            h1.name: 1,
            h2.name: 1,
        }
        await wait_for(
            lambda: {h.name: ssh_sessions(docker_pair, h) for h in docker_pair.hosts} == sessions,
            20, "the move's connections closed",
        )  # fmt: skip
        assert all(app.fleet.hosts[h.name].up for h in docker_pair.hosts)
        assert "moved web" in outcome
        assert all(bar.percentage == 1.0 for bar in move._bars.values())
        image_bar = move._bars["image"]
        assert image_bar.parent is not None
        assert "MB" in str(image_bar.parent.query_one(Label).render())  # the bytes streamed
        assert state_of(d2, "web") == "running" and state_of(d1, "web") is None
        assert http(h2.addr) == b"data that moves\n"
        await pilot.press("escape")
        await wait_for(
            lambda: any(h == h2.name and c.name == "web" for h, c in screen._rows),
            30, "web listed on the target",
        )  # fmt: skip
    actions = [(e["action"], e["result"]) for e in AuditLog(tmp_path / "audit.jsonl").read()]
    assert ("containers.stop", "ok") in actions and ("containers.start", "ok") in actions
    assert ("container.move", "ok") in actions


async def test_read_only_console_changes_no_container(
    docker_pair: Testbed, engines: tuple[Any, Any], tmp_path: Path
) -> None:
    d1, _d2 = engines
    h1 = docker_pair.hosts[0]
    run_web(d1)
    app = app_for(docker_pair, tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.fleet.hosts[h1.name].docker, 90, "host up")
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, ContainersScreen)
        await select(pilot, screen, h1.name, "web")
        assert "read-only" in str(screen.query_one("#title", Static).render())
        # By id: a key the screen leaves unbound in read-only may still be the app's (R).
        shown = {b.binding.id for b in screen.active_bindings.values() if b.enabled}
        assert "containers.logs" in shown
        changes = {"containers.start", "containers.stop", "containers.restart", "containers.move"}
        assert not changes & shown
        await pilot.press("S", "y", "m")
        await pilot.pause(1.0)
        assert isinstance(app.screen, ContainersScreen)  # no dialog opened
        assert state_of(d1, "web") == "running"


async def test_a_move_checks_host_keys_as_its_link_does(
    docker_pair: Testbed, engines: tuple[Any, Any], tmp_path: Path
) -> None:
    """The move's own connection is verified as the link's is: once the target's key in
    known_hosts is not the key it offers, the move is refused (the link, connected before,
    stays up), nothing changes, and the connection the move opened to the source closes."""
    d1, d2 = engines
    h1, h2 = docker_pair.hosts
    run_web(d1)
    known = tmp_path / "known_hosts"
    known.write_text(docker_pair.known_hosts.read_text())
    app = app_for(docker_pair, tmp_path, known_hosts=known)
    async with app.run_test(size=SIZE) as pilot:
        await web_selected(app, pilot, h1.name)
        await pilot.press("m")
        move = app.screen
        assert isinstance(move, MoveScreen)
        await wait_for(lambda: move.plan_for == h2.name, 60, "the pre-check")
        # Another key for the target in known_hosts, as after a man in the middle.
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        lines = known.read_text().splitlines()
        changed = [
            f"{ln.split()[0]} {other.strip()}" if h2.addr in ln.split()[0].split(",") else ln
            for ln in lines
        ]
        assert changed != lines
        known.write_text("".join(f"{ln}\n" for ln in changed))
        sessions = ssh_sessions(docker_pair, h1)
        await pilot.press("enter")
        await wait_for(lambda: move.finished is not None, 120, "the move to end")
        outcome = str(move.query_one("#outcome", Static).render())
        assert move.finished == "failed", outcome
        assert "HOST KEY CHANGED" in outcome, outcome
        assert state_of(d1, "web") == "running" and state_of(d2, "web") is None
        await wait_for(
            lambda: ssh_sessions(docker_pair, h1) == sessions, 20, "the source's connection closed"
        )
        assert app.fleet.hosts[h2.name].up  # the link's own connection was not touched
    actions = [(e["action"], e["result"]) for e in AuditLog(tmp_path / "audit.jsonl").read()]
    assert ("container.move", "ok") not in actions
