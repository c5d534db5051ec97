"""The daemon and the attach bridge, as the console meets them: real processes, real sockets.

Every test runs in a private LLMAOS_AGENT_HOME (``agent_home``) whose daemons are
stopped afterwards; every wait is bounded.

Over 700 lines on purpose: start_daemon and its helpers are what the bare-Python pass and
the other daemon tests import; they live with the tests that define the behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import psutil
import pytest

from llmaos_agent import __version__, endpoint
from llmaos_agent.attach import EXIT_DAEMON_GONE
from llmaos_agent.collect.processes import apply
from llmaos_agent.daemon_clients import STALL_S
from llmaos_agent.paths import default_paths
from llmaos_agent.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_LINE_BYTES,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION,
    VERSION_ERROR,
    Handshake,
    HandshakeResult,
    Hello,
    History,
    Incoming,
    Notification,
    Pong,
    Proc,
    ProcTable,
    Response,
    Sample,
    decode,
    decode_result,
)

from .bare import agent_argv, agent_env, bare_mode
from .conftest import agent_daemons, is_agent_daemon

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sessions and sockets")

FAST = ["--interval", "0.2", "--proc-interval", "0.4"]
TIMEOUT = 10.0


def agent(*args: str) -> list[str]:
    """The installed ``llmaos-agent`` script, as a user runs it (the module as a fallback);
    under ``LLMAOS_TEST_AGENT_PYTHON=bare`` the module on a bare python3 (tests/bare.py).
    Run it with ``env=agent_env()``."""
    script = Path(sys.executable).with_name("llmaos-agent")
    if script.exists() and not bare_mode():
        return [str(script), *args]
    return agent_argv(*args)


# ------------------------------------------------------------------ the console side


class Peer:
    """What the console sees of one ``llmaos-agent attach``: lines decoded strictly."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            agent("attach", *args),
            env=agent_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._ids = 0
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def line(self, timeout: float = TIMEOUT) -> bytes:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line from attach within {timeout} s")
        if not line:
            raise EOFError("attach closed its stdout")
        return line

    def recv(self, timeout: float = TIMEOUT) -> Incoming:
        return decode(self.line(timeout), notifications=True, requests=False)

    def notification(self, method: str, timeout: float = TIMEOUT) -> Any:
        """The params of the next ``method`` notification, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(msg, Notification) and msg.method == method:
                return msg.params

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, method: str, params: Any = None, rid: int | str | None = None) -> int | str:
        if rid is None:
            self._ids += 1
            rid = self._ids
        msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
        self.send(msgspec.json.encode(msg) + b"\n")
        return rid

    def response(
        self, rid: int | str | None, timeout: float = TIMEOUT, seen: list[Sample] | None = None
    ) -> Response:
        """The response with id ``rid``; samples passed on the way go to ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(msg, Response) and msg.id == rid:
                return msg
            assert not isinstance(msg, Response), f"unexpected response {msg}"
            if seen is not None and isinstance(msg.params, Sample):
                seen.append(msg.params)

    def call(self, method: str, params: Any = None, timeout: float = TIMEOUT) -> Response:
        return self.response(self.request(method, params), timeout)

    def close(self, timeout: float = TIMEOUT) -> int:
        """Close stdin, as the console does when it goes away; the exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self._pumping.join(TIMEOUT)  # it reads stdout to its end, which came with the exit
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    """Attaches opened by a test, killed after it if still running."""
    opened: list[Peer] = []
    try:
        yield opened
    finally:
        for p in opened:
            p.kill()


def attach(peers: list[Peer], *args: str) -> Peer:
    p = Peer(*args)
    peers.append(p)
    return p


def greet(peer: Peer) -> tuple[Hello, History]:
    """The start of every stream: ``hello``, then the history ring."""
    first = peer.recv()
    assert isinstance(first, Notification) and first.method == "hello", first
    second = peer.recv()
    assert isinstance(second, Notification) and second.method == "history", second
    history: History = second.params
    while not history.last:  # more chunks
        more = peer.recv()
        assert isinstance(more, Notification) and more.method == "history"
        history = History(samples=[*history.samples, *more.params.samples], last=more.params.last)
    return first.params, history


# ------------------------------------------------------------------ daemons the test starts


def start_daemon(*args: str) -> subprocess.Popen[bytes]:
    """``llmaos-agent daemon`` in the foreground of this test; returns once it serves."""
    proc = subprocess.Popen(
        agent("daemon", *args),
        env=agent_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"the daemon exited with {proc.returncode}: {err}")
        try:
            endpoint.connect(default_paths(), timeout=1.0).close()
            return proc
        except OSError:
            time.sleep(0.02)
    end(proc)
    pytest.fail(f"the daemon did not serve within {TIMEOUT} s")


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(TIMEOUT)
    if proc.stderr is not None:
        proc.stderr.close()


@pytest.fixture
def fast_daemon(agent_home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A daemon sampling at 5 Hz with the process table at 2.5 Hz, killed after the test."""
    proc = start_daemon(*FAST)
    try:
        yield proc
    finally:
        end(proc)


def wait_for(cond: Any, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def pids(procs: list[Proc]) -> set[int]:
    return {p.pid for p in procs}


# ================================================================== attach starts a daemon


def test_attach_starts_a_detached_daemon_that_outlives_it(
    agent_home: Path, peers: list[Peer]
) -> None:
    assert agent_daemons(agent_home) == []
    peer = attach(peers)
    hello, history = greet(peer)

    assert hello.protocol == PROTOCOL_VERSION
    assert hello.agent_version == __version__
    assert hello.host.cores == os.cpu_count()
    assert hello.host.hostname == socket.gethostname()[:256]
    assert hello.caps.read_only is False
    assert hello.interval == 1.0
    assert history.last
    assert hello.pid != peer.proc.pid

    daemon = psutil.Process(hello.pid)
    assert is_agent_daemon(daemon, agent_home)
    assert os.getsid(hello.pid) == hello.pid, "the daemon leads its own session"
    assert os.getsid(hello.pid) != os.getsid(0)
    assert [p.pid for p in agent_daemons(agent_home)] == [hello.pid]
    assert (agent_home / "run" / "daemon.lock").read_text().strip() == str(hello.pid)

    # Then live samples, about one a second, each with every core. (The first client of a
    # young daemon gets one at once, with the process table; the cadence goes on from it.)
    a = peer.notification("sample")
    b = peer.notification("sample")
    assert b.seq == a.seq + 1
    assert 0.5 <= b.t - a.t <= 2.0  # 1 s, with room for a loaded test machine
    assert len(a.cpu) == len(b.cpu) == hello.host.cores

    assert peer.close() == 0, peer.stderr()
    assert "closed the connection" not in peer.stderr()
    time.sleep(0.3)
    assert daemon.is_running() and daemon.status() != psutil.STATUS_ZOMBIE
    assert daemon.ppid() != peer.proc.pid
    assert (agent_home / "run" / "agent.sock").is_socket()

    # The next attach finds it rather than starting another.
    again = attach(peers, "--no-start")
    hello2, history2 = greet(again)
    assert hello2.pid == hello.pid
    assert len(history2.samples) >= 2
    assert again.close() == 0


def mapped(pid: int) -> set[str]:
    """The shared objects ``pid`` has loaded, by name up to the first dot
    (``_ssl``, ``libssl``, ``_psutil_linux``, msgspec's ``_core``...)."""
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and ".so" in parts[5]:
            names.add(os.path.basename(parts[5]).split(".", 1)[0])
    return names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_attach_and_daemon_load_only_what_they_use(agent_home: Path, peers: list[Peer]) -> None:
    """What each process keeps in memory for its whole life (docs/BENCHMARKS.md)."""
    peer = attach(peers)
    hello, _ = greet(peer)
    assert peer.notification("sample").procs is not None  # a process-table pass is done
    daemon, bridge = mapped(hello.pid), mapped(peer.proc.pid)
    # The daemon: msgspec where installed (not on a bare python3), never psutil on Linux (it
    # reads /proc itself), and asyncio without TLS; on a Unix socket no hashing either (hmac
    # and secrets are for the loopback TCP endpoint).
    assert "_psutil_linux" not in daemon, daemon
    assert ("_core" in daemon) != bare_mode(), daemon
    assert not daemon & {"_ssl", "libssl", "_hashlib", "libcrypto"}, daemon
    # The bridge: a byte pipe between stdio and a socket, and nothing more.
    # (Debian's python3 has _socket built in, so a bare bridge maps no _socket.so.)
    assert "_socket" in bridge or (bare_mode() and "libc" in bridge), bridge
    heavy = {"_ssl", "libssl", "_hashlib", "libcrypto", "_asyncio", "_psutil_linux", "_core"}
    assert not bridge & (heavy | {"_bz2", "_lzma"}), bridge
    assert peer.close() == 0


def test_attach_read_only_starts_a_read_only_daemon(agent_home: Path, peers: list[Peer]) -> None:
    peer = attach(peers, "--read-only")
    hello, _ = greet(peer)
    assert hello.caps.read_only is True
    assert "--read-only" in psutil.Process(hello.pid).cmdline()
    assert peer.close() == 0


def test_two_attaches_at_once_share_one_daemon(agent_home: Path, peers: list[Peer]) -> None:
    first, second = attach(peers), attach(peers)  # both find no daemon and race to start one
    h1, _ = greet(first)
    h2, _ = greet(second)
    assert h1.pid == h2.pid
    time.sleep(0.3)  # a loser of the start race would be gone by now
    assert [p.pid for p in agent_daemons(agent_home)] == [h1.pid]
    assert (agent_home / "run" / "daemon.lock").read_text().strip() == str(h1.pid)
    # Both are served: each gets its own answers.
    assert first.call("ping").result is not None
    assert second.call("ping").result is not None
    assert first.close() == 0
    assert second.close() == 0
    assert psutil.pid_exists(h1.pid)


# ================================================================== the stream


def test_samples_carry_a_full_process_table_then_changes(
    fast_daemon: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    peer = attach(peers)
    hello, _ = greet(peer)
    assert hello.pid == fast_daemon.pid
    assert (hello.interval, hello.proc_interval) == (0.2, 0.4)

    samples = [peer.notification("sample") for _ in range(7)]
    seqs = [s.seq for s in samples]
    assert seqs == list(range(seqs[0], seqs[0] + 7)), "no sample is skipped"
    with_procs = [s for s in samples if s.procs is not None]
    assert len(with_procs) >= 3
    gaps = [b.seq - a.seq for a, b in itertools.pairwise(with_procs)]
    assert all(g in (2, 3) for g in gaps), f"a table every 0.4 s, at 0.2 s a tick: {gaps}"
    assert samples[0].procs is not None, "a new client gets the table at once"
    first = with_procs[0].procs
    assert first is not None and first.full
    assert first.gone == []
    assert {os.getpid(), peer.proc.pid, fast_daemon.pid} <= pids(first.upsert)
    later = [s.procs for s in with_procs[1:] if s.procs is not None]
    assert not any(d.full for d in later), "after the first, changes only"

    # Deltas applied in order give exactly the daemon's table.
    table: dict[int, Proc] = {}
    for d in [first, *later]:
        apply(table, d)
    seen: list[Sample] = []
    resp = peer.response(peer.request("processes"), seen=seen)
    for s in seen:
        if s.procs is not None:
            apply(table, s.procs)
    result: ProcTable = decode_result(resp, ProcTable)
    assert {p.pid: p for p in result.procs} == table
    assert os.getpid() in table
    me = table[os.getpid()]
    assert me.ppid == os.getppid()
    assert me.user == psutil.Process().username()
    assert peer.close() == 0


def _samples_within(peer: Peer, seconds: float) -> list[Sample]:
    """The samples ``peer`` gets in a window of ``seconds`` (other notifications skipped)."""
    got: list[Sample] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = peer._lines.get(timeout=left)
        except queue.Empty:
            break
        msg = decode(line, notifications=True, requests=False)
        if isinstance(msg, Notification) and msg.method == "sample":
            got.append(msg.params)
    return got


def test_the_first_client_gets_the_process_table_without_waiting_a_tick(
    agent_home: Path, peers: list[Peer]
) -> None:
    # A tick of 60 s: the console's first screen (its process rows) must not wait for the
    # next one. The daemon ticks at once for the first client of a daemon without a table.
    # Started without start_daemon's probe: that probe is a client too, and would take the
    # early tick (one an interval) before the attach comes.
    proc = subprocess.Popen(
        agent("daemon", "--interval", "60", "--proc-interval", "60"),
        env=agent_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(default_paths().socket.exists, TIMEOUT, "the daemon's socket")
        peer = attach(peers)
        hello, history = greet(peer)
        assert hello.pid == proc.pid
        first = peer.notification("sample", timeout=30)
        assert first.procs is not None and first.procs.full
        assert {proc.pid, peer.proc.pid} <= pids(first.procs.upsert)
        assert first.seq == history.samples[-1].seq + 1, "the next sample, none skipped"
        assert len(history.samples) <= 2, "an early tick for the first client, not a burst"
        # A second client of a daemon that holds a table does not make it tick again: a
        # quiet window (a tick would come within it), then the first's stream is still quiet.
        other = attach(peers)
        greet(other)
        assert _samples_within(other, 2.0) == []
        assert _samples_within(peer, 0.1) == []
        assert peer.close() == 0 and other.close() == 0
    finally:
        end(proc)


def test_a_process_whose_argv_is_not_utf8_is_shown_and_the_daemon_lives(
    fast_daemon: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    # Any user may name a process with bytes that do not decode; the OS hands them over
    # as lone surrogates, which no JSON encoder takes: unmended, the pass died, and with
    # it the daemon, at every start.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", b"\xff\xfeX"])
    try:
        peer = attach(peers)
        greet(peer)
        deadline = time.monotonic() + TIMEOUT
        row = None
        table: dict[int, Proc] = {}
        while row is None and time.monotonic() < deadline:
            s = peer.notification("sample")
            if s.procs is not None:
                apply(table, s.procs)
                row = table.get(child.pid)
        assert row is not None, "the process never showed"
        assert row.cmd.endswith("\ufffd\ufffdX"), row.cmd
        assert fast_daemon.poll() is None, "the daemon died"
        later = peer.notification("sample")
        assert later.seq > s.seq
        assert peer.close() == 0
    finally:
        child.kill()
        child.wait()


def test_calls_errors_and_malformed_lines(
    fast_daemon: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    peer = attach(peers)
    greet(peer)

    ok = peer.call("handshake", Handshake(protocol=PROTOCOL_VERSION, client="test"))
    assert decode_result(ok, HandshakeResult) == HandshakeResult(
        protocol=PROTOCOL_VERSION, agent_version=__version__
    )

    bad = peer.call("handshake", {"protocol": PROTOCOL_VERSION + 98, "client": "test"})
    assert bad.result is None and bad.error is not None
    assert bad.error.code == VERSION_ERROR
    assert f"protocol {PROTOCOL_VERSION + 98}" in bad.error.message
    assert f"speaks {PROTOCOL_VERSION}" in bad.error.message

    unknown = peer.call("frobnicate")
    assert unknown.error is not None and unknown.error.code == METHOD_NOT_FOUND
    assert "frobnicate" in unknown.error.message

    rid = peer.request("ping", rid="a-string-id")
    pong = peer.response(rid)
    assert abs(decode_result(pong, Pong).t - time.time()) < 5

    malformed = [
        b"{not json\n",
        b"[1, 2, 3]\n",
        b'{"jsonrpc":"1.0","id":1,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","method":"ping","params":{}}\n',  # a notification from the console
        b'{"jsonrpc":"2.0","id":8,"method":"ping","surprise":true}\n',
        b"\xff\xfe garbage\n",
        b"x" * (MAX_LINE_BYTES + 1000) + b"\n",  # over the line limit: refused, skipped whole
    ]
    for line in malformed:
        peer.send(line)
        err = peer.response(None)
        assert err.error is not None and err.error.code == INVALID_REQUEST, line[:60]
        assert err.result is None
        # The connection stays usable after each one.
        assert peer.call("ping").result is not None, line[:60]

    # Strict params: refused under the call's own id, so the caller is not left waiting.
    peer.send(b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"extra":1}}\n')
    err = peer.response(7)
    assert err.error is not None and err.error.code == INVALID_PARAMS
    assert "extra" in err.error.message

    peer.send(b"\n   \n")  # blank lines are not messages: no answer, no error
    assert decode_result(peer.call("ping"), Pong)
    assert peer.proc.poll() is None
    assert peer.close() == 0


# ================================================================== one daemon, private


def test_a_second_daemon_refuses_to_start(
    fast_daemon: subprocess.Popen[bytes], agent_home: Path, peers: list[Peer]
) -> None:
    second = subprocess.run(
        agent("daemon", *FAST), env=agent_env(), capture_output=True, timeout=TIMEOUT, check=False
    )
    assert second.returncode == 1
    err = second.stderr.decode()
    assert "another llmaos-agent daemon holds" in err
    assert str(agent_home / "run" / "daemon.lock") in err
    # ...and leaves the running one alone: its endpoint still answers.
    assert fast_daemon.poll() is None
    assert (agent_home / "run" / "daemon.lock").read_text().strip() == str(fast_daemon.pid)
    peer = attach(peers, "--no-start")
    assert greet(peer)[0].pid == fast_daemon.pid
    assert peer.close() == 0


def test_endpoint_only_its_user_can_open(
    fast_daemon: subprocess.Popen[bytes], agent_home: Path
) -> None:
    run = agent_home / "run"
    st = (run / "agent.sock").lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_IMODE((agent_home / "state").stat().st_mode) == 0o700
    assert not (run / "endpoint.json").exists(), "no TCP port on Unix"
    listening = [
        c for c in psutil.Process(fast_daemon.pid).net_connections(kind="inet") if not c.raddr
    ]
    assert listening == [], "the daemon opens no network port"


# ================================================================== daemon gone, restarted, stopped


def test_daemon_killed_ends_attach_with_an_error(
    fast_daemon: subprocess.Popen[bytes], agent_home: Path, peers: list[Peer]
) -> None:
    peer = attach(peers)
    greet(peer)
    peer.notification("sample")
    os.kill(fast_daemon.pid, signal.SIGKILL)
    code = peer.proc.wait(TIMEOUT)
    assert code == EXIT_DAEMON_GONE != 0
    assert "daemon closed the connection" in peer.stderr()

    # Its socket is left behind, stale; the next attach starts a fresh daemon anyway.
    assert (agent_home / "run" / "agent.sock").exists()
    again = attach(peers)
    hello, _ = greet(again)
    assert hello.pid != fast_daemon.pid
    assert psutil.Process(hello.pid).is_running()
    assert again.close() == 0


def test_stop_then_a_new_daemon_sends_its_own_history(agent_home: Path, peers: list[Peer]) -> None:
    old = start_daemon(*FAST)
    new: subprocess.Popen[bytes] | None = None
    try:
        stop = subprocess.run(
            agent("stop"), env=agent_env(), capture_output=True, timeout=TIMEOUT, check=False
        )
        assert stop.returncode == 0, stop.stderr
        assert "daemon stopped" in stop.stdout.decode()
        # Once `stop` returns, the daemon is gone and so is its endpoint: no wait here.
        assert old.poll() == 0
        assert not (agent_home / "run" / "agent.sock").exists()
        assert agent_daemons(agent_home) == []
        again = subprocess.run(
            agent("stop"), env=agent_env(), capture_output=True, timeout=TIMEOUT, check=False
        )
        assert again.returncode == 1
        assert "no daemon is running" in again.stderr.decode()

        started = time.time()
        new = start_daemon(*FAST)
        time.sleep(0.5)  # samples at 0, 0.2 and 0.4 s
        peer = attach(peers)
        hello, history = greet(peer)
        assert hello.pid == new.pid
        seqs = [s.seq for s in history.samples]
        assert len(seqs) >= 2
        assert seqs == list(range(1, len(seqs) + 1)), "the new daemon's own ring, from 1"
        assert all(s.t >= started - 0.01 for s in history.samples)
        assert all(s.procs is None for s in history.samples), "history carries no processes"
        live = peer.notification("sample")
        assert live.seq > seqs[-1]
        assert peer.close() == 0
    finally:
        end(old)
        if new is not None:
            end(new)


# ================================================================== loopback TCP endpoint


def test_loopback_tcp_endpoint_needs_the_token(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch, peers: list[Peer]
) -> None:
    monkeypatch.setenv("LLMAOS_AGENT_ENDPOINT", "tcp")
    daemon = start_daemon(*FAST)
    try:
        run = agent_home / "run"
        assert not (run / "agent.sock").exists()
        ep = run / "endpoint.json"
        assert stat.S_IMODE(ep.stat().st_mode) == 0o600
        info = json.loads(ep.read_text())
        assert info["pid"] == daemon.pid
        port, token = int(info["port"]), str(info["token"])
        listening = [
            c.laddr
            for c in psutil.Process(daemon.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]

        peer = attach(peers, "--no-start")
        hello, _ = greet(peer)
        assert hello.pid == daemon.pid
        assert decode_result(peer.call("ping"), Pong)

        # A wrong token: closed at once, not a byte sent.
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(b"0" * len(token) + b"\n")
            assert _read_all(s) == b""
        # No token at all: nothing comes (the daemon speaks first only to those with it).
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.settimeout(0.5)
            with pytest.raises(TimeoutError):
                s.recv(1)
        # A JSON-RPC request instead of the token is not answered either.
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"processes","params":{}}\n')
            assert _read_all(s) == b""
        # The right token: hello.
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(token.encode() + b"\n")
            f = s.makefile("rb")
            msg = decode(f.readline(), notifications=True, requests=False)
            assert isinstance(msg, Notification) and msg.method == "hello"
            f.close()

        assert peer.close() == 0
        stop = subprocess.run(
            agent("stop"), env=agent_env(), capture_output=True, timeout=TIMEOUT, check=False
        )
        assert stop.returncode == 0, stop.stderr
        assert daemon.poll() == 0
        assert not ep.exists()
    finally:
        end(daemon)


def _read_all(s: socket.socket, timeout: float = TIMEOUT) -> bytes:
    s.settimeout(timeout)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


# ================================================================== a client that never reads


def test_a_client_that_never_reads_is_dropped(
    fast_daemon: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    daemon = psutil.Process(fast_daemon.pid)
    # How big one `processes` answer is here, to know how many make 40 MB.
    probe = attach(peers)
    greet(probe)
    size = len(msgspec.json.encode(decode_result(probe.call("processes"), ProcTable)))
    assert probe.close() == 0
    rss_before = daemon.memory_info().rss

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(TIMEOUT)
    s.connect(str(default_paths().socket))
    try:
        time.sleep(0.5)  # a process pass, so the daemon has the table at hand
        request = b'{"jsonrpc":"2.0","id":1,"method":"processes","params":{}}\n'
        # The daemon stops reading from a client whose answers pile up unread, so the
        # send blocks (a timeout) or ends when it hangs up (reset): both are fine.
        s.settimeout(2.0)
        with contextlib.suppress(OSError):
            s.sendall(request * ((40 << 20) // size + 1))
        # Without our reading a byte, the daemon hangs up once we have stalled for
        # STALL_S (and lets go of what it held).
        wait_for(lambda: _hung_up(s), STALL_S + TIMEOUT,
                 what="the daemon dropping a client that does not read")  # fmt: skip
        peak = daemon.memory_info().rss
    finally:
        s.close()
    assert peak - rss_before < 32 << 20, (rss_before, peak)
    # ...and goes on serving the others.
    peer = attach(peers)
    greet(peer)
    assert decode_result(peer.call("ping"), Pong)
    assert peer.close() == 0


def _hung_up(s: socket.socket) -> bool:
    """Whether the peer closed ``s``, seen without reading from it."""
    poller = select.poll()
    poller.register(s, select.POLLIN | getattr(select, "POLLRDHUP", 0))
    events = poller.poll(0)
    gone = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
    return any(ev & gone for _, ev in events)


# ================================================================== framing of client lines


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nbb\n"], [b"a\n", b"bb\n"]),
        ([b"a", b"b\nc", b"\n"], [b"ab\n", b"c\n"]),
        ([b"12345678\n", b"ok\n"], [b"12345678\n", b"ok\n"]),  # at the limit
        ([b"123456789\nok\n"], [None, b"ok\n"]),  # one over, in one chunk
        ([b"1234", b"56789012", b"345\nok\n"], [None, b"ok\n"]),  # over, across chunks
        ([b"123456789012", b"3456789012", b"\n", b"ok\n"], [None, b"ok\n"]),  # skipped whole
        ([b"x" * 20, b"\n" + b"y" * 20 + b"\n"], [None, None]),  # two long lines, two errors
        ([b"last"], [b"last"]),  # a last line without its newline
        ([b"x" * 20], [None]),
        ([], []),
    ],
)
async def test_lines_skip_an_overlong_line_whole(
    chunks: list[bytes], expected: list[bytes | None]
) -> None:
    from llmaos_agent.daemon_clients import read_lines

    reader = cast(asyncio.StreamReader, _Chunks(chunks))
    assert [line async for line in read_lines(reader, 9)] == expected


class _Chunks:
    """A reader whose reads return exactly the given chunks, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)

    async def read(self, n: int = -1) -> bytes:
        chunk = next(self._chunks, b"")
        assert n < 0 or len(chunk) <= n
        return chunk
