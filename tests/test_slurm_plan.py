# ruff: noqa: F811 - cluster is a fixture imported from tests/slurm_cluster.py, then requested
"""The Slurm balancing plan (:mod:`llmaos_tui.slurm.plan`): pending jobs move off hot
nodes through their ``ExcNodeList``.

The plan is built from synthetic nodes and jobs (no cluster); it is applied against the
real one-node cluster (:mod:`tests.slurm_cluster`): a held job and a dependency-blocked
job get ``ExcNodeList`` set, read back with ``scontrol``; in read-only mode nothing
changes and the refusal is audited. One node cannot be hot with another left cool, so
the applied plan is built from Slurm's real pending jobs and its real node with a load
set on it, plus a synthetic cool node in the same partition (said in the test)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.changes import ReadOnlyConsole
from llmaos_tui.slurm import LocalRunner, SlurmClient, SlurmNode
from llmaos_tui.slurm.pending import PendingJob, expand_hostlist, parse_pending, pending_format
from llmaos_tui.slurm.plan import ACTION, SlurmPlan, apply_plan, build_plan, hot_nodes
from tests.slurm_cluster import (  # noqa: F401 - _no_jobs_left, cluster: fixtures
    SlurmCluster,
    _no_jobs_left,
    cluster,
    slurm_available,
    wait,
)


def node(name: str, load: float | None, state: str = "mixed", parts: str = "p") -> SlurmNode:
    return SlurmNode(name, name, state, cpus=4, cpu_load=load, partitions=tuple(parts.split(",")))


def job(jid: str, parts: str = "p", req: str = "", exc: str = "") -> PendingJob:
    return PendingJob(jid, "u", tuple(parts.split(",")), expand_hostlist(req), expand_hostlist(exc))


# ---------------------------------------------------------------------- pure


def test_hot_is_load_per_cpu_of_up_nodes() -> None:
    nodes = [node("a", 3.9), node("b", 3.5), node("c", 4.0, state="drained"), node("d", None),
             node("e", 8.0, state="allocated")]  # fmt: skip
    assert [n.name for n in hot_nodes(nodes, 0.9)] == ["e", "a"]  # hottest first


def test_pending_jobs_exclude_the_hot_nodes_they_could_get() -> None:
    nodes = [node("hot1", 4.0), node("hot2", 3.8), node("cool", 0.4), node("other", 4.0, parts="q")]
    jobs = [
        job("1"),  # may get hot1 and hot2
        job("2", exc="hot1,old"),  # already avoids hot1: hot2 added, its own kept
        job("3", parts="q"),  # partition q: only 'other', hot, nothing cool: left
        job("4", req="hot2"),  # asks for hot2 by name: left
        job("5", exc="hot[1-2]"),  # avoids both already: nothing to do
        PendingJob("6", "u", ("p",), frozenset(), None),  # a list that did not parse: left
    ]
    plan = build_plan("c1", jobs, nodes, hot_load=0.9)
    assert [(m.job_id, m.added, m.exclude) for m in plan.moves] == [
        ("1", ("hot1", "hot2"), ("hot1", "hot2")),
        ("2", ("hot2",), ("hot1", "hot2", "old")),
    ]
    assert [(x.job_id, x.why) for x in plan.left] == [
        ("3", "no up node that is not hot would be left to it"),
        ("4", "asks for hot node hot2 by name"),
        ("6", "Slurm's node lists of the job did not parse"),
    ]
    assert [n for n, _ in plan.hot] == ["hot1", "other", "hot2"]
    assert plan.to_dict()["moves"][0]["job"] == "slurm:c1:1"
    # A cool node that is down leaves nothing to go to.
    down = [node("hot1", 4.0), node("cool", 0.1, state="down")]
    assert not build_plan("c1", [job("1")], down).moves
    cut = build_plan("c1", [job(str(i)) for i in range(10)], nodes, max_moves=3)
    assert len(cut.moves) == 3 and len(cut.left) == 7  # the rest said, not dropped
    assert all("past the plan's 3 moves" in x.why for x in cut.left)
    # A job of 2 nodes with one cool node left would never start once excluded.
    wide = dataclasses.replace(job("w"), nodes=2)
    (w,) = build_plan("c1", [wide], nodes).left
    assert "the 2 up nodes it needs" in w.why
    with pytest.raises(ValueError):
        build_plan("c1", jobs, nodes, hot_load=0)


def test_hostlists_and_squeue_rows() -> None:
    assert expand_hostlist("gpu[01-03,07],login1") == frozenset(
        {"gpu01", "gpu02", "gpu03", "gpu07", "login1"}
    )
    assert expand_hostlist("(null)") == frozenset()
    for bad in ("a[1-", "x[1-99999]", "a\x1b[2J", "a,,b", "n[3-1]"):
        assert expand_hostlist(bad) is None, bad
    mark, fmt = pending_format()
    assert fmt.startswith(mark + "|")
    text = (
        f"{mark}|7|alice|PENDING|p,q|(null)|hot1|3\n"
        "@0000000000000000@|8|eve|PENDING|p|(null)|(null)|1\n"  # no marker of this call
        f"{mark}|9|bob|RUNNING|p|(null)|(null)|1\n"  # not pending
        f"{mark}|x; rm|bob|PENDING|p|(null)|(null)|1\n"  # no job id
        f"{mark}|10|bob|PENDING|p|(null)|(null)\n"  # a field short
    )
    (only,) = parse_pending(text, mark)
    assert (only.job_id, only.partitions, only.excluded) == ("7", ("p", "q"), frozenset({"hot1"}))
    assert only.nodes == 3


# ---------------------------------------------------------------------- the real cluster


def exc_node_list(c: SlurmCluster, jid: str) -> str:
    out = c.run("scontrol", "-o", "show", "job", jid).stdout
    m = re.search(r" ExcNodeList=(\S*) ", out)
    return m.group(1) if m else f"(not found in {out[:300]!r})"


async def real_plan(c: SlurmCluster, client: SlurmClient) -> tuple[SlurmPlan, list[str]]:
    held = c.run("sbatch", "--parsable", "--hold", "--wrap=sleep 600", check=True).stdout.strip()
    dep = c.run("sbatch", "--parsable", f"--dependency=afterok:{held}", "--wrap=true",
                check=True).stdout.strip()  # fmt: skip
    jobs = await client.pending()
    assert {j.job_id for j in jobs} >= {held, dep}
    (real,) = await client.nodes()
    # The real node made hot (its load set: a test cannot make this machine's load), and
    # a cool node beside it in the partition, so that a job has somewhere left to go.
    hot = dataclasses.replace(real, cpu_load=real.cpus * 2.0)
    spare = SlurmNode("spare", "spare", "idle", cpus=2, cpu_load=0.0, partitions=real.partitions)
    plan = build_plan("test", jobs, [hot, spare], hot_load=0.9)
    assert {m.job_id for m in plan.moves} == {held, dep}
    assert all(m.exclude == (c.node,) for m in plan.moves)
    return plan, [held, dep]


@pytest.mark.integration
async def test_a_plan_sets_exc_node_list_on_pending_jobs(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    c = cluster
    client = SlurmClient("test", LocalRunner(env=c.env, cwd=str(c.root / "out")))
    plan, ids = await real_plan(c, client)
    assert all(exc_node_list(c, j) == "(null)" for j in ids)
    audit = AuditLog(tmp_path / "audit.jsonl")
    outcomes = await apply_plan(client, plan, audit=audit, read_only=False)
    assert [o.result for o in outcomes] == ["ok", "ok"]
    assert all(o.exclude == (c.node,) for o in outcomes)
    for j in ids:
        assert exc_node_list(c, j) == c.node  # Slurm's own answer
    lines = audit.read()
    assert [(x["action"], x["result"], x["after"]) for x in lines] == [
        (ACTION, "ok", f"ExcNodeList={c.node}")
    ] * 2
    assert {x["target"] for x in lines} == {f"request slurm:test:{j}" for j in ids}


@pytest.mark.integration
async def test_a_plan_is_refused_read_only_and_a_refusal_is_slurms(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    c = cluster
    client = SlurmClient("test", LocalRunner(env=c.env, cwd=str(c.root / "out")))
    plan, ids = await real_plan(c, client)
    audit = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(ReadOnlyConsole):
        await apply_plan(client, plan, audit=audit, read_only=True)
    assert [x["result"] for x in audit.read()] == ["refused: read-only console"] * 2
    assert all(exc_node_list(c, j) == "(null)" for j in ids)  # nothing changed
    # A node Slurm does not know: its refusal, in its words, audited as refused.
    bad = dataclasses.replace(
        plan,
        moves=tuple(dataclasses.replace(m, exclude=("no-such-node",)) for m in plan.moves),
    )
    outcomes = await apply_plan(client, bad, audit=audit, read_only=False)
    assert all(o.result.startswith("refused: ") for o in outcomes), outcomes
    assert all(exc_node_list(c, j) == "(null)" for j in ids)


@pytest.mark.integration
def test_the_cli_plans_a_cluster(cluster: SlurmCluster, tmp_path: Path) -> None:
    """``llmaos-tui plan --slurm test`` as an operator runs it: the held job is listed
    when the node counts as hot, but a one-node cluster leaves it nowhere to go, so it is
    left (and the plan says why); an unknown cluster is a usage error."""
    c = cluster
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[slurm.test]\nhost = "local"\n')
    held = c.run("sbatch", "--parsable", "--hold", "--wrap=sleep 600", check=True).stdout.strip()
    tui = str(Path(sys.executable).with_name("llmaos-tui"))
    env = {**c.env, "XDG_STATE_HOME": str(tmp_path / "state")}

    def plan(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [tui, "plan", *args, "--hosts-file", str(hosts)]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                              check=False, cwd=c.root / "out")  # fmt: skip

    cool = plan("--slurm", "test", "--hot", "1000", "--json")
    assert cool.returncode == 0, cool.stderr
    doc = json.loads(cool.stdout)
    assert (doc["cluster"], doc["hot"], doc["moves"]) == ("test", [], [])
    # Every node hot (any load at all, a busy machine's or none: 1e-9 per CPU).
    hot = plan("--slurm", "test", "--hot", "1e-9", "--apply")
    if "hot nodes (CPULoad per CPU >= 1e-09): none" not in hot.stdout:  # a load of 0.00
        assert f"slurm:test:{held} left: no up node that is not hot" in hot.stdout, hot.stdout
    assert hot.returncode == 0, hot.stderr
    assert exc_node_list(c, held) == "(null)"
    bad = plan("--slurm", "nope")
    assert bad.returncode == 2 and "no Slurm cluster 'nope'" in bad.stderr
