"""Per-process data only for the clients that want it (``procs.watch``) and one process in
detail (``proc.detail``), against the real daemon over its real socket.

A console turns processes off for the hosts nobody looks at: their samples come without the
table while other clients keep getting changes, and turned on again the table comes whole
before any change. ``proc.detail`` answers what the OS shows of one process, and for
another user's process what it keeps back as None with a reason.
"""

# ruff: noqa: F811 - peers and other_user are fixtures imported from other test modules

from __future__ import annotations

import json
import os
import pwd
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmaos_agent.collect.processes import apply
from llmaos_agent.paths import default_paths
from llmaos_agent.protocol import (
    NOT_FOUND,
    Proc,
    ProcDetail,
    ProcDetailQuery,
    ProcTable,
    ProcWatch,
    Request,
    Response,
    Sample,
    decode,
    decode_result,
)
from tests.bare import bare_python, readable_agents
from tests.test_daemon import (
    FAST,
    TIMEOUT,
    Peer,
    attach,
    end,
    greet,
    peers,  # noqa: F401 - the fixture
    start_daemon,
    wait_for,
)
from tests.users import User, other_user  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


@pytest.fixture
def fast(agent_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[bytes]]:
    """A 5 Hz daemon that finds no container engine: a running container's load would keep
    the process table read whoever watches it."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{agent_home}/no-docker.sock")
    proc = start_daemon(*FAST)
    try:
        yield proc
    finally:
        end(proc)


def samples(peer: Peer, n: int) -> list[Sample]:
    return [peer.notification("sample") for _ in range(n)]


def watch(peer: Peer, on: bool, seen: list[Sample]) -> None:
    resp = peer.response(peer.request("procs.watch", {"on": on}), seen=seen)
    assert decode_result(resp, ProcWatch) == ProcWatch(on=on)


def stat_files_held(pid: int) -> int:
    """How many /proc/PID/stat files the daemon keeps open between its passes."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        n += target.startswith("/proc/") and target.endswith("/stat")
    return n


def test_a_client_with_processes_off_gets_none_while_another_gets_changes(
    fast: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    off, on = attach(peers), attach(peers)
    greet(off)
    greet(on)
    first_on = on.notification("sample")
    assert first_on.procs is not None and first_on.procs.full

    watch(off, False, [])
    quiet = samples(off, 8)  # 1.6 s: four process passes
    assert all(s.procs is None for s in quiet), "no process data to a client that has it off"
    assert len({s.seq for s in quiet}) == 8, "its samples keep coming, every tick"
    others = [s.procs for s in samples(on, 8) if s.procs is not None]
    assert len(others) >= 3 and not any(d.full for d in others), "the other client: changes"

    # On again: the very next sample carries the whole table, then changes follow.
    between: list[Sample] = []
    watch(off, True, between)
    assert all(s.procs is None for s in between)
    again = samples(off, 7)
    assert again[0].procs is not None and again[0].procs.full, "a full table first"
    later = [s.procs for s in again[1:] if s.procs is not None]
    assert len(later) >= 2 and not any(d.full for d in later)
    table: dict[int, Proc] = {}
    for d in [again[0].procs, *later]:
        apply(table, d)
    seen: list[Sample] = []
    resp = off.response(off.request("processes"), seen=seen)
    for s in seen:
        if s.procs is not None:
            apply(table, s.procs)
    assert {p.pid: p for p in decode_result(resp, ProcTable).procs} == table
    # The other client never got a table again: its changes went on.
    assert not any(s.procs.full for s in samples(on, 4) if s.procs is not None)
    assert off.close() == 0 and on.close() == 0


def test_no_client_watching_processes_stops_reading_them(
    fast: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    peer = attach(peers)
    greet(peer)
    assert peer.notification("sample").procs is not None
    assert stat_files_held(fast.pid) > 10, "the table is read, its stat files kept open"
    watch(peer, False, [])
    # Once no client wants the table it is not read: the stat files are let go.
    wait_for(lambda: stat_files_held(fast.pid) == 0, what="stat files closed")
    samples(peer, 5)
    assert stat_files_held(fast.pid) == 0
    # A one-shot `processes` still answers, from a fresh read.
    table = decode_result(peer.call("processes"), ProcTable)
    assert {fast.pid, peer.proc.pid} <= {p.pid for p in table.procs}
    watch(peer, True, [])
    got = peer.notification("sample")
    assert got.procs is not None and got.procs.full
    assert {fast.pid, peer.proc.pid} <= {p.pid for p in got.procs.upsert}
    assert peer.close() == 0


# ------------------------------------------------------------------ proc.detail

CHILD = """
import os, sys, threading, time
os.nice(3)
os.sched_setaffinity(0, {0})
stop = threading.Event()
workers = [threading.Thread(target=stop.wait) for _ in range(3)]
for w in workers:
    w.start()
files = [open(os.devnull) for _ in range(20)]
fds = len(os.listdir("/proc/self/fd")) - 1  # less the one the listing itself holds
print("ready", fds, flush=True)
sys.stdin.read()
stop.set()
"""
ODD_ARG = "a run with spaces ü → 日本"


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, int]]:
    """A python child with 3 threads besides its main, 20 more open files, nice 3 and pinned
    to core 0, in a cwd of the test's; its own count of its fds."""
    cwd = tmp_path / "work dir ü"
    cwd.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, ODD_ARG, "--flag"],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # epoll, not select(): a long run may hold fds past select()'s 1024.
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(TIMEOUT), "the child did not get ready"
        word, fds = proc.stdout.readline().split()
        assert word == "ready"
        yield proc, cwd, int(fds)
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


def detail(peer: Peer, pid: int, create_time: float | None = None) -> Response:
    params: dict[str, Any] = {"pid": pid}
    if create_time is not None:
        params["create_time"] = create_time
    return peer.call("proc.detail", params)


def row_of(peer: Peer, pid: int) -> Proc:
    """``pid``'s row of the daemon's process table, once the daemon's sampling has seen it
    (its table is as of its last process sample: a child started just now may not be in it
    yet on a busy machine)."""
    deadline = time.monotonic() + 6 * TIMEOUT
    while True:
        got: ProcTable = decode_result(peer.call("processes"), ProcTable)
        table = {p.pid: p for p in got.procs}
        if pid in table:
            return table[pid]
        if time.monotonic() > deadline:
            pytest.fail(f"pid {pid} not in the daemon's process table after {6 * TIMEOUT:.0f} s")
        time.sleep(0.2)  # poll interval


def test_detail_of_our_own_child(
    fast: subprocess.Popen[bytes],
    peers: list[Peer],
    child: tuple[subprocess.Popen[str], Path, int],
) -> None:
    proc, cwd, fds = child
    peer = attach(peers)
    greet(peer)
    row = row_of(peer, proc.pid)
    d = decode_result(detail(peer, proc.pid, row.create_time), ProcDetail)
    assert d.argv == [sys.executable, "-c", CHILD, ODD_ARG, "--flag"]
    assert not d.argv_cut
    assert d.cwd == str(cwd)
    assert d.threads == 4
    assert d.open_files == fds
    assert (d.nice, d.affinity) == (3, "0")
    assert d.user == pwd.getpwuid(os.getuid()).pw_name
    assert (d.pid, d.ppid, d.name) == (proc.pid, os.getpid(), row.name)
    assert d.state in ("S", "R") and d.create_time == row.create_time
    assert d.rss is not None and d.rss > 1 << 20
    assert d.cgroup == Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()[0]
    assert d.gpus == [] and d.unread == []

    # Gone: the same pid and create time, answered under the call's id.
    proc.kill()
    proc.wait(TIMEOUT)
    resp = detail(peer, proc.pid, row.create_time)
    assert resp.error is not None and resp.error.code == NOT_FOUND
    assert resp.error.message == f"pid {proc.pid} is gone"
    assert peer.close() == 0


def test_detail_of_a_reused_pid_says_it_is_another_process(
    fast: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    peer = attach(peers)
    greet(peer)
    me = decode_result(detail(peer, os.getpid()), ProcDetail)
    resp = detail(peer, os.getpid(), me.create_time - 100.0)
    assert resp.error is not None and resp.error.code == NOT_FOUND
    assert f"pid {os.getpid()} is another process now" in resp.error.message
    # A long command line comes cut to the bound, and says so.
    nap = "import time; time.sleep(120)"
    long = subprocess.Popen([sys.executable, "-c", nap, *["x" * 1000] * 40])
    try:
        wait_for(lambda: Path(f"/proc/{long.pid}/cmdline").read_bytes().count(b"x") > 100)
        d = decode_result(detail(peer, long.pid), ProcDetail)
        assert d.argv_cut and d.argv[:3] == [sys.executable, "-c", nap]
        assert sum(len(a) for a in d.argv) <= 32 * 1024 < 40 * 1001
    finally:
        long.kill()
        long.wait(TIMEOUT)
    assert peer.close() == 0


def test_detail_of_pid_1_answers_what_can_be_read(
    fast: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    peer = attach(peers)
    greet(peer)
    d = decode_result(detail(peer, 1), ProcDetail)
    assert (d.pid, d.ppid) == (1, 0)
    assert d.user == "root" and d.state and d.threads and d.threads >= 1
    unread = {u.field: u.reason for u in d.unread}
    for field in ("cwd", "open_files", "rss", "affinity", "cgroup"):
        # Each is either there or kept back with its reason (some kernels keep pid 1's cwd
        # even from root).
        assert (getattr(d, field) is None) == (field in unread), (field, d)
    assert peer.close() == 0


# ------------------------------------------------------------------ another user


class RawClient:
    """A connection to a daemon's socket by path (of another user's home), lines decoded."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(str(path))
        self.buf = b""

    def call(self, method: str, params: dict[str, Any], rid: int = 1) -> Response:
        msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                got = decode(line + b"\n", notifications=True, requests=False)
                if isinstance(got, Response) and got.id == rid:
                    return got
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the daemon closed the connection"
            self.buf += chunk
        pytest.fail(f"no answer to {method} within {TIMEOUT} s")


@pytest.fixture
def their_daemon(other_user: User) -> Iterator[Path]:
    """A daemon run by another user, in a home of theirs; its socket's path. Root (this
    test) may connect to it, as to any user's."""
    home = Path(tempfile.mkdtemp(prefix="llmo-", dir="/tmp"))
    os.chown(home, other_user.uid, other_user.gid)
    env = {"PATH": os.environ["PATH"], "LLMAOS_AGENT_HOME": str(home),
           "DOCKER_HOST": f"unix://{home}/no-docker.sock",
           "PYTHONPATH": str(readable_agents())}  # fmt: skip
    # The bare python: this venv's interpreter lives in root's home, which they cannot read.
    proc = other_user.popen(
        [str(bare_python()), "-m", "llmaos_agent", "daemon", *FAST],
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    sock = home / "run" / "agent.sock"
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, what="their daemon's socket")
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"their daemon exited: {proc.stderr.read().decode()[-2000:]}")
        yield sock
    finally:
        end(proc)
        shutil.rmtree(home, ignore_errors=True)


def test_detail_of_another_users_process_keeps_back_what_it_may_not_read(
    their_daemon: Path, child: tuple[subprocess.Popen[str], Path, int]
) -> None:
    proc, _, _ = child
    client = RawClient(their_daemon)
    resp = client.call("proc.detail", {"pid": proc.pid})
    d = decode_result(resp, ProcDetail)
    # What any user may read of a process: its command line, owner, state, threads, nice...
    assert d.argv[-2:] == [ODD_ARG, "--flag"]
    assert d.user == pwd.getpwuid(os.getuid()).pw_name
    assert (d.threads, d.nice, d.affinity) == (4, 3, "0")
    assert d.rss is not None and d.rss > 0 and d.cgroup
    # ... and what only its owner may: its cwd and open files, None with the reason.
    assert d.cwd is None and d.open_files is None
    unread = {u.field: u.reason for u in d.unread}
    assert set(unread) == {"cwd", "open_files"}
    assert all("permission denied" in why for why in unread.values())
    gone = client.call("proc.detail", {"pid": 2**31})
    assert gone.error is not None and gone.error.code == NOT_FOUND
    client.sock.close()


# ------------------------------------------------------------------ GPU use


def test_detail_carries_the_pids_gpu_use_from_the_last_sample(agent_home: Path) -> None:
    """The daemon's own call path (gate, handler, answer) in this process, with the NVML
    stand-in reporting this test process on GPU 0 with SM and memory shares."""
    from llmaos_agent.collect.sampler import Sampler
    from llmaos_agent.daemon import Daemon
    from tests.nvml_standin import NvmlStandIn, two_gpus

    devices = two_gpus({0: (os.getpid(), 3 << 30), 1: (4242, None)})
    devices[0].proc_util = [(os.getpid(), 37, 5, 0.0)]
    daemon = Daemon(default_paths())
    daemon.sampler = Sampler(nvml=NvmlStandIn(devices), io=True)
    try:
        daemon.last_sample = daemon.sampler.sample()
        line = daemon._answer(Request(9, "proc.detail", ProcDetailQuery(pid=os.getpid())))
    finally:
        daemon.sampler.close()
    resp = decode(line, notifications=False, requests=False)
    assert isinstance(resp, Response) and resp.id == 9
    d = decode_result(resp, ProcDetail)
    assert [(g.index, g.uuid, g.used_mem, g.sm, g.mem) for g in d.gpus] == [
        (0, devices[0].uuid, 3 << 30, 0.37, 0.05)
    ]
