# ruff: noqa: F811 - cluster is a fixture imported from tests/slurm_cluster.py, then requested
"""A Slurm command that gives no answer in time is audited as unknown, not refused, and
the operator is told it may have acted (:mod:`llmaos_tui.slurm.audited`).

Against the real one-node cluster (:mod:`tests.slurm_cluster`): a runner whose
``scontrol hold`` really runs and then loses its answer (as a slow SSH link does), and a
real ``LocalRunner`` whose ``scontrol`` never answers (stand-in scripts for ``scontrol`` and
``sinfo`` first on PATH that sleep past the client's timeout; ``squeue`` is the real one)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.slurm import LocalRunner, Result, SlurmClient, SlurmTimedOut
from llmaos_tui.slurm.audited import slurm_change
from llmaos_tui.slurm.runner import MAX_OUTPUT, LinkLost
from tests.slurm_cluster import (  # noqa: F401 - _no_jobs_left, cluster: fixtures
    SlurmCluster,
    _no_jobs_left,
    cluster,
    slurm_available,
    wait,
)


class AnswerLost(LocalRunner):
    """Runs every command for real; a ``scontrol hold``'s answer is then lost."""

    async def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, max_bytes: int = MAX_OUTPUT
    ) -> Result:
        r = await super().run(argv, timeout=timeout, max_bytes=max_bytes)
        if list(argv[:2]) == ["scontrol", "hold"]:
            return Result(None, "", f"{argv[0]}: no answer within {timeout:.0f} s")
        return r


class LinkCut(LocalRunner):
    """Runs every command for real; the link then goes before a ``scontrol release``'s
    answer comes (as an SSH runner's connection lost mid-command), and any read after it
    fails too."""

    cut = False

    async def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, max_bytes: int = MAX_OUTPUT
    ) -> Result:
        if self.cut:
            raise LinkLost("login1: SSH connection lost: connection reset")
        r = await super().run(argv, timeout=timeout, max_bytes=max_bytes)
        if list(argv[:2]) == ["scontrol", "release"]:
            self.cut = True
            raise LinkLost("login1: SSH connection lost: connection reset")
        if list(argv[:2]) == ["scontrol", "hold"]:
            self.cut = True  # the hold was answered; the read back is cut
        return r


def queued_job(c: SlurmCluster) -> str:
    # A dependency on a job that does not finish keeps it pending; the blocker is held.
    first = c.run("sbatch", "--parsable", "--hold", "--wrap=sleep 600", check=True)
    blocker = first.stdout.strip()
    r = c.run("sbatch", "--parsable", f"--dependency=afterok:{blocker}", "--wrap=true", check=True)
    return r.stdout.strip()


def reason_of(c: SlurmCluster, job: str) -> str:
    return c.run("squeue", "-h", "-j", job, "-o", "%r").stdout.strip()


@pytest.mark.integration
async def test_a_hold_whose_answer_is_lost_is_audited_unknown(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    c = cluster
    job = queued_job(c)
    audit = AuditLog(tmp_path / "audit.jsonl")
    client = SlurmClient("test", AnswerLost(env=c.env, cwd=str(c.root / "out")))
    with pytest.raises(SlurmTimedOut) as err:
        await slurm_change(
            client, "requests.hold", f"request slurm:test:{job}", lambda: client.hold(job),
            audit=audit, read_only=False, before="queued",
        )  # fmt: skip
    assert "may have acted" in str(err.value)
    (line,) = audit.read()
    assert line["action"] == "requests.hold" and line["timed_out"] is True
    assert line["result"].startswith("unknown: timed out")
    assert not line["result"].startswith("refused")
    # And it had acted: Slurm holds the job (what "may have acted" warns of).
    held = ("JobHeldUser", "JobHeldAdmin")  # root holds as an administrator
    wait(lambda: reason_of(c, job) in held, "the job held", show=lambda: reason_of(c, job))


@pytest.mark.integration
async def test_a_scontrol_that_never_answers(cluster: SlurmCluster, tmp_path: Path) -> None:
    c = cluster
    job = queued_job(c)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("scontrol", "sinfo"):
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\nexec sleep 60\n")
        stub.chmod(0o755)
    env = dict(c.env, PATH=f"{bin_dir}:{os.environ['PATH']}")  # squeue stays the real one
    client = SlurmClient("test", LocalRunner(env=env, cwd=str(c.root / "out")), timeout=1.0)
    audit = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(SlurmTimedOut) as err:
        await slurm_change(
            client, "requests.top", f"request slurm:test:{job}", lambda: client.top(job),
            audit=audit, read_only=False,
        )  # fmt: skip
    assert isinstance(err.value, TimeoutError) and err.value.acted is None
    assert "no answer within 1 s" in str(err.value) and "may have acted" in str(err.value)
    (line,) = audit.read()
    assert line["result"].startswith("unknown: timed out")
    # A read that times out says nothing of acting, and nothing is audited for it.
    slow_reads = SlurmClient("test", LocalRunner(env=env), timeout=1.0)
    with pytest.raises(SlurmTimedOut) as err:
        await slow_reads.nodes()
    assert "may have acted" not in str(err.value)
    assert len(audit.read()) == 1


@pytest.mark.integration
async def test_a_link_lost_mid_command_is_unknown_and_a_lost_read_back_is_ok(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The link going after a change command started may have left it made: ``unknown``,
    not ``failed``. Slurm answering the change and only the read back failing: ``ok``."""
    c = cluster
    job = queued_job(c)
    audit = AuditLog(tmp_path / "audit.jsonl")
    target = f"request slurm:test:{job}"
    hold = SlurmClient("test", LinkCut(env=c.env, cwd=str(c.root / "out")))
    with pytest.raises(SlurmTimedOut) as err:
        await slurm_change(hold, "requests.hold", target, lambda: hold.hold(job),
                           audit=audit, read_only=False, before="queued")  # fmt: skip
    assert "not read back" in str(err.value) and "may have acted" not in str(err.value)
    held = ("JobHeldUser", "JobHeldAdmin")
    wait(lambda: reason_of(c, job) in held, "the job held", show=lambda: reason_of(c, job))
    release = SlurmClient("test", LinkCut(env=c.env, cwd=str(c.root / "out")))
    with pytest.raises(SlurmTimedOut) as err:
        await slurm_change(release, "requests.release", target, lambda: release.release(job),
                           audit=audit, read_only=False, before="held")  # fmt: skip
    assert "may have acted" in str(err.value)
    first, second = audit.read()
    assert first["result"].startswith("ok: done, but job") and first["timed_out"] is True
    assert second["result"].startswith("unknown: ") and "connection lost" in second["result"]
    # It had acted: the job is no longer held.
    wait(lambda: reason_of(c, job) not in held, "the job released", show=lambda: reason_of(c, job))
