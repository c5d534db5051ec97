"""The host's audit fails closed and names who asked; a read-only daemon starts nothing; a
queue DB that cannot be opened leaves the daemon serving without a queue.

Real conditions: an immutable audit file (``chattr +i``; a directory in its place where the
filesystem has no such flag), a full filesystem (a small tmpfs as the state directory,
filled until ENOSPC), a garbage queue DB.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from llmaos_agent.protocol import (
    PROTOCOL_VERSION,
    READ_ONLY_ERROR,
    REFUSED,
    RequestList,
    RequestSpec,
    decode_result,
)
from llmaos_agent.requests.queue import RequestQueue
from tests.conftest import need
from tests.test_daemon import FAST, Peer, end, greet, start_daemon, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files and sockets")


@pytest.fixture
def peer(agent_home: Path) -> Iterator[tuple[subprocess.Popen[bytes], Peer]]:
    daemon = start_daemon(*FAST, "--aging", "3600")
    p = Peer("--no-start")
    try:
        greet(p)
        ok = p.call("handshake", {"protocol": PROTOCOL_VERSION, "client": "test",
                                  "operator": "mallory@console"})  # fmt: skip
        assert ok.error is None
        yield daemon, p
    finally:
        p.kill()
        end(daemon)


def _audit(home: Path) -> list[dict[str, Any]]:
    path = home / "state" / "audit.log"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _renice(p: Peer, proc: psutil.Process, nice: int) -> Any:
    return p.call("proc.renice", {"pid": proc.pid, "create_time": proc.create_time(), "nice": nice})


def _submit(p: Peer) -> Any:
    return p.call("requests.submit", {"argv": ["true"], "hold": True, "name": "audited"})


def _total(p: Peer) -> int:
    listed: RequestList = decode_result(p.call("requests.list"), RequestList)
    return listed.total or len(listed.requests)


@contextlib.contextmanager
def _unwritable(audit: Path) -> Iterator[str]:
    """The audit file made unwritable for real: immutable where the filesystem allows it,
    else a directory in its place. Yields how."""
    audit.touch(mode=0o600)
    if os.geteuid() == 0 and shutil.which("chattr"):
        made = subprocess.run(["chattr", "+i", str(audit)], capture_output=True, check=False)
        if made.returncode == 0:
            try:
                yield "immutable"
            finally:
                subprocess.run(["chattr", "-i", str(audit)], check=False)
            return
    saved = audit.read_bytes()
    audit.unlink()
    audit.mkdir(mode=0o700)
    try:
        yield "a directory"
    finally:
        audit.rmdir()
        audit.write_bytes(saved)
        audit.chmod(0o600)


def test_a_change_whose_audit_cannot_be_written_is_not_made(
    peer: tuple[subprocess.Popen[bytes], Peer], agent_home: Path, sleeper: psutil.Process
) -> None:
    daemon, p = peer
    before = _total(p)
    with _unwritable(agent_home / "state" / "audit.log"):
        r = _renice(p, sleeper, 7)
        assert r.error is not None and r.error.code == REFUSED
        assert "nothing was changed" in r.error.message and "audit log" in r.error.message
        assert sleeper.nice() == 0, "the process is as it was"
        s = _submit(p)
        assert s.error is not None and s.error.code == REFUSED
        assert "audit log" in s.error.message
        assert _total(p) == before, "the queue is as it was"
        bye = p.call("shutdown")
        assert bye.error is not None and bye.error.code == REFUSED
        assert daemon.poll() is None, "a shutdown that cannot be audited is not done"
    # Writable again: the same change is made and audited, with who asked.
    ok = _renice(p, sleeper, 7)
    assert ok.error is None, ok.error
    assert sleeper.nice() == 7
    line = next(a for a in reversed(_audit(agent_home)) if a["action"] == "proc.renice")
    assert line["result"] == "ok" and "7" in line["after"]
    me = pwd.getpwuid(os.getuid()).pw_name
    assert line["operator"] == me, "the authenticated identity (SO_PEERCRED)"
    assert line["uid"] == os.getuid()
    assert line["claimed"] == "mallory@console", "the console's claim, beside it"
    assert line["peer_pid"] == p.proc.pid, "the attach bridge"


def test_a_full_filesystem_refuses_changes(agent_home: Path, sleeper: psutil.Process) -> None:
    need(os.geteuid() == 0, "mounting a small tmpfs needs root")
    state = agent_home / "state"
    state.mkdir(mode=0o700)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state)],
        capture_output=True, check=False,
    )  # fmt: skip
    need(mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    daemon: subprocess.Popen[bytes] | None = None
    p: Peer | None = None
    try:
        daemon = start_daemon(*FAST)
        p = Peer("--no-start")
        greet(p)
        before = _total(p)
        filler = state / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):  # until ENOSPC
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        r = _renice(p, sleeper, 5)
        assert r.error is not None and r.error.code == REFUSED, r
        assert "no space" in r.error.message.lower()
        assert sleeper.nice() == 0
        s = _submit(p)
        assert s.error is not None and s.error.code == REFUSED
        assert _total(p) == before
        # Room again: changes go through (the daemon notices on its next tick).
        filler.unlink()
        wait_for(lambda: _renice(p, sleeper, 5).error is None, what="a renice once there is room")
        assert sleeper.nice() == 5
        wait_for(lambda: any(a["action"] == "audit.resumed" for a in _audit(agent_home)),
                 what="the daemon noting that its audit log works again")  # fmt: skip
    finally:
        if p is not None:
            p.kill()
        if daemon is not None:
            end(daemon)
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_read_only_daemon_starts_nothing_and_refuses_shutdown(agent_home: Path) -> None:
    # A request queued while no daemon ran (the queue's own API: nothing dispatches it).
    q = RequestQueue(agent_home / "state")
    info = q.submit(RequestSpec(argv=["sleep", "30"], name="waits"), owner="test")
    q.close()
    daemon = start_daemon(*FAST, "--read-only")
    p = Peer("--no-start")
    try:
        hello, _ = greet(p)
        assert hello.caps.read_only
        for _ in range(5):  # a second of ticks
            p.notification("sample")
        got = p.call("requests.get", {"id": info.id})
        assert got.error is None and b'"state":"queued"' in bytes(got.result or b"")
        bye = p.call("shutdown")
        assert bye.error is not None and bye.error.code == READ_ONLY_ERROR
        # Still serving: the call after the refused shutdown is answered (calls are
        # answered in order, so a shutdown under way would have closed the session).
        again = p.call("requests.get", {"id": info.id})
        assert again.error is None and b'"state":"queued"' in bytes(again.result or b"")
        assert daemon.poll() is None, "still running"
        assert any(
            a["action"] == "shutdown" and a["result"] == "refused: read-only"
            for a in _audit(agent_home)
        )
    finally:
        p.kill()
        end(daemon)


def test_a_garbage_queue_db_leaves_the_daemon_serving_without_a_queue(agent_home: Path) -> None:
    state = agent_home / "state"
    state.mkdir(mode=0o700, parents=True)
    (state / "requests.sqlite").write_bytes(b"this is not a database\n" * 100)
    daemon = start_daemon(*FAST)
    p = Peer("--no-start")
    try:
        hello, _ = greet(p)
        assert hello.caps.queue is False
        assert hello.caps.queue_reason
        p.notification("sample")
        p.notification("sample")  # samples flow
        s = _submit(p)
        assert s.error is not None and s.error.code == REFUSED
        assert s.error.message.startswith("the request queue is unavailable: ")
        assert hello.caps.queue_reason in s.error.message
        listed = p.call("requests.list")
        assert listed.error is not None and listed.error.code == REFUSED
        assert p.call("ping").error is None
        assert daemon.poll() is None
    finally:
        p.kill()
        end(daemon)


# ------------------------------------------------------------------ the console's log


async def test_console_plan_step_whose_audit_cannot_be_written_is_not_started(
    tmp_path: Path, sleeper: psutil.Process
) -> None:
    from llmaos_tui.balance.model import Move
    from llmaos_tui.ops.audit import AuditLog, AuditUnavailable
    from llmaos_tui.ops.rebalance import apply_move

    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, identity_for=lambda host: f"ops@{host}")
    audit.append(action="test", host="a", target="t", result="ok")
    assert audit.read()[0]["identity"] == "ops@a", "the SSH login used for the host"
    asked: list[str] = []

    def caller_for(host: str) -> Any:
        async def call(method: str, params: Any) -> Any:
            asked.append(method)  # a tripwire: no call may be sent
            raise AssertionError("a step was started")

        return call

    m = Move(unit=f"a/pid{sleeper.pid}@{sleeper.create_time()}", src="a/cpu0", dst="a/cpu1",
             load=0.5, gain=0.1, beta_after=0.0, reason="test")  # fmt: skip
    with _unwritable(path) as how:
        with pytest.raises(AuditUnavailable):
            audit.check()
        with pytest.raises(AuditUnavailable):
            audit.append(action="test", host="a", target="t", result="ok")
        out = await apply_move(m, caller_for, audit=audit, read_only=False)
    assert not out.ok and out.message.startswith("not started: "), (how, out)
    assert "audit log" in out.message
    assert asked == []
