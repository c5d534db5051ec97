"""A real one-node Slurm cluster on this machine for the tests: munged, slurmctld and slurmd
(Debian's ``munge`` and ``slurm-wlm``), each with private state under a temporary directory.

Nothing of the system's is used: munged gets its own key, socket, pid, log and seed files;
the daemons and every client read a private ``slurm.conf`` named by ``SLURM_CONF``
(:attr:`SlurmCluster.env`), which points them at that munge socket (``AuthInfo=socket=``)
and at free ports, reached on loopback (``SlurmctldHost=localhost``, ``NodeAddr=127.0.0.1``).
The daemons listen on every address, as Slurm does by default: 22.05's ``NoInAddrAny`` and
``NoCtldInAddrAny`` bind to the address the machine's hostname resolves to, and slurmctld
and slurmd die with "Cannot assign requested address" where that is not a local one
(tried with a private /etc/hosts); only requests signed with the private munge key are
honoured. The one node is named after ``hostname -s``, has this machine's
CPUs, a small RealMemory and two fake GPUs (``gres/gpu`` backed by character devices made
in the temporary directory, so no real GPU is needed and none is touched: with
``task/none`` nothing confines a job to them).

Slurm 22.05 choices, found by trying them here (a gVisor container with cgroup v1):
``proctrack/linuxproc`` and ``task/none`` (cgroup plugins are not assumed to work),
``select/cons_tres`` with ``CR_Core_Memory`` and a small ``DefMemPerCPU`` so that several
one-CPU jobs run side by side, ``EnforcePartLimits=ALL`` so that a job asking for more than
the partition has is refused by ``sbatch`` (exit 1, Slurm's words on stderr) instead of
pending forever, and no accounting (``sacct`` answers "Slurm accounting storage is
disabled"; finished jobs stay visible to ``squeue -t all`` and ``scontrol show job`` for
``MinJobAge`` seconds).

Needs root (slurmd runs jobs as their users) and the binaries: :func:`slurm_available`
says what is missing; tests skip on it, and fail under ``LLMAOS_REQUIRE_INTEGRATION=1``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
PACKAGES = "apt-get install munge slurm-wlm"
START_DEADLINE = 120.0  # seconds; a busy 2-core machine is slow to start three daemons
STOP_DEADLINE = 20.0


class SlurmError(RuntimeError):
    """The cluster did not come up (the message ends with the daemons' log tails)."""


def slurm_available() -> str | None:
    """Why a private cluster cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a private Slurm cluster needs root (slurmd runs jobs as their users)"
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"{', '.join(missing)} missing ({PACKAGES})"
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the daemon that gets it binds it soon
    after; :meth:`SlurmCluster.start` tries fresh ports when one was taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmCluster:
    """munged + slurmctld + slurmd under ``root`` (made and removed by the caller or, when
    None, a fresh temporary directory removed by :meth:`stop`).

    ``priority`` is ``basic`` or ``multifactor``: under both root may ``scontrol update
    Priority=`` and ``scontrol top`` (which works by adjusting Nice), and a user may only
    raise Nice, hold and release their own jobs (``top`` needs SchedulerParameters=
    enable_user_top, not set, as on most clusters). ``gpus`` fake GPUs are configured as
    ``gres/gpu`` on the node (0 for none).
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        priority: str = "multifactor",
        gpus: int = 2,
        min_job_age: int = 300,
    ) -> None:
        self._own_root = root is None
        # /tmp and short: munge's socket path must fit in sun_path.
        self.root = root or Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        self.priority = priority
        self.gpus = gpus
        self.min_job_age = min_job_age
        self.node = socket.gethostname().split(".")[0]
        self.cpus = len(os.sched_getaffinity(0))
        self.topology = f"CPUs={self.cpus}"
        self.memory_mb = 1024
        self.partition = "debug"
        self.conf = self.root / "etc" / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.logs = self.root / "log"
        self.ctld_port = 0
        self.slurmd_port = 0
        self.startup_s = 0.0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ the user's view

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm's commands against this cluster (a copy of ours with
        ``SLURM_CONF``; no other variable is needed)."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(
        self, *argv: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """One Slurm command (``squeue``, ``sbatch`` ...) against this cluster."""
        # In the job output folder: a job submitted without --chdir writes slurm-N.out
        # in the submitter's working directory, which would be the checkout.
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout,
            check=check, cwd=self.root / "out",
        )  # fmt: skip

    def job_ids(self) -> list[str]:
        """Ids of the jobs still queued or running (``squeue``'s default states)."""
        out = self.run("squeue", "-h", "-o", "%i")
        return out.stdout.split() if out.returncode == 0 else []

    def node_state(self) -> str:
        """The node's state in sinfo's words (``idle``, ``mixed``, ``allocated``,
        ``drained``, ``draining``, ``down`` ...), or ``""`` when the controller does not
        answer.

        Read from ``scontrol show node``, not ``sinfo``: sinfo 22.05 works from the
        select plugin's per-node summary, which slurmctld refreshes only when a node
        record changes in a later second than its last refresh; a job that starts in the
        same second leaves sinfo saying ``allocated 0/2/0/2`` for a node scontrol calls
        MIXED, for as long as nothing else changes (seen here, not every time).
        """
        out = self.run("scontrol", "-o", "show", "node", self.node, timeout=30)
        if out.returncode != 0:
            return ""
        fields: dict[str, str] = {}
        for kv in out.stdout.split():  # the first of a key: Reason=... may hold "State=IDLE"
            if "=" in kv:
                k, v = kv.split("=", 1)
                fields.setdefault(k, v)
        base, *flags = fields.get("State", "").lower().split("+")
        if "drain" in flags:
            return "drained" if base in ("idle", "down") else "draining"
        return base

    def log_tail(self, chars: int = 2000) -> str:
        """The end of each daemon's log, for a failure message."""
        parts = []
        for path in sorted(self.logs.glob("*")):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> SlurmCluster:
        """Start the three daemons and wait until the node is idle; everything started is
        stopped again if that fails."""
        began = time.monotonic()
        try:
            self._prepare()
            self._probe_hardware()
            self._start_munge()
            for attempt in range(attempts):
                self.ctld_port, self.slurmd_port = free_port(), free_port()
                self._write_conf()
                try:
                    self._start_slurm(began + START_DEADLINE)
                    break
                except _PortTaken:
                    self._stop_slurm()
                    if attempt == attempts - 1:
                        raise SlurmError("no free port pair for slurmctld and slurmd") from None
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Cancel every job, stop the daemons, kill anything left that ran under this
        cluster, and remove the directory if this object made it."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            ids = self.job_ids()
            if ids:
                self.run("scancel", *ids, timeout=30)
                deadline = time.monotonic() + STOP_DEADLINE
                while self.job_ids() and time.monotonic() < deadline:
                    time.sleep(0.2)  # poll interval
        self._stop_slurm()
        self._stop("munged")
        self._kill_strays()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ the parts

    def _prepare(self) -> None:
        # 0755 everywhere but the key's directory: another local user's client must reach
        # the munge socket and read slurm.conf (munged refuses a socket dir others cannot
        # enter, and a key others can read).
        os.chmod(self.root, 0o755)
        for sub in ("etc", "munge", "log", "state", "spool", "dev", "out"):
            (self.root / sub).mkdir(mode=0o755, exist_ok=True)
        (self.root / "key").mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.root / "out", 0o1777)  # job output of any user, as /tmp
        for i in range(self.gpus):
            dev = self.root / "dev" / f"nvidia{i}"
            if not dev.exists():
                try:
                    # gres/gpu wants character devices; these are /dev/null's numbers.
                    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
                except OSError:
                    dev.touch()  # slurmd logs an error for a plain file, but counts it

    def _probe_hardware(self) -> None:
        """Take the node's sockets, cores and threads from ``slurmd -C``: with ``CPUs=``
        alone slurmctld guesses one core per socket, slurmd reports otherwise, and
        ``sinfo`` then calls a node with one busy CPU of two ``allocated`` (0/2/0/2)
        where ``scontrol`` says MIXED."""
        out = subprocess.run(
            ["slurmd", "-C"], capture_output=True, text=True, timeout=60, check=False
        )
        fields = dict(kv.split("=", 1) for kv in out.stdout.split() if kv.count("=") == 1)
        keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        if out.returncode == 0 and all(fields.get(k, "").isdigit() for k in keys):
            self.cpus = int(fields["CPUs"])
            self.topology = " ".join(f"{k}={fields[k]}" for k in keys)

    def _start_munge(self) -> None:
        key = self.root / "key" / "munge.key"
        subprocess.run(
            ["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True
        )
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",  # root, and a key/socket outside /etc and /run
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--log-file={self.logs / 'munged.log'}",
                f"--seed-file={self.root / 'key' / 'munged.seed'}",
            ],
        )
        self._wait(
            self.munge_socket.exists,
            time.monotonic() + START_DEADLINE,
            "munged made no socket",
            "munged",
        )

    def _write_conf(self) -> None:
        r = self.root
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = [
            "ClusterName=llmaos",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'state' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'spool' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.logs / 'slurmctld.log'}",
            f"SlurmdLogFile={self.logs / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=64",
            "SchedulerType=sched/backfill",
            f"PriorityType=priority/{self.priority}",
            # multifactor without weights gives every job priority 1, so a positive Nice
            # (all a user may set) would change nothing; the partition factor gives each
            # job a base of 10000 for Nice to lower.
            "PriorityWeightPartition=10000" if self.priority == "multifactor" else "",
            "EnforcePartLimits=ALL",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            "MailProg=/bin/true",
            "GresTypes=gpu" if self.gpus else "",
            f"NodeName={self.node} NodeAddr=127.0.0.1 {self.topology} "
            f"RealMemory={self.memory_mb}{gres} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(line for line in lines if line) + "\n")
        os.chmod(self.conf, 0o644)
        # gres.conf is read from slurm.conf's directory.
        gres_conf = self.conf.parent / "gres.conf"
        if self.gpus:
            files = f"{r / 'dev'}/nvidia[0-{self.gpus - 1}]"
            gres_conf.write_text(f"NodeName={self.node} Name=gpu File={files}\n")
            os.chmod(gres_conf, 0o644)
        else:
            gres_conf.unlink(missing_ok=True)

    def _start_slurm(self, deadline: float) -> None:
        # -i: ignore state files (there are none); -D: stay in the foreground, our child.
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait(self._ctld_up, deadline, "slurmctld did not answer scontrol ping", "slurmctld")
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node])
        self._wait(
            lambda: self.node_state() == "idle",
            deadline,
            f"node {self.node} did not become idle",
            "slurmctld",
            "slurmd",
        )

    def _ctld_up(self) -> bool:
        out = self.run("scontrol", "ping", timeout=30)
        return out.returncode == 0 and "UP" in out.stdout

    def _wait(self, cond: Callable[[], bool], deadline: float, what: str, *daemons: str) -> None:
        while not cond():
            for name in daemons:
                proc = self._procs.get(name)
                if proc is not None and proc.poll() is not None:
                    tail = self.log_tail()
                    if "Address already in use" in tail:
                        raise _PortTaken
                    raise SlurmError(f"{name} exited ({proc.returncode}): {what}\n{tail}")
            if time.monotonic() > deadline:
                raise SlurmError(f"{what} in time\n{self.log_tail()}")
            time.sleep(0.2)  # poll interval

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = (self.logs / f"{name}.out").open("ab")
        try:
            self._procs[name] = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our signals, not the terminal's
            )
        finally:
            out.close()

    def _stop_slurm(self) -> None:
        self._stop("slurmd")
        self._stop("slurmctld")

    def _stop(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_DEADLINE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # any child left in its group

    def _kill_strays(self) -> None:
        """Kill what outlived the daemons: slurmstepd and job processes carry this
        cluster's SLURM_CONF in their environment, or our directory on their command line."""
        mine = str(self.conf)
        me = psutil.Process()
        # Our own children (a test's console, a helper) are the test's to end, not ours.
        spared = {me.pid} | {c.pid for c in me.children(recursive=True)}
        strays = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.pid in spared:
                    continue
                if p.environ().get("SLURM_CONF") == mine or any(
                    str(self.root) in a for a in p.cmdline()
                ):
                    strays.append(p)
        for p in strays:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(strays, timeout=STOP_DEADLINE)


class _PortTaken(Exception):
    """A daemon found its port taken between :func:`free_port` and its bind."""


@contextlib.contextmanager
def slurm_cluster(**kw: object) -> Iterator[SlurmCluster]:
    """A started :class:`SlurmCluster`, stopped on leaving (keyword arguments as its)."""
    cluster = SlurmCluster(**kw)  # type: ignore[arg-type]
    with cluster.start():
        yield cluster


DEADLINE = 90.0  # seconds; slurmctld schedules a few seconds after start, and CI is busy


def wait(
    cond: Callable[[], bool],
    what: str,
    timeout: float = DEADLINE,
    show: Callable[[], str] | None = None,
) -> None:
    """Poll ``cond`` until true; on timeout fail with ``show()`` (what was seen)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            seen = f"\n{show()}" if show is not None else ""
            pytest.fail(f"timed out waiting for {what}{seen}")
        time.sleep(0.2)  # poll interval


@pytest.fixture(autouse=True)
def _no_jobs_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with an empty queue, whatever the one before it left."""
    yield
    if "cluster" in request.fixturenames:
        c: SlurmCluster = request.getfixturevalue("cluster")
        ids = c.job_ids()
        if ids:
            c.run("scancel", *ids)
        wait(lambda: not c.job_ids(), "the queue to empty")


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    """A one-node cluster without GPUs for a test module; skips (fails under
    LLMAOS_REQUIRE_INTEGRATION) where Slurm is not installed."""
    from tests.conftest import need

    why = slurm_available()
    need(why is None, why or "")
    with SlurmCluster(gpus=0) as c:
        yield c
