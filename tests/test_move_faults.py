"""Container moves under faults, on real testbed hosts (issue 15): the promise is "moved and
verified, or the source running again as before", and what the result, the audit log and
the journal say must be what is true.

- the target's dockerd is killed during the volume copy: every stream is closed before the
  rollback starts the source, which runs again with its data, promptly (no 120 s wait on a
  stream left open); the result and the audit line say what was observed;
- a stalled target (its dockerd frozen mid-copy) does not grow the console: the copy is
  streamed through a bounded buffer;
- progress tells the truth: a failed copy never reports its whole size written.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from llmaos_tui.ops.container_move import Progress, recover_all
from tests.test_container_move import Env, _exec, _run, _running, env, tb

pytestmark = pytest.mark.integration
__all__ = ["env", "tb"]  # the testbed fixtures, shared with test_container_move

VOLUME_MB = 48


def _fill(env: Env, name: str, mb: int) -> str:
    """``mb`` MiB of random bytes in the container's /data; their md5."""
    _exec(env.d1, name, ["dd", "if=/dev/urandom", "of=/data/big.bin", "bs=1048576", f"count={mb}"])
    _exec(env.d1, name, ["sh", "-c", "echo precious > /data/state"])
    return _exec(env.d1, name, ["md5sum", "/data/big.bin"])


def test_target_engine_killed_during_volume_copy(env: Env) -> None:
    src = _run(
        env.d1, "vault", ["sleep", "1000"], volumes={"vaultdata": {"bind": "/data"}}, init=True
    )
    digest = _fill(env, "vault", VOLUME_MB)
    events: list[Progress] = []
    killed: list[int] = []

    def kill_target(p: Progress) -> None:
        events.append(p)
        if p.step == "copy" and p.state == "bytes" and not killed:
            env.tb.kill_dockerd(env.h2)
            killed.append(p.bytes)

    t0 = time.monotonic()
    res = env.mover().move("vault", progress=kill_target)
    took = time.monotonic() - t0

    assert killed, "the volume copy never started"
    assert took < 60, f"the move took {took:.0f} s to give up (a stream left open?)"
    # The source runs again, the same container, its data intact.
    assert _running(env.d1, "vault"), res.message
    assert env.d1.api.inspect_container("vault")["Id"] == src.id
    assert _exec(env.d1, "vault", ["md5sum", "/data/big.bin"]) == digest
    assert _exec(env.d1, "vault", ["cat", "/data/state"]) == "precious\n"
    # The target's engine is down: its leftovers cannot be cleared yet, and the result says
    # so (the journal keeps the move open for the next start to finish).
    assert res.outcome == "rolled_back", res.message
    assert "stays on host1 (running)" in res.message
    assert "copy:" in res.message  # the failed step and its error, not a guess
    assert "the console stopped" not in res.message
    assert "leftovers on host2 are not removed yet" in res.message
    # The copy's progress never claimed more than was written, and ended failed.
    copied = [e for e in events if e.step == "copy"]
    assert copied and copied[-1].state == "failed", [(e.state, e.bytes) for e in copied]
    assert all(e.state != "done" for e in copied)
    assert max(e.bytes for e in copied) < VOLUME_MB << 20
    # The audit line says what was observed after the rollback.
    (line,) = env.audit.read()
    assert line["after"]["host"] == "host1" and line["after"]["state"] == "running"
    assert line["after"]["id"] == src.id
    assert "copy:" in line["result"] and "console stopped" not in line["result"]

    # The target comes back; the next start clears what the move left there, and says why
    # the move was rolled back in the first place.
    env.tb.start_dockerd(env.h2)
    (again,) = recover_all(env.journal, env.audit, lambda name: env.engine(env.tb.host(name)))
    assert again.outcome == "rolled_back", again.message
    assert "console stopped" not in again.message and "copy:" in again.message
    assert env.journal.unfinished() == []
    assert not env.d2.api.containers(all=True)
    assert not env.d2.api.volumes()["Volumes"]
    assert _running(env.d1, "vault")
    assert _exec(env.d1, "vault", ["md5sum", "/data/big.bin"]) == digest


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def test_stalled_target_does_not_grow_the_console(env: Env) -> None:
    """The target's dockerd frozen (SIGSTOP) for a while mid-copy: the console holds a
    bounded buffer, not the archive; thawed, the move completes."""
    mb = 160
    _run(env.d1, "bulk", ["sleep", "1000"], volumes={"bulkdata": {"bind": "/data"}}, init=True)
    digest = _fill(env, "bulk", mb)
    pid = env.h2._dockerd.pid if env.h2._dockerd is not None else 0
    assert pid
    base = _rss_kib()
    peak = [base]
    frozen: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_kib())
            time.sleep(0.05)

    def freeze(p: Progress) -> None:
        if p.step == "copy" and p.state == "bytes" and not frozen:
            frozen.append(time.monotonic())
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(6.0, os.kill, (pid, signal.SIGCONT)).start()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        res = env.mover().move("bulk", progress=freeze)
    finally:
        stop.set()
        sampler.join()
        os.kill(pid, signal.SIGCONT)
    assert frozen, "the copy never started"
    assert res.outcome == "moved", res.message
    assert res.volume_bytes > mb << 20
    assert _exec(env.d2, "bulk", ["md5sum", "/data/big.bin"]) == digest
    grew = (peak[0] - base) >> 10
    assert grew < 64, f"the console grew {grew} MiB copying {mb} MiB past a stalled target"


def test_progress_of_a_copy_that_fails(env: Env) -> None:
    """Bytes reported are bytes written: a target that refuses the data mid-way shows the
    copy failed at what it got, not at 100%."""
    _run(env.d1, "half", ["sleep", "1000"], volumes={"halfdata": {"bind": "/data"}}, init=True)
    _fill(env, "half", 24)
    events: list[Progress] = []
    killed: list[int] = []

    def kill(p: Progress) -> None:
        events.append(p)
        if p.step == "copy" and p.state == "bytes" and p.bytes >= 4 << 20 and not killed:
            env.tb.kill_dockerd(env.h2)
            killed.append(p.bytes)

    res = env.mover().move("half", progress=kill)
    assert killed and res.outcome == "rolled_back", res.message
    states: dict[str, Any] = {}
    for e in events:
        states.setdefault(e.step, []).append(e.state)
    assert states["copy"][-1] == "failed" and "done" not in states["copy"]
    fail = next(e for e in events if e.step == "copy" and e.state == "failed")
    assert fail.bytes < 24 << 20 and fail.message
    assert _running(env.d1, "half")
