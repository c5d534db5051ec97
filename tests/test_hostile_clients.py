"""Hostile clients against the real daemon over its real socket: the others keep being served.

Liveness only, with bounds a busy test machine allows; the speed targets (sample gaps,
ping latency, memory) are measured by bench/hostile_clients.py (docs/BENCHMARKS.md).
"""

# ruff: noqa: F811 - peers and other_user are fixtures imported from other test modules

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmaos_agent.daemon_clients import MAX_CLIENTS, STALL_S
from llmaos_agent.paths import default_paths
from llmaos_agent.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    REFUSED,
    Pong,
    Response,
    decode_result,
)
from tests.test_daemon import (
    FAST,
    TIMEOUT,
    Peer,
    _hung_up,
    attach,
    end,
    greet,
    peers,  # noqa: F401 - the fixture
    start_daemon,
    wait_for,
)
from tests.users import User, other_user  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")


@pytest.fixture
def fast(agent_home: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_daemon(*FAST)
    try:
        yield proc
    finally:
        end(proc)


def _raw() -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(str(default_paths().socket))
    return s


def _call(method: str, rid: int, params: object = None) -> bytes:
    msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
    return json.dumps(msg).encode() + b"\n"


def _alive(peer: Peer, pings: int = 3) -> None:
    """The watching client gets samples and its pings answered (generous bounds)."""
    for _ in range(pings):
        peer.notification("sample", timeout=TIMEOUT)
        assert decode_result(peer.call("ping", timeout=TIMEOUT), Pong)


def test_a_watcher_is_served_while_40_clients_pipeline_and_never_read(
    fast: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    watcher = attach(peers)
    greet(watcher)
    flood = _call("processes", 1) * 400
    hostile = []
    try:
        for _ in range(40):
            s = _raw()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.send(flood)  # as much as the kernel takes; the daemon stops reading
            hostile.append(s)
        # While they sit there, the watcher keeps its samples and its answers.
        _alive(watcher, pings=5)
        # They are dropped once they have stalled; none holds the daemon's memory then.
        wait_for(lambda: all(_hung_up(s) for s in hostile), STALL_S + 3 * TIMEOUT,
                 what="the daemon dropping 40 clients that do not read")  # fmt: skip
    finally:
        for s in hostile:
            s.close()
    _alive(watcher)
    fresh = attach(peers)
    greet(fresh)
    assert decode_result(fresh.call("ping"), Pong)
    assert fresh.close() == 0
    assert watcher.close() == 0


def test_a_pipeline_of_5000_calls_then_close_leaves_others_served(
    fast: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    watcher = attach(peers)
    greet(watcher)
    s = _raw()
    with contextlib.suppress(OSError):
        s.sendall(b"".join(_call("processes", i) for i in range(5000)))
    s.close()
    _alive(watcher, pings=5)
    assert fast.poll() is None
    assert watcher.close() == 0


def test_one_client_over_the_connection_cap_is_told_why(
    fast: subprocess.Popen[bytes], peers: list[Peer]
) -> None:
    held = []
    try:
        for _ in range(MAX_CLIENTS):
            s = _raw()
            f = s.makefile("rb")
            assert b'"method":"hello"' in f.readline()  # served
            held.append((s, f))
        extra = _raw()
        f = extra.makefile("rb")
        first = json.loads(f.readline())
        assert first["error"]["code"] == REFUSED
        assert "too many clients" in first["error"]["message"]
        assert str(MAX_CLIENTS) in first["error"]["message"]
        assert f.readline() == b"", "closed after the refusal"
        f.close()
        extra.close()
        # One leaves: the next is served again.
        s, f = held.pop()
        f.close()
        s.close()

        def served() -> bool:
            with _raw() as again, again.makefile("rb") as g:
                return b'"method":"hello"' in g.readline()

        wait_for(served, what="a client served after one left")
    finally:
        for s, f in held:
            f.close()
            s.close()


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","id":5,"method":"ping","params":' + b"[" * 200_000 + b"}\n",
        b'{"jsonrpc":"2.0","id":5,"method":"ping","params":'
        + b'{"a":' * 100_000
        + b"1"
        + b"}" * 100_000
        + b"}\n",
        b"[" * 500_000 + b"]" * 500_000 + b"\n",
        b'{"jsonrpc":"2.0","id":5,"method":"requests.submit","params":{"argv":'
        + b"[" * 300_000
        + b"]" * 300_000
        + b"}}\n",
    ],
    ids=["params-open", "params-objects", "bare-array", "submit-argv"],
)
def test_deeply_nested_json_is_an_error_answer_and_the_connection_works(
    fast: subprocess.Popen[bytes], peers: list[Peer], line: bytes
) -> None:
    peer = attach(peers)
    greet(peer)
    peer.send(line)
    # Under the call's id (bad params) or none (not a message at all): either is an answer.
    deadline = time.monotonic() + TIMEOUT
    while not isinstance(err := peer.recv(max(0.01, deadline - time.monotonic())), Response):
        pass
    assert err.id in (None, 5)
    assert err.error is not None
    assert err.error.code in (INVALID_REQUEST, INVALID_PARAMS), err.error
    assert decode_result(peer.call("ping"), Pong)
    assert fast.poll() is None, "the daemon is alive"
    assert peer.close() == 0


def test_a_peer_of_another_uid_is_refused(
    fast: subprocess.Popen[bytes], agent_home: Path, other_user: User
) -> None:
    """The socket is 0600 in a 0700 directory; opened up by hand, the uid check still holds."""
    run = agent_home / "run"
    sock = run / "agent.sock"
    modes = [(p, p.stat().st_mode & 0o777) for p in (agent_home, run, sock)]
    try:
        agent_home.chmod(0o711)
        run.chmod(0o711)
        sock.chmod(0o666)
        probe = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            "s.settimeout(10)\n"
            f"s.connect({str(sock)!r})\n"
            "data=b''\n"
            "while True:\n"
            "    c=s.recv(65536)\n"
            "    if not c: break\n"
            "    data+=c\n"
            "sys.stdout.write(data.decode())\n"
        )
        out = other_user.run(["/usr/bin/python3", "-c", probe], timeout=TIMEOUT * 2)
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode()
        assert '"hello"' not in text, "nothing of the host is sent to another user"
        msg = json.loads(text.splitlines()[0])
        assert msg["error"]["code"] == REFUSED
        assert f"uid {other_user.uid}" in msg["error"]["message"]
        assert f"serves uid {os.getuid()}" in msg["error"]["message"]
    finally:
        for p, mode in modes:
            p.chmod(mode)
    audit = [json.loads(x) for x in (agent_home / "state" / "audit.log").read_text().splitlines()]
    refused = [a for a in audit if a["action"] == "connect"]
    assert refused and refused[-1]["uid"] == other_user.uid
    assert refused[-1]["operator"] == other_user.name
    assert refused[-1]["result"] == "refused: another user"
