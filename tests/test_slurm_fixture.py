# ruff: noqa: F811 - other_user is a fixture imported from tests/users.py, then requested
"""The private Slurm cluster of :mod:`tests.slurm_cluster` does what the Slurm features'
tests will lean on: jobs run and write their output, squeue lists them with the fields
the requests screen shows, root can reprioritise, hold, release, top and cancel them,
Slurm refuses what it cannot run in its own words, the node's state follows its load, and
nothing is left behind when the cluster stops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import need
from tests.slurm_cluster import (  # noqa: F401 - _no_jobs_left: a fixture
    SlurmCluster,
    SlurmError,
    _no_jobs_left,
    slurm_available,
    wait,
)
from tests.users import User, other_user  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

# The fields the requests screen needs, as squeue 22.05 formats them (%b: GPUs as gres).
FIELDS = "%i|%u|%j|%T|%r|%Q|%C|%b|%D|%N|%V"
KEYS = [
    "id",
    "user",
    "name",
    "state",
    "reason",
    "priority",
    "cpus",
    "gres",
    "nodes",
    "nodelist",
    "submitted",
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    why = slurm_available()
    need(why is None, why or "")
    with SlurmCluster() as c:
        yield c


def submit(c: SlurmCluster, *args: str) -> str:
    """``sbatch --parsable`` with ``args``; the new job's id."""
    out = c.run("sbatch", "--parsable", f"--chdir={c.root / 'out'}", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def job(c: SlurmCluster, job_id: str) -> dict[str, str]:
    """The job's row of ``squeue -t all`` (finished jobs stay there MinJobAge seconds),
    or {} when squeue no longer knows it."""
    out = c.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", FIELDS)
    line = out.stdout.strip()
    return dict(zip(KEYS, line.split("|"), strict=True)) if line else {}


def in_state(c: SlurmCluster, job_id: str, state: str) -> Callable[[], bool]:
    return lambda: job(c, job_id).get("state") == state


def blocker(c: SlurmCluster, tmp_path: Path) -> tuple[str, Path]:
    """A running job holding every CPU until the returned file exists, so that jobs
    submitted after it stay pending."""
    flag = tmp_path / "go"
    job_id = submit(
        c, "-J", "blocker", f"-c{c.cpus}", "--wrap", f"while [ ! -e {flag} ]; do sleep 0.2; done"
    )
    wait(in_state(c, job_id, "RUNNING"), "the blocker to run")
    return job_id, flag


def test_a_job_runs_lists_and_writes_its_output(cluster: SlurmCluster, tmp_path: Path) -> None:
    c = cluster
    flag = tmp_path / "go"
    out = c.root / "out" / "hello.%j.out"
    job_id = submit(
        c,
        "-J",
        "hello",
        "-c1",
        "--gres=gpu:1",
        "--mem=100M",
        f"--output={out}",
        "--wrap",
        f'echo "hello from slurm on $CUDA_VISIBLE_DEVICES"; '
        f"while [ ! -e {flag} ]; do sleep 0.2; done",
    )
    wait(in_state(c, job_id, "RUNNING"), "the job to run")
    row = job(c, job_id)
    assert row["user"] == "root"
    assert row["name"] == "hello"
    assert row["cpus"] == "1"
    assert row["gres"] == "gres:gpu:1"
    assert row["nodes"] == "1"
    assert row["nodelist"] == c.node
    assert row["reason"] == "None"
    assert job_id in c.job_ids()
    busy = "mixed" if c.cpus > 1 else "allocated"  # one CPU of several, or of one
    wait(
        lambda: c.node_state() == busy,
        f"the node to be {busy}",
        show=lambda: c.run("scontrol", "show", "node").stdout,
    )

    flag.touch()
    wait(in_state(c, job_id, "COMPLETED"), "the job to complete")
    assert job_id not in c.job_ids()  # squeue's default states are the live ones
    text = Path(str(out).replace("%j", job_id)).read_text()
    assert text == "hello from slurm on 0\n"
    # Without slurmdbd there is no sacct; scontrol still shows the finished job.
    assert "accounting storage is disabled" in c.run("sacct").stderr
    shown = c.run("scontrol", "show", "job", job_id).stdout
    assert "JobState=COMPLETED" in shown
    assert f"StdOut={str(out).replace('%j', job_id)}" in shown


def test_root_reprioritises_holds_releases_tops_and_cancels(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    c = cluster
    blocker_id, flag = blocker(c, tmp_path)
    a, b, d = (submit(c, "-J", name, "-c1", "--wrap", "true") for name in ("a", "b", "d"))
    wait(lambda: job(c, d).get("reason") in ("Priority", "Resources"), "the jobs to queue")

    high = str(max(int(job(c, i)["priority"]) for i in (a, b, d)) + 500)
    assert c.run("scontrol", "update", f"JobId={a}", f"Priority={high}").returncode == 0
    assert job(c, a)["priority"] == high

    assert c.run("scontrol", "hold", b).returncode == 0
    held = job(c, b)
    assert (held["state"], held["reason"], held["priority"]) == ("PENDING", "JobHeldAdmin", "0")
    assert c.run("scontrol", "release", b).returncode == 0
    assert job(c, b)["reason"] != "JobHeldAdmin"
    assert int(job(c, b)["priority"]) > 0

    # top takes the highest priority among the user's pending jobs for itself.
    assert c.run("scontrol", "top", d).returncode == 0
    assert job(c, d)["priority"] == high
    assert int(job(c, a)["priority"]) < int(high)

    assert c.run("scancel", d).returncode == 0
    wait(in_state(c, d, "CANCELLED"), "the cancelled job to show as CANCELLED")

    flag.touch()
    for job_id in (blocker_id, a, b):
        wait(in_state(c, job_id, "COMPLETED"), f"job {job_id} to complete")


def test_slurm_refuses_what_it_cannot_run_in_its_own_words(cluster: SlurmCluster) -> None:
    c = cluster
    too_many = c.run("sbatch", f"-c{c.cpus + 1}", "--wrap", "true")
    assert too_many.returncode == 1
    assert "More processors requested than permitted" in too_many.stderr
    too_many_gpus = c.run("sbatch", f"--gres=gpu:{c.gpus + 1}", "--wrap", "true")
    assert too_many_gpus.returncode == 1
    assert "Requested node configuration is not available" in too_many_gpus.stderr
    no_such = c.run("scontrol", "update", "JobId=999999", "Priority=5")
    assert no_such.returncode != 0
    assert "Invalid job id specified" in no_such.stderr


def test_the_node_state_follows_drain_and_resume(cluster: SlurmCluster) -> None:
    c = cluster
    node = f"NodeName={c.node}"
    assert c.run("scontrol", "update", node, "State=DRAIN", "Reason=test").returncode == 0
    try:
        wait(lambda: c.node_state() == "drained", "the node to be drained")
    finally:
        c.run("scontrol", "update", node, "State=RESUME")
    wait(lambda: c.node_state() == "idle", "the node to be idle again")


def test_stopping_leaves_no_process_and_no_directory(tmp_path: Path) -> None:
    why = slurm_available()
    need(why is None, why or "")
    c = SlurmCluster(gpus=0).start()
    try:
        submit(c, "--wrap", "sleep 300")
        wait(lambda: any(job(c, i).get("state") == "RUNNING" for i in c.job_ids()), "a job")
        daemons = [p.pid for p in c._procs.values()]
        conf, root = str(c.conf), c.root
    finally:
        c.stop()
    assert not root.exists()
    for pid in daemons:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    left = []
    for p in psutil.process_iter():
        try:
            if p.status() != "zombie" and (
                p.environ().get("SLURM_CONF") == conf or any(str(root) in a for a in p.cmdline())
            ):
                left.append(p.cmdline())
        except psutil.Error:
            continue
    assert left == []


def test_a_user_may_nice_hold_and_release_but_not_reprioritise_or_top(
    cluster: SlurmCluster, other_user: User, tmp_path: Path
) -> None:
    c = cluster
    blocker_id, flag = blocker(c, tmp_path)

    def as_user(*argv: str) -> tuple[int, str]:
        out = other_user.run(list(argv), env=c.env, cwd=c.root / "out")
        return out.returncode, (out.stdout + out.stderr).decode().strip()

    rc, theirs = as_user("sbatch", "--parsable", "-J", "theirs", "--wrap", "true")
    assert rc == 0, theirs
    wait(lambda: job(c, theirs).get("reason") in ("Priority", "Resources"), "their job to queue")
    assert job(c, theirs)["user"] == other_user.name
    before = int(job(c, theirs)["priority"])

    # Refused with "Changes to job priority are not persistent, change nice instead for
    # job N" (a weight-based priority) or "Access/permission denied for job N".
    rc, err = as_user("scontrol", "update", f"JobId={theirs}", "Priority=900")
    assert (rc, err.endswith(f"for job {theirs}")) == (1, True), err
    assert int(job(c, theirs)["priority"]) == before
    assert as_user("scontrol", "update", f"JobId={theirs}", "Nice=-10")[0] == 1
    assert as_user("scontrol", "top", theirs) == (1, f"Access/permission denied for job {theirs}")
    assert as_user("scontrol", "update", f"JobId={theirs}", "Nice=100") == (0, "")
    assert int(job(c, theirs)["priority"]) == before - 100

    assert as_user("scontrol", "hold", theirs) == (0, "")
    assert job(c, theirs)["reason"] == "JobHeldUser"
    assert as_user("scontrol", "release", theirs) == (0, "")
    assert job(c, theirs)["reason"] != "JobHeldUser"
    rc, err = as_user("scancel", blocker_id)
    assert rc != 0
    assert "Access/permission denied" in err
    flag.touch()
    wait(in_state(c, theirs, "COMPLETED"), "the user's job to complete")


def test_a_cluster_that_cannot_start_says_why_and_leaves_nothing() -> None:
    why = slurm_available()
    need(why is None, why or "")
    c = SlurmCluster(priority="no_such_plugin", gpus=0)
    with pytest.raises(SlurmError, match="slurmctld exited") as failed:
        c.start()
    assert "priority/no_such_plugin" in str(failed.value)  # the log tail says which
    assert not c.root.exists()
    assert c._procs == {}
