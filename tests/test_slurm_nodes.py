"""A Slurm cluster's node states: parsed from ``scontrol -o show node`` and shown on the
fleet screen beside the status of the inventory hosts that are nodes.

The parser is read against a real one-node cluster's own output (:mod:`tests.slurm_cluster`)
and against hostile lines; the fleet screen is a Pilot app given that cluster as the CLI
gives the hosts file's clusters, with ``local`` (this machine, whose short hostname is the
node's name) among its hosts: the node is drained and resumed with Slurm's ``scontrol``
and the fleet table is read as a user reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widget import Widget

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostState
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.slurm import LocalRunner, SlurmClient, SlurmNode, parse_nodes
from llmaos_tui.slurm.nodes import MAX_NAME, MAX_NODES
from llmaos_tui.slurm_actions import node_of
from llmaos_tui.widgets.host_table import HostTable
from tests.conftest import need
from tests.helpers import RECORDING, wait_for
from tests.slurm_cluster import SlurmCluster, slurm_available

DEADLINE = 90.0  # seconds; a busy machine's slurmctld is slow to answer


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    why = slurm_available()
    need(why is None, why or "")
    with SlurmCluster(gpus=0) as c:
        yield c


def client(c: SlurmCluster) -> SlurmClient:
    return SlurmClient("test", LocalRunner(env=c.env, cwd=str(c.root / "out")))


def scontrol(c: SlurmCluster, *args: str) -> None:
    out = c.run("scontrol", *args)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------- the parser


@pytest.mark.integration
async def test_nodes_read_from_a_real_cluster(cluster: SlurmCluster) -> None:
    c = cluster
    (node,) = await client(c).nodes()
    assert (node.name, node.hostname, node.state) == (c.node, c.node, "idle")
    scontrol(c, "update", f"NodeName={c.node}", "State=DRAIN", "Reason=x State=IDLE y")
    try:
        (node,) = await client(c).nodes()
        assert node.state == "drained"  # not the State=IDLE of the reason's text
        assert "drain" in node.flags
        # Slurm itself says so (the fixture's node_state() would read the reason's
        # State=IDLE: it keeps a key's last occurrence).
        raw = c.run("scontrol", "-o", "show", "node", c.node).stdout
        assert " State=IDLE+DRAIN " in raw
    finally:
        scontrol(c, "update", f"NodeName={c.node}", "State=RESUME")
    await wait_for(lambda: c.node_state() == "idle", DEADLINE, "the node resumed")


def test_states_and_flags() -> None:
    out = (
        "NodeName=a NodeHostName=a.example State=MIXED+DRAIN OS=Linux 6.1 #1 SMP\n"
        "NodeName=b NodeHostName=b State=ALLOCATED Reason=disk [root@2026]\n"
        "NodeName=c State=DOWN*+DRAIN+NOT_RESPONDING\n"
        "NodeName=d NodeHostName=d State=IDLE+NOT_RESPONDING\n"
    )
    nodes, cut = parse_nodes(out)
    assert not cut
    assert [(n.name, n.hostname, n.state) for n in nodes] == [
        ("a", "a.example", "draining"), ("b", "b", "allocated"), ("c", "c", "drained"),
        ("d", "d", "idle"),
    ]  # fmt: skip
    assert nodes[3].flags == ("not_responding",)


def test_hostile_lines_forge_nothing_and_are_bounded() -> None:
    long = "n" * 5000
    out = (
        "garbage without fields\n"
        "NodeName=x State=\x1b[31mIDLE\n"  # an escape in the state: not a state
        "NodeName=\x1b]0;pwn\x07 State=IDLE\n"  # nor in a name (cut at the space: no name)
        f"NodeName={long} State=IDLE\n"  # longer than any name Slurm allows
        "State=IDLE\n"  # no name
        "NodeName=ok State=ALLOCATED Reason=evil NodeName=ok2 State=IDLE\n"
        "NodeName=ok3 NodeHostName=\x1b[2J State=MIXED\n"
    )
    nodes, _ = parse_nodes(out)
    assert [(n.name, n.hostname, n.state) for n in nodes] == [
        ("ok", "ok", "allocated"),
        ("ok3", "ok3", "mixed"),  # the escape is no hostname: the node's name stands in
    ]
    assert all(len(n.name) <= MAX_NAME and n.name.isprintable() for n in nodes)
    many = "".join(f"NodeName=n{i} State=IDLE\n" for i in range(MAX_NODES + 5))
    nodes, cut = parse_nodes(many)
    assert cut and len(nodes) == MAX_NODES


def test_a_node_is_a_host_by_name_or_hostname() -> None:
    nodes = [SlurmNode("gpu01", "gpu01.example", "idle"), SlurmNode("n2", "box2", "mixed")]
    assert node_of(HostState("gpu01"), nodes) is nodes[0]
    assert node_of(HostState("gpu01.example"), nodes) is nodes[0]
    assert node_of(HostState("box2"), nodes) is nodes[1]
    assert node_of(HostState("box3"), nodes) is None


# ---------------------------------------------------------------------- the fleet screen


def text_of(w: Widget) -> list[str]:
    strips = w.render_lines(Region(0, 0, w.size.width, w.size.height))
    return ["".join(seg.text for seg in strip) for strip in strips]


def row_of(table: HostTable, name: str) -> str:
    return next((ln for ln in text_of(table) if ln.lstrip().startswith(name + " ")), "")


@pytest.mark.integration
async def test_the_fleet_shows_the_local_nodes_state(cluster: SlurmCluster, tmp_path: Path) -> None:
    c = cluster
    # alpha's agent names another machine (the recording was made on one called "vm").
    elsewhere = tmp_path / "alpha.ndjson"
    text = RECORDING.read_text(encoding="utf-8")
    elsewhere.write_text(text.replace('"hostname":"vm"', '"hostname":"alpha-box"', 1))
    links: list[Link] = [ReplayLink(RECORDING, name="local"), ReplayLink(elsewhere, name="alpha")]
    app = LlmaosApp(links, cursor_blink=False, audit=AuditLog(tmp_path / "audit.jsonl"))
    app.slurm_clients = [client(c)]  # as the CLI's run_app does
    app.slurm_nodes_poll_s = 0.5
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_for(lambda: isinstance(app.screen, FleetScreen), 30, "the fleet screen")
        table = app.screen.query_one(HostTable)

        async def shows(word: str) -> None:
            def ok() -> bool:
                return f"slurm {word}" in row_of(table, "local")

            await wait_for(ok, DEADLINE, f"local shown {word}: {row_of(table, 'local')!r}")

        await shows("idle")
        await pilot.pause()
        assert "slurm" not in row_of(table, "alpha")  # no node of the cluster
        scontrol(c, "update", f"NodeName={c.node}", "State=DRAIN", "Reason=test")
        try:
            await shows("drained")
            assert app.fleet.hosts["local"].slurm == "drained"
        finally:
            scontrol(c, "update", f"NodeName={c.node}", "State=RESUME")
        await shows("idle")
