# ruff: noqa: F811 - cluster is a fixture imported from tests/slurm_cluster.py, then requested
"""A Slurm cluster's node states: parsed from ``sinfo --json`` (``scontrol show node``
as the fallback) and shown on the
fleet screen beside the status of the inventory hosts that are nodes.

The parser is read against a real one-node cluster's own output (:mod:`tests.slurm_cluster`)
and against hostile lines; the fleet screen is a Pilot app given that cluster as the CLI
gives the hosts file's clusters, with ``local`` (this machine, whose short hostname is the
node's name) among its hosts: the node is drained and resumed with Slurm's ``scontrol``
and the fleet table is read as a user reads it.
"""

from __future__ import annotations

import json
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
from llmaos_tui.slurm import LocalRunner, SlurmClient, SlurmNode, parse_nodes, parse_nodes_json
from llmaos_tui.slurm.nodes import MAX_NAME, MAX_NODES
from llmaos_tui.slurm_actions import node_of
from llmaos_tui.widgets.host_table import HostTable
from tests.helpers import RECORDING, wait_for
from tests.slurm_cluster import SlurmCluster, cluster, slurm_available  # noqa: F401 - cluster: a fixture

DEADLINE = 90.0  # seconds; a busy machine's slurmctld is slow to answer


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
        # Slurm itself says so in the one-line form.
        raw = c.run("scontrol", "-o", "show", "node", c.node).stdout
        assert " State=IDLE+DRAIN " in raw
    finally:
        scontrol(c, "update", f"NodeName={c.node}", "State=RESUME")
    await wait_for(lambda: c.node_state() == "idle", DEADLINE, "the node resumed")


def test_states_and_flags() -> None:
    out = (
        "NodeName=a Arch=x86_64\n   NodeAddr=a NodeHostName=a.example\n   OS=Linux 6.1 #1 SMP\n"
        "   State=MIXED+DRAIN ThreadsPerCore=1\n   Partitions=debug,gpu\n\n"
        "NodeName=b NodeHostName=b CPUTot=4 CPULoad=3.50\n   State=ALLOCATED\n"
        "   Reason=disk [root@2026]\n"
        "NodeName=c\n   State=DOWN*+DRAIN+NOT_RESPONDING\n"
        "NodeName=d NodeHostName=d\n   State=IDLE+NOT_RESPONDING\n"
    )
    nodes, cut = parse_nodes(out)
    assert not cut
    assert [(n.name, n.hostname, n.state) for n in nodes] == [
        ("a", "a.example", "draining"), ("b", "b", "allocated"), ("c", "c", "drained"),
        ("d", "d", "idle"),
    ]  # fmt: skip
    assert nodes[3].flags == ("not_responding",)
    assert nodes[0].partitions == ("debug", "gpu")
    assert (nodes[1].cpus, nodes[1].cpu_load, nodes[1].load_per_cpu) == (4, 3.5, 0.875)


def test_hostile_lines_forge_nothing_and_are_bounded() -> None:
    long = "n" * 5000
    out = (
        "garbage without fields\n"
        "NodeName=x\n   State=\x1b[31mIDLE\n"  # an escape in the state: not a state
        "NodeName=\x1b]0;pwn\x07\n   State=IDLE\n"  # nor in a name (cut at the space: no name)
        f"NodeName={long}\n   State=IDLE\n"  # longer than any name Slurm allows
        "   State=IDLE\n"  # no name: a line that starts no record belongs to the one before
        "NodeName=ok\n   State=ALLOCATED Reason=evil NodeName=ok2 State=IDLE\n"
        "NodeName=ok3 NodeHostName=\x1b[2J\n   State=MIXED\n"
        "NodeName=ok4 NodeHostName=ok4\n   OS=Linux 6.1 State=IDLE Partitions=x\n"  # no state
        "NodeName=ok5\n   OS=Linux State=DOWN\n   State=IDLE\n   Partitions=p\n"
    )
    nodes, _ = parse_nodes(out)
    assert [(n.name, n.hostname, n.state) for n in nodes] == [
        ("ok", "ok", "allocated"),
        ("ok3", "ok3", "mixed"),  # the escape is no hostname: the node's name stands in
        ("ok5", "ok5", "idle"),  # the kernel string's State=DOWN is not a line's first word
    ]
    assert nodes[2].partitions == ("p",)
    assert all(len(n.name) <= MAX_NAME and n.name.isprintable() for n in nodes)
    many = "".join(f"NodeName=n{i}\n   State=IDLE\n" for i in range(MAX_NODES + 5))
    nodes, cut = parse_nodes(many)
    assert cut and len(nodes) == MAX_NODES


FORGED_OS = "Linux 6.1 #1 SMP State=DOWN+DRAIN\n   State=DOWN+DRAIN Partitions=evil"


@pytest.mark.integration
async def test_a_kernel_string_cannot_forge_the_state(cluster: SlurmCluster) -> None:
    """Slurm's own answers for the real node, with its kernel string (``OS=``, printed
    before ``State=``, the node's to choose) made to say DOWN+DRAIN: the node still reads
    idle, in the JSON the client reads and in the text fallback."""
    c = cluster
    (node,) = await client(c).nodes()  # sinfo --json
    assert (node.state, node.partitions) == ("idle", (c.partition,))
    assert node.cpus == c.cpus and node.cpu_load is not None
    raw = json.loads(c.run("sinfo", "--json").stdout)
    (real,) = raw["nodes"]
    assert real["operating_system"].startswith("Linux")  # the field a kernel string fills
    real["operating_system"] = FORGED_OS
    (node,) = parse_nodes_json(json.dumps(raw))[0]
    assert (node.name, node.state) == (c.node, "idle") and "drain" not in node.flags
    text = c.run("scontrol", "show", "node", c.node).stdout
    lines = text.splitlines()
    os_at = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("OS="))
    state_at = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("State="))
    assert os_at < state_at  # the order that made the one-line form forgeable
    lines[os_at] = "   OS=" + FORGED_OS.replace("\n", " ")
    (node,) = parse_nodes("\n".join(lines))[0]
    assert (node.name, node.state, node.partitions) == (c.node, "idle", (c.partition,))
    # The old one-line form with the same kernel string would read the forged state.
    one = c.run("scontrol", "-o", "show", "node", c.node).stdout
    assert one.index(" OS=") < one.index(" State=")


def test_json_hostile_and_bounded() -> None:
    good = {"name": "n1", "hostname": "n1.x", "state": "mixed", "state_flags": ["DRAIN"],
            "cpus": 8, "cpu_load": 650, "partitions": ["debug", "\x1b[2J"]}  # fmt: skip
    bad = [
        {"name": "\x1b]0;pwn\x07", "state": "idle"},
        {"name": "n2", "state": "idle\x1b[31m"},
        {"name": "n3", "state": "idle", "state_flags": "DRAIN"},
        {"name": ["n4"], "state": "idle"},
        "not a node",
    ]
    (node,) = parse_nodes_json(json.dumps({"nodes": [*bad, good]}))[0]
    assert (node.name, node.hostname, node.state, node.flags) == (
        "n1",
        "n1.x",
        "draining",
        ("drain",),
    )
    assert (node.cpus, node.cpu_load, node.partitions) == (8, 6.5, ("debug",))
    with pytest.raises(ValueError):
        parse_nodes_json('{"meta": {}}')
    with pytest.raises(ValueError):
        parse_nodes_json("sinfo: error: no JSON")
    many = {"nodes": [{"name": f"n{i}", "state": "idle"} for i in range(MAX_NODES + 3)]}
    nodes, cut = parse_nodes_json(json.dumps(many))
    assert cut and len(nodes) == MAX_NODES


def test_json_of_later_releases() -> None:
    """Slurm 23.02 on gives a node's state as one list of words; an answer whose nodes
    none can be read is a layout of another release (the client then reads scontrol's
    text), not an empty cluster."""
    (node,) = parse_nodes_json(json.dumps({"nodes": [{"name": "n1", "state": ["IDLE", "DRAIN"]}]}))[
        0
    ]
    assert (node.state, node.flags) == ("drained", ("drain",))
    with pytest.raises(ValueError):
        parse_nodes_json(json.dumps({"nodes": [{"node_name": "n1", "state": {"base": "IDLE"}}]}))


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
