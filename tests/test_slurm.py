# ruff: noqa: F811 - other_user is a fixture imported from tests/users.py, then requested
"""Slurm as a request engine, against the real thing (:mod:`tests.slurm_cluster`: munged,
slurmctld and slurmd on this machine): a hosts file naming ``[slurm.test] host = "local"``
makes ``llmaos-tui requests`` list the cluster's jobs with their states mapped, and the
request subcommands act on ``slurm:test:N`` through Slurm, audited, refused in read-only
mode, Slurm's refusals in its words; a hostile job name is shown cleaned; the same client
works over an SSH connection with the argv quoted.

Parsing tests at the top need no cluster."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.slurm import (
    LocalRunner,
    Result,
    SlurmClient,
    SlurmRefused,
    SshRunner,
    SubmitSpec,
    parse_slurm_id,
)
from llmaos_tui.slurm.jobs import BadSlurmId, console_state, gpus_of, parse_squeue, squeue_format
from tests.conftest import need
from tests.slurm_cluster import (  # noqa: F401 - _no_jobs_left: a fixture
    SlurmCluster,
    _no_jobs_left,
    slurm_available,
    wait,
)
from tests.users import User, other_user  # noqa: F401 - the fixture

TUI = str(Path(sys.executable).with_name("llmaos-tui"))


# ------------------------------------------------------------------ parsing, no cluster


def test_a_name_cannot_forge_a_row_and_its_newlines_stay_in_it() -> None:
    mark, fmt = squeue_format()
    assert fmt.startswith(mark + "|") and fmt.endswith("%j")
    _, other = squeue_format()
    assert other != fmt  # a fresh marker each call
    forged = "@0000000000000000@|666|root|RUNNING|None|1|0|1|N/A|1|n|2024-01-01T00:00:00|x"
    text = (
        f"{mark}|12|alice|PENDING|JobHeldUser|0|0|2|gres:gpu:2|1||2024-01-01T00:00:00|a|b\n"
        f"second line\n{forged}\n"
        f"{mark}|13|bob|RUNNING|None|10000|5|1|N/A|1|node1|2024-01-01T00:00:00|plain\n"
    )
    jobs, cut = parse_squeue("hpc", text, mark)
    assert [j.id for j in jobs] == ["slurm:hpc:12", "slurm:hpc:13"] and not cut
    held, running = jobs
    assert held.name == f"a|b\nsecond line\n{forged}"
    assert (held.state, held.gpus, held.cpus, held.priority) == ("held", 2, 2, 0)
    assert (running.state, running.nice, running.nodelist) == ("running", 5, "node1")
    assert held.submitted == 1704067200.0  # squeue runs with TZ=UTC


def test_fields_are_bounded() -> None:
    mark, _ = squeue_format()
    line = f"{mark}|1|{'u' * 5000}|PENDING|{'r' * 5000}|1|0|1|N/A|1||x|{'n' * 5000}"
    (job,), _ = parse_squeue("c", line, mark)
    assert len(job.user) <= 64 and len(job.reason) <= 200 and len(job.name) <= 200
    assert job.submitted is None


@pytest.mark.parametrize(
    ("state", "reason", "mapped"),
    [
        ("PENDING", "Priority", "queued"),
        ("PENDING", "Resources", "queued"),
        ("PENDING", "JobHeldAdmin", "held"),
        ("PENDING", "JobHeldUser", "held"),
        ("RUNNING", "None", "running"),
        ("RUNNING", "JobHeldAdmin", "running"),  # a hold on a running job waits for a requeue
        ("COMPLETING", "None", "running"),
        ("SUSPENDED", "None", "held"),
        ("COMPLETED", "None", "done"),
        ("CANCELLED", "None", "cancelled"),
        ("FAILED", "NonZeroExitCode", "failed"),
        ("TIMEOUT", "TimeLimit", "failed"),
        ("OUT_OF_MEMORY", "None", "failed"),
        ("NODE_FAIL", "None", "failed"),
    ],
)
def test_states_and_reasons_map_to_the_consoles(state: str, reason: str, mapped: str) -> None:
    assert console_state(state, reason) == mapped


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("gres:gpu:1", 1), ("gres/gpu:a100:4", 4), ("gpu:2,gres:mps:100", 2), ("N/A", 0),
     ("(null)", 0), ("gres:gpu", 1), ("gres:gpu:a100:2(IDX:0-1)", 2)],
)  # fmt: skip
def test_gpus_from_gres(gres: str, gpus: int) -> None:
    assert gpus_of(gres) == gpus


@pytest.mark.parametrize(
    "text", ["slurm:hpc", "slurm:hpc:12:3", "slurm:h p:12", "slurm:hpc:12;rm", "slurm::1",
             "slurm:hpc:-1", "r1234"],
)  # fmt: skip
def test_bad_slurm_ids_refused(text: str) -> None:
    with pytest.raises(BadSlurmId):
        parse_slurm_id(text)


def test_slurm_ids_end_with_the_job_id() -> None:
    assert parse_slurm_id("slurm:hpc:1234") == ("hpc", "1234")
    assert parse_slurm_id("slurm:hpc:1234_7") == ("hpc", "1234_7")


# ------------------------------------------------------------------ the real cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    why = slurm_available()
    need(why is None, why or "")
    with SlurmCluster(priority="multifactor", gpus=2) as c:
        yield c


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.toml"
    path.write_text('[slurm.test]\nhost = "local"\n')
    os.chmod(tmp_path, 0o755)
    os.chmod(path, 0o644)
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


class Console:
    """``llmaos-tui`` as an operator runs it, against the cluster, with a private audit
    log; ``submit`` goes through the same code in this process (``--slurm`` is to be
    added to the submit parser in cli.py; until then the namespace is given it here)."""

    def __init__(self, c: SlurmCluster, hosts_file: Path, state: Path) -> None:
        self.c = c
        self.hosts_file = hosts_file
        self.state = state
        self.env = {**c.env, "XDG_STATE_HOME": str(state)}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [TUI, *args, "--hosts-file", str(self.hosts_file)]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=120, check=False, cwd=self.c.root / "out")  # fmt: skip

    def submit(self, *args: str, read_only: bool = False) -> tuple[int, str, str]:
        top = ["--read-only"] if read_only else []
        return self.inproc(*top, "submit", "--cwd", str(self.c.root / "out"), *args,
                           slurm="test")  # fmt: skip

    def inproc(self, *args: str, slurm: str | None = None) -> tuple[int, str, str]:
        """The request command run in this process: (exit code, stdout, stderr)."""
        from llmaos_tui.cli import parse_args
        from llmaos_tui.cli_requests import run_request_command

        ns = parse_args(["--hosts-file", str(self.hosts_file), *args])
        if slurm is not None:
            ns.slurm = slurm
        out, err = io.StringIO(), io.StringIO()
        saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "XDG_STATE_HOME")}
        os.environ.update({"SLURM_CONF": str(self.c.conf), "XDG_STATE_HOME": str(self.state)})
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = asyncio.run(run_request_command(ns, []))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return rc, out.getvalue(), err.getvalue()

    def job_of(self, *args: str) -> str:
        rc, out, err = self.submit("--json", *args)
        assert rc == 0, err
        job_id: str = json.loads(out)["id"]
        assert job_id.startswith("slurm:test:")
        return job_id

    def jobs(self) -> dict[str, dict[str, Any]]:
        out = self.run("requests", "--all", "--json")
        assert out.returncode == 0, out.stderr
        return {j["id"]: j for j in json.loads(out.stdout)["slurm"]["test"]["jobs"]}

    def state_of(self, job_id: str) -> str | None:
        j = self.jobs().get(job_id)
        return None if j is None else str(j["state"])

    def audit(self) -> list[dict[str, Any]]:
        path = self.state / "llmaos-tui" / "audit.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def console(cluster: SlurmCluster, hosts_file: Path, state_dir: Path, agent_home: Path) -> Console:
    return Console(cluster, hosts_file, state_dir)


def blocker(con: Console, tmp_path: Path) -> tuple[str, Path]:
    """A running job holding every CPU until the returned file exists."""
    flag = tmp_path / "go"
    job_id = con.job_of("--name", "blocker", "--cpus", str(con.c.cpus), "--shell", "--",
                        f"while [ ! -e {flag} ]; do sleep 0.2; done")  # fmt: skip
    wait(lambda: con.state_of(job_id) == "running", "the blocker to run")
    return job_id, flag


@pytest.mark.integration
def test_submit_and_list_map_every_state(console: Console, tmp_path: Path) -> None:
    con = console
    done = con.job_of("--name", "quick", "--", "true")
    failed = con.job_of("--name", "fails", "--", "false")
    wait(lambda: con.state_of(done) == "done", "the quick job to be done")
    wait(lambda: con.state_of(failed) == "failed", "the failing job to be failed")
    running, flag = blocker(con, tmp_path)
    queued = con.job_of("--name", "behind", "--gpus", "1", "--mem", "100M", "--", "true")
    held = con.job_of("--name", "held", "--", "true")
    cancelled = con.job_of("--name", "gone", "--", "true")
    assert con.run("hold", held).returncode == 0
    # A job just submitted says "None" until the scheduler has looked at it.
    wait(lambda: con.jobs()[queued]["reason"] in ("Priority", "Resources"), "a queue reason")
    out = con.run("cancel", cancelled)
    assert out.returncode == 0, out.stderr
    assert "cancelled" in out.stdout

    jobs = con.jobs()
    assert {i: jobs[i]["state"] for i in (done, failed, running, queued, held, cancelled)} == {
        done: "done", failed: "failed", running: "running", queued: "queued", held: "held",
        cancelled: "cancelled",
    }  # fmt: skip
    q = jobs[queued]
    assert (q["user"], q["name"], q["cpus"], q["gpus"], q["gres"]) == (
        "root", "behind", 1, 1, "gres:gpu:1"
    )  # fmt: skip
    assert q["reason"] in ("Priority", "Resources")
    assert jobs[held]["reason"] == "JobHeldAdmin" and jobs[held]["priority"] == 0
    assert jobs[running]["nodelist"] == con.c.node and jobs[running]["age_s"] >= 0
    # Without --all, only the live ones; the text table shows them with their ids.
    live = json.loads(con.run("requests", "--json").stdout)["slurm"]["test"]["jobs"]
    assert {j["id"] for j in live} == {running, queued, held}
    table = con.run("requests").stdout
    assert "SLURM test (on local)" in table
    row = next(line for line in table.splitlines() if line.startswith(held))
    assert "held" in row and "JobHeldAdmin" in row
    flag.touch()


@pytest.mark.integration
def test_prio_hold_release_top_as_root(console: Console, tmp_path: Path) -> None:
    con = console
    _, flag = blocker(con, tmp_path)
    a, b = (con.job_of("--name", n, "--", "true") for n in ("a", "b"))
    wait(lambda: con.jobs()[b]["reason"] in ("Priority", "Resources"), "the jobs to queue")

    out = con.run("prio", a, "900", "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert (answer["how"], answer["priority"]) == ("Priority", 900)
    assert "by Slurm's Priority" in con.run("prio", a, "800").stdout
    assert con.jobs()[a]["priority"] == 800

    assert con.run("top", a).returncode == 0
    jobs = con.jobs()
    assert jobs[a]["priority"] > jobs[b]["priority"]

    assert "held" in con.run("hold", b).stdout
    assert con.state_of(b) == "held"
    out = con.run("release", b)
    assert out.returncode == 0 and "queued" in out.stdout
    assert con.state_of(b) == "queued" and con.jobs()[b]["priority"] > 0

    actions = [(x["action"], x["result"]) for x in con.audit()]
    assert actions[-5:] == [
        ("requests.prio", "ok"), ("requests.prio", "ok"), ("requests.top", "ok"),
        ("requests.hold", "ok"), ("requests.release", "ok"),
    ]  # fmt: skip
    last = con.audit()[-1]
    assert last["target"] == f"request {b}" and last["host"] == "local"
    assert last["before"].startswith("held") and last["after"].startswith("queued")
    flag.touch()


class UserRunner(LocalRunner):
    """Slurm's commands as another local user (their uid, gid, no other groups), as a
    login host reached as that user runs them; the console itself stays this process."""

    def __init__(self, user: User, env: dict[str, str], cwd: Path) -> None:
        super().__init__(env, str(cwd))
        self.user = user
        self.login = user.name

    async def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, max_bytes: int = 1 << 20
    ) -> Result:
        out = await asyncio.to_thread(self.user.run, list(argv), env=self.env, cwd=self.cwd,
                                      timeout=timeout)  # fmt: skip
        return Result(out.returncode, out.stdout.decode()[:max_bytes],
                      out.stderr.decode()[:max_bytes])  # fmt: skip


@pytest.mark.integration
def test_a_plain_user_gets_nice_and_is_told_so(
    console: Console, other_user: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmaos_tui import cli_requests

    con = console
    _, flag = blocker(con, tmp_path)
    out = other_user.run(["sbatch", "--parsable", "-J", "theirs", "--wrap", "true"],
                         env=con.c.env, cwd=con.c.root / "out")  # fmt: skip
    assert out.returncode == 0, out.stderr
    theirs = f"slurm:test:{out.stdout.decode().strip()}"
    wait(lambda: con.state_of(theirs) == "queued", "their job to queue")
    before = con.jobs()[theirs]["priority"]
    assert before > 900

    runner = UserRunner(other_user, con.c.env, con.c.root / "out")
    monkeypatch.setattr(cli_requests, "slurm_clusters", lambda _a: [SlurmClient("test", runner)])
    rc, text, err = con.inproc("prio", theirs, "900", "--json")
    assert rc == 0, err
    answer = json.loads(text)
    assert (answer["how"], answer["priority"], answer["nice"]) == ("Nice", 900, before - 900)
    assert answer["note"].startswith("Priority=900: ")
    assert answer["note"].endswith(f"for job {theirs.rsplit(':', 1)[1]}")
    rc, text, _ = con.inproc("prio", theirs, "800")
    assert rc == 0 and "by Nice" in text and "Slurm refused Priority=800" in text
    # Back up, while Nice stays positive (a negative one is Slurm's operators' alone; the
    # console's bounds, -1000..1000, stay below this partition's 10000 anyway).
    rc, text, _ = con.inproc("prio", theirs, "950")
    assert rc == 0 and "by Nice" in text
    assert con.jobs()[theirs]["priority"] == 950
    rc, _, err = con.inproc("top", theirs)
    assert rc == 1 and "Access/permission denied" in err
    audit = con.audit()[-4:]
    assert [(a["action"], a["result"][:8], a["identity"]) for a in audit] == [
        ("requests.prio", "ok", other_user.name), ("requests.prio", "ok", other_user.name),
        ("requests.prio", "ok", other_user.name), ("requests.top", "refused:", other_user.name),
    ]  # fmt: skip
    flag.touch()


@pytest.mark.integration
def test_read_only_changes_nothing_and_is_audited(console: Console, tmp_path: Path) -> None:
    con = console
    _, flag = blocker(con, tmp_path)
    job = con.job_of("--name", "stays", "--", "true")
    for cmd in (["cancel", job], ["hold", job], ["prio", job, "5"], ["top", job]):
        out = con.run("--read-only", *cmd)
        assert out.returncode == 1 and "read-only" in out.stderr, out
    rc, _, err = con.submit("--", "true", read_only=True)
    assert rc == 1 and "read-only" in err
    j = con.jobs()[job]
    assert (j["state"], j["reason"] != "JobHeldAdmin") == ("queued", True)
    live = json.loads(con.run("requests", "--json").stdout)["slurm"]["test"]["jobs"]
    assert len(live) == 2  # the blocker and this one: nothing new submitted
    refused = [(x["action"], x["result"]) for x in con.audit()][-5:]
    assert refused == [
        (a, "refused: read-only console")
        for a in ("requests.cancel", "requests.hold", "requests.prio", "requests.top",
                  "requests.submit")
    ]  # fmt: skip
    flag.touch()


@pytest.mark.integration
def test_slurm_refusals_are_shown_in_its_words(console: Console) -> None:
    con = console
    rc, _, err = con.submit("--cpus", str(con.c.cpus + 1), "--", "true")
    assert rc == 1 and "More processors requested than permitted" in err
    rc, _, err = con.submit("--gpus", str(con.c.gpus + 1), "--", "true")
    assert rc == 1 and "Requested node configuration is not available" in err
    missing = con.run("hold", "slurm:test:999999")
    assert missing.returncode == 1 and "Invalid job id specified" in missing.stderr
    assert con.run("hold", "slurm:nosuch:1").returncode == 2
    assert con.run("hold", "slurm:test:1;reboot").returncode == 2
    results = [x["result"] for x in con.audit()]
    assert any("More processors requested than permitted" in r for r in results)
    assert all(r.startswith("refused: ") for r in results)


@pytest.mark.integration
def test_log_shows_the_output_cleaned(console: Console) -> None:
    con = console
    job = con.job_of("--name", "talks", "--shell", "--", r"printf 'hello\n\033[31mred\n'")
    wait(lambda: con.state_of(job) == "done", "the job to finish")
    out = con.run("log", job)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hello\n") and "\x1b" not in out.stdout and "red" in out.stdout
    exact = json.loads(con.run("log", job, "--json").stdout)
    assert exact["data"] == "hello\n\x1b[31mred\n" and exact["path"].startswith("/")


@pytest.mark.integration
def test_a_hostile_job_name_is_shown_cleaned(console: Console) -> None:
    con = console
    mark_guess = "@0123456789abcdef@"
    name = f"evil\x1b]0;pwned\x07\x1b[2J\nslurm:test:424242 root running\n{mark_guess}|424242"
    out = con.c.run("sbatch", "--parsable", "-J", name, "--hold", "--wrap", "true")
    assert out.returncode == 0, out.stderr
    job = f"slurm:test:{out.stdout.strip()}"
    table = con.run("requests")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith(job))
    assert "evil" in row
    assert not any(line.startswith("slurm:test:424242") for line in table.stdout.splitlines())
    jobs = json.loads(con.run("requests", "--json").stdout)["slurm"]["test"]["jobs"]
    assert [(j["id"], j["name"]) for j in jobs] == [(job, name)]  # exact in JSON, one row


@pytest.mark.integration
async def test_the_client_over_ssh_quotes_argv(cluster: SlurmCluster, tmp_path: Path) -> None:
    """An SSH login host: the same client, the argv through the server's ``sh -c``."""
    from llmaos_tui.fleet.ssh import SshOptions
    from tests.sshserver import SshServer

    srv = SshServer(tmp_path / "srv", env={"SLURM_CONF": str(cluster.conf)})
    await srv.start()
    srv.trust()
    spec = HostSpec(name="login1", host="127.0.0.1", port=srv.port, user="ops")
    options = SshOptions(known_hosts=srv.known_hosts, client_keys=[str(srv.client_key_path)],
                         config=[], use_agent=False, connect_timeout=30.0)  # fmt: skip
    runner = SshRunner(spec, options)
    try:
        words = ["a b", "$(touch pwned)", "'", ";", "\n", "*"]
        r = await runner.run(["printf", "%s|", *words])
        assert (r.rc, r.out) == (0, "|".join(words) + "|")
        assert not (srv.home / "pwned").exists()
        c = SlurmClient("test", runner)
        job_spec = SubmitSpec(argv=["sleep", "30"], name="over ssh", cwd=str(cluster.root / "out"))
        job = await c.submit(job_spec)
        assert job.name == "over ssh" and job.user == "root"
        held = await c.hold(job.job_id)
        assert held.state in ("held", "running")
        assert job.id in {j.id for j in await c.jobs()}
        assert (await c.cancel(job.job_id)).state == "cancelled"
    finally:
        await runner.close()
        await srv.stop()


@pytest.mark.integration
def test_log_refuses_an_output_path_swapped_for_a_link(console: Console, tmp_path: Path) -> None:
    """A job's output path is its owner's choice and the console reads it with its own
    login's rights: a link there (to a key, /etc/shadow) is refused, not followed."""
    con = console
    job = con.job_of("--name", "swap", "--", "true")
    wait(lambda: con.state_of(job) == "done", "the job to finish")
    path = Path(json.loads(con.run("log", job, "--json").stdout)["path"])
    secret = tmp_path / "secret"
    secret.write_text("the operator's key\n")
    path.unlink()
    path.symlink_to(secret)
    out = con.run("log", job)
    assert out.returncode == 1 and "not read" in out.stderr, (out.stdout, out.stderr)
    assert "the operator's key" not in out.stdout + out.stderr


class SwapBeforeRead(LocalRunner):
    """Runs every command for real, but swaps the job's output for a link to a secret
    just before the log's read starts: after any check a client could make first."""

    def __init__(self, env: dict[str, str], out: Path, secret: Path) -> None:
        super().__init__(env=env)
        self.out, self.secret, self.swapped = out, secret, False

    async def run(self, argv: Sequence[str], **kw: Any) -> Result:
        if argv and argv[0] == "python3" and not self.swapped:
            self.out.unlink()
            self.out.symlink_to(self.secret)
            self.swapped = True
        return await super().run(argv, **kw)


@pytest.mark.integration
async def test_log_refuses_a_link_swapped_in_just_before_the_read(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The race a stat-then-tail check had: the file is a regular file of the job's user
    until the moment the read starts, then a link. The one program that opens it
    (O_NOFOLLOW) and checks the opened file refuses it."""
    c = cluster
    out = c.root / "out" / "race.out"
    r = c.run("sbatch", "--parsable", f"--output={out}", "--wrap=echo mine", check=True)
    job = r.stdout.strip()
    wait(lambda: out.exists() and out.read_text() == "mine\n", "the job's output")
    plain = SlurmClient("test", LocalRunner(env=c.env))
    assert (await plain.log(job)).data == "mine\n"  # read while it is the job's file
    secret = tmp_path / "secret"
    secret.write_text("the operator's key\n")
    runner = SwapBeforeRead(c.env, out, secret)
    with pytest.raises(SlurmRefused) as err:
        await SlurmClient("test", runner).log(job)
    assert runner.swapped and out.is_symlink()
    assert "not read" in str(err.value) and "the operator's key" not in str(err.value)
