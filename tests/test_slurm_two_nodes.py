# ruff: noqa: F811 - cluster2 is a fixture imported from tests/slurm_testbed.py, then requested
"""The console against a real two-node Slurm cluster on the SSH testbed
(:mod:`tests.slurm_testbed`: slurmctld here, slurmd ``a`` and ``b`` in two namespace hosts).

A job is sent to each node by name; both run, each in its own host (the job's output is
that host's hostname), and the console's :meth:`SlurmClient.nodes` reads both nodes as
Slurm's ``scontrol`` says they are. Then the hosts-level plan: a held job may go to
either node; node ``a`` is made hot on the console's node record (both hosts share this
machine's load average, so the test cannot make one hot and leave the other cool; said
here), :func:`build_plan` excludes ``a`` and :func:`apply_plan` sets ``ExcNodeList=a``,
read back with ``scontrol``; released, the job runs on ``b``, the cool node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.slurm import LocalRunner, SlurmClient, SlurmNode
from llmaos_tui.slurm.plan import ACTION, apply_plan, build_plan
from tests.conftest import need
from tests.slurm_cluster import wait
from tests.slurm_testbed import (  # noqa: F401 - cluster2: a fixture
    NODES,
    TwoNodeCluster,
    cluster2,
    two_node_cluster,
    two_nodes_available,
)

DEADLINE = 120.0  # seconds; CI runs this beside busy loops on two cores


def client(c: TwoNodeCluster) -> SlurmClient:
    return SlurmClient("two", LocalRunner(env=c.env, cwd=str(c.root / "out")))


def job_field(c: TwoNodeCluster, jid: str, key: str) -> str:
    """A field of ``scontrol -o show job`` (Slurm's own answer), or ``""``."""
    out = c.run("scontrol", "-o", "show", "job", jid).stdout
    m = re.search(rf" {key}=(\S*)", out)
    return m.group(1) if m else ""


def submit(c: TwoNodeCluster, *args: str) -> str:
    out = c.run("sbatch", "--parsable", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def running_on(c: TwoNodeCluster, jid: str, node: str) -> bool:
    return job_field(c, jid, "JobState") == "RUNNING" and job_field(c, jid, "NodeList") == node


async def both_mixed(c: TwoNodeCluster) -> list[SlurmNode]:
    """Wait until scontrol calls both nodes MIXED, then until the console reads them so."""
    wait(
        lambda: all(c.state_of(n) == "mixed" for n in NODES),
        "both nodes mixed",
        DEADLINE,
        lambda: show(c),
    )
    return await console_reads(c, dict.fromkeys(NODES, "mixed"))


async def console_reads(c: TwoNodeCluster, want: dict[str, str]) -> list[SlurmNode]:
    """Poll the console's :meth:`SlurmClient.nodes` until it reads ``want`` (node: state),
    as Slurm's ``scontrol`` said a moment before; fail with what it read last."""
    deadline = time.monotonic() + DEADLINE
    while True:
        nodes = await client(c).nodes()
        seen = {n.name: n.state for n in nodes}
        if seen == want:
            return nodes
        if time.monotonic() > deadline:
            pytest.fail(f"the console read {seen}, not {want}\n{show(c)}")
        await asyncio.sleep(0.5)  # poll interval


def has_output(path: Path) -> bool:
    return path.exists() and path.read_text().strip() != ""


def show(c: TwoNodeCluster) -> str:
    return c.run("squeue", "-o", "%i %T %N %R").stdout + c.log_tail(800)


@pytest.mark.integration
async def test_a_job_runs_on_each_node_and_the_console_reads_both(
    cluster2: TwoNodeCluster,
) -> None:
    c = cluster2
    nodes = await console_reads(c, {"a": "idle", "b": "idle"})
    assert sorted((n.name, n.hostname) for n in nodes) == [("a", "a"), ("b", "b")]
    out = c.root / "out"
    ids = {
        n: submit(
            c, f"--nodelist={n}", "-n1", f"--output={out}/host-%j.out", "--wrap=hostname; sleep 600"
        )
        for n in NODES
    }
    for n, jid in ids.items():
        wait(
            functools.partial(running_on, c, jid, n),
            f"job {jid} running on {n}",
            DEADLINE,
            lambda: show(c),
        )
        # It ran in that host: its hostname is the namespace host's, not this machine's.
        path = out / f"host-{jid}.out"
        wait(
            functools.partial(has_output, path),
            f"job {jid}'s output",
            DEADLINE,
        )
        assert path.read_text().strip() == n
    # One CPU of each node's two is taken: Slurm says MIXED, and the console reads it so.
    nodes = await both_mixed(c)
    assert all(n.partitions == (c.partition,) for n in nodes)
    jobs = {j.job_id: j for j in await client(c).jobs()}
    assert {jid: jobs[jid].state for jid in ids.values()} == dict.fromkeys(ids.values(), "running")
    c.run("scancel", *ids.values())
    wait(lambda: not c.job_ids(), "the queue to empty", DEADLINE, lambda: show(c))


@pytest.mark.integration
async def test_a_plan_moves_a_pending_job_off_the_hot_node(
    cluster2: TwoNodeCluster, tmp_path: Path
) -> None:
    c = cluster2
    # Whatever the test before left (its jobs are cancelled here, not by an autouse fixture).
    leftover = c.job_ids()
    if leftover:
        c.run("scancel", *leftover)
    wait(lambda: not c.job_ids(), "the queue to empty", DEADLINE, lambda: show(c))
    busy = {n: submit(c, f"--nodelist={n}", "-n1", "--wrap=sleep 600") for n in NODES}
    for n, jid in busy.items():
        wait(
            functools.partial(running_on, c, jid, n),
            f"job {jid} running on {n}",
            DEADLINE,
            lambda: show(c),
        )
    held = submit(c, "--hold", "-n1", "--wrap=sleep 600")
    cl = client(c)
    pending = await cl.pending()
    assert [j.job_id for j in pending] == [held]
    nodes = await both_mixed(c)
    # Node a made hot on its record (see the module's docstring), b as Slurm reports it
    # but cool: both report this machine's load.
    seen = [dataclasses.replace(n, cpu_load=n.cpus * 2.0 if n.name == "a" else 0.0) for n in nodes]
    plan = build_plan("two", pending, seen, hot_load=0.9)
    assert [(m.job_id, m.added, m.exclude) for m in plan.moves] == [(held, ("a",), ("a",))]
    assert job_field(c, held, "ExcNodeList") == "(null)"
    audit = AuditLog(tmp_path / "audit.jsonl")
    outcomes = await apply_plan(cl, plan, audit=audit, read_only=False)
    assert [(o.result, o.exclude) for o in outcomes] == [("ok", ("a",))]
    assert job_field(c, held, "ExcNodeList") == "a"  # Slurm's own answer
    assert [(x["action"], x["result"], x["after"]) for x in audit.read()] == [
        (ACTION, "ok", "ExcNodeList=a")
    ]
    # Released, it starts on the cool node, beside the job already there.
    rel = c.run("scontrol", "release", held)
    assert rel.returncode == 0, rel.stderr
    wait(lambda: running_on(c, held, "b"), f"job {held} running on b", DEADLINE, lambda: show(c))
    wait(lambda: c.state_of("b") == "allocated", "node b allocated", DEADLINE, lambda: show(c))
    await console_reads(c, {"a": "mixed", "b": "allocated"})
    c.run("scancel", *busy.values(), held)
    wait(lambda: not c.job_ids(), "the queue to empty", DEADLINE, lambda: show(c))


@pytest.mark.integration
def test_teardown_leaves_no_daemon_and_no_namespace() -> None:
    why = two_nodes_available()
    need(why is None, why or "")
    with two_node_cluster() as c:
        conf, root, prefix = str(c.conf), c.root, c.tb.prefix
        jid = submit(c, "--nodelist=a", "-n1", "--wrap=sleep 600")
        wait(lambda: running_on(c, jid, "a"), f"job {jid} running on a", DEADLINE, lambda: show(c))
    left = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("SLURM_CONF") == conf or any(str(root) in a for a in p.cmdline()):
                left.append(p.pid)
        except psutil.Error:
            continue
    assert left == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert prefix not in netns.stdout
    assert not root.exists()
