"""The host's request queue: submit, schedule, supervise, re-prioritise, hold, cancel, adopt.

Owned by the daemon, which calls :meth:`RequestQueue.tick` once a sample with the
cores' loads and the GPUs. State lives in :mod:`store` (SQLite) and, per request,
in ``requests/<id>/`` (spec, output, pid and exit status, written by the
supervisor), so a restarted daemon loses nothing: queued requests stay queued,
running ones are re-adopted (supervisor pid and start time checked), and the exit
status of those that ended meanwhile is read from their ``exit.json``.

Dispatch is exactly once whatever instant the daemon dies (:meth:`RequestQueue._start`):
the row is committed ``starting`` with a new attempt number before anything runs, and the
supervisor runs only that attempt, once, under the request's lock and after a durable
claim. A ``starting`` or ``running`` row with no claim and no live supervisor is voided
under the lock (its spec removed, so a late supervisor of it runs nothing) and queued
again; one with a claim is adopted. Request ids become directory names only through
:func:`llmaos_agent.paths.inside`.

Over 700 lines on purpose: one class whose methods share the exactly-once invariants (the
lock, the claim, the attempt number); split, each file would hold half of a proof.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmaos_agent import faults
from llmaos_agent.paths import (
    UnsafeDirectory,
    UnsafeFile,
    UnsafePath,
    inside,
    open_file,
    private_dir,
    try_lock,
)
from llmaos_agent.protocol import LogChunk, RequestInfo, RequestSpec
from llmaos_agent.requests import scheduler
from llmaos_agent.requests.scheduler import Gpu, Pending, Resources
from llmaos_agent.requests.store import Row, Store
from llmaos_agent.requests.supervisor import open_lock, read_json, write_atomic
from llmaos_agent.system import Denied, Gone, Target, host_os

LOAD_SMOOTHING = 0.3
"""Weight of the newest sample in the cores' smoothed load (about 3 samples' memory)."""
RECENT_FINISHED = 200
"""Finished requests a new client is sent (all are kept in the database)."""
REDISPATCH_S = 10.0
"""Longest time between two passes over an unchanged queue (aging reorders it slowly)."""
MAX_ATTEMPTS = 3
"""Dispatches of one request whose supervisor exits before claiming it, before the
request is failed (a supervisor that cannot start at all must not loop for ever)."""
STARTED = ("starting", "running")


class QueueError(Exception):
    """A request operation that cannot be done; nothing was changed."""


class NotFound(QueueError):
    pass


def new_id() -> str:
    # os.urandom, not secrets: secrets pulls hashlib and libcrypto into the daemon.
    return "r" + os.urandom(5).hex()


def _privileged() -> bool:
    return sys.platform == "win32" or os.geteuid() == 0


def _pythonpath() -> str:
    # The directory (or zipapp) this package was imported from, so the supervisor
    # imports the same code whether the agent is installed or pushed as a .pyz; and the
    # site-<tag> folders beside a pushed zipapp that its __main__ put on sys.path (psutil
    # pushed for macOS and Windows): without them the supervisor there cannot start.
    root = Path(__file__).resolve().parent.parent.parent
    sites = [
        p for p in sys.path if Path(p).parent == root.parent and Path(p).name.startswith("site-")
    ]
    return os.pathsep.join([str(root), *sites])


class RequestQueue:
    def __init__(
        self,
        state_dir: Path,
        *,
        slots_per_core: int = 1,
        aging_s: float = 60.0,
        grace_s: float = 10.0,
        on_change: Callable[[list[RequestInfo], list[str]], None] = lambda _u, _g: None,
    ) -> None:
        self.dir = private_dir(state_dir / "requests")
        self.store = Store(state_dir / "requests.sqlite")
        self.slots_per_core = slots_per_core
        self.aging_s = aging_s
        self.grace_s = grace_s
        self.on_change = on_change
        self.os = host_os()
        self.cores = self.os.cpu_count()
        self.mem_total = self.os.memory()[0]
        self.gpus: list[Gpu] = []
        self.core_loads: list[float] = [0.0] * self.cores
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._changed: dict[str, RequestInfo] = {}
        self._gone: list[str] = []
        self._queue_changed = True
        self._memory_wait = False
        self._last_dispatch = 0.0
        self.adopt()

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------- reading

    def info(self, row: Row) -> RequestInfo:
        return RequestInfo(
            id=row.id,
            name=row.name,
            argv=row.argv,
            shell=row.shell,
            priority=row.priority,
            cpus=row.cpus,
            gpus=row.gpus,
            share_gpu=row.share_gpu,
            mem=row.mem,
            state="running" if row.state == "starting" else row.state,  # type: ignore[arg-type]
            seq=row.seq,
            submitted=row.submitted,
            owner=row.owner,
            started=row.started,
            ended=row.ended,
            exit_code=row.exit_code,
            pid=row.pid,
            cores=row.cores,
            gpu_uuids=row.gpu_uuids,
            nice=row.nice,
            reason=row.reason[:4000],
        )

    def get(self, rid: str) -> RequestInfo:
        return self.info(self._row(rid))

    def query(self, states: list[str], limit: int) -> tuple[list[RequestInfo], int]:
        if "running" in states:
            states = [*states, "starting"]
        rows, total = self.store.query(states, limit)
        return [self.info(r) for r in rows], total

    def snapshot(self) -> list[RequestInfo]:
        """What a new client is sent: every active request and the recently finished."""
        rows = self.store.active() + self.store.recent_finished(RECENT_FINISHED)
        return [self.info(r) for r in rows]

    def _dir(self, rid: str) -> Path:
        try:
            return inside(self.dir, rid)
        except UnsafePath as exc:
            raise QueueError(str(exc)) from None

    def _row(self, rid: str) -> Row:
        self._dir(rid)  # an id that is no name is no request, whatever the database says
        row = self.store.get(rid)
        if row is None:
            raise NotFound(f"no request {rid!r} on this host")
        return row

    def log(self, rid: str, offset: int, max_bytes: int) -> LogChunk:
        row = self._row(rid)
        data = b""
        try:
            fd = open_file(self._dir(rid) / "out.log", os.O_RDONLY)
        except FileNotFoundError:
            pass
        except (OSError, UnsafeFile) as exc:
            raise QueueError(f"cannot read the log of {rid}: {exc}") from None
        else:
            with os.fdopen(fd, "rb") as f:
                f.seek(offset)
                data = f.read(max_bytes)
        # Cut at a character boundary so a multi-byte character is not split in two.
        text = data.decode("utf-8", errors="ignore")
        used = len(text.encode("utf-8"))
        if used < len(data) - 3:  # invalid bytes, not a cut character: keep them visible
            text, used = data.decode("utf-8", errors="replace"), len(data)
        return LogChunk(
            id=rid,
            offset=offset,
            next_offset=offset + used,
            data=text,
            running=row.state in ("running", "starting", "queued", "held"),
        )

    # ------------------------------------------------------------- changes

    def submit(self, spec: RequestSpec, owner: str = "") -> RequestInfo:
        if spec.shell and len(spec.argv) != 1:
            raise QueueError("with --shell, give the command as one string")
        p = Pending(
            id="", priority=spec.priority, seq=0, submitted=0.0, cpus=spec.cpus,
            gpus=spec.gpus, share_gpu=spec.share_gpu, mem=spec.mem,
        )  # fmt: skip
        why = scheduler.never_fits(
            p, self.cores, self.slots_per_core, len(self.gpus), self.mem_total
        )
        if why:
            raise QueueError(why)
        if spec.cwd is not None and not os.path.isdir(spec.cwd):
            raise QueueError(f"no directory {spec.cwd!r} on this host")
        rid = spec.id or new_id()
        self._dir(rid)
        with self.store.tx():
            if self.store.get(rid) is not None:
                raise QueueError(f"a request {rid!r} already exists on this host")
            row = Row(
                id=rid,
                seq=self.store.next_seq(),
                name=spec.name or os.path.basename(spec.argv[0])[:64],
                argv=list(spec.argv),
                shell=spec.shell,
                priority=spec.priority,
                cpus=spec.cpus,
                gpus=spec.gpus,
                share_gpu=spec.share_gpu,
                mem=spec.mem,
                cwd=spec.cwd,
                owner=owner,
                state="held" if spec.hold else "queued",
                submitted=time.time(),
                reason="held on arrival" if spec.hold else "",
            )
            self.store.insert(row)
        self._note(row)
        return self.info(row)

    def reprioritize(self, rid: str, priority: int) -> tuple[RequestInfo, str]:
        row = self._row(rid)
        if row.state not in ("queued", "held", *STARTED):
            raise QueueError(f"request {rid} has ended ({row.state}); its priority is history")
        before = f"priority {row.priority}"
        new = row.with_(priority=priority)
        if row.state in STARTED:
            new = self._renice_running(new)
        with self.store.tx():
            self.store.update(new)
        self._note(new)
        return self.info(new), before

    def hold(self, rid: str) -> RequestInfo:
        row = self._row(rid)
        if row.state != "queued":
            raise QueueError(f"only a queued request can be held; {rid} is {row.state}")
        return self._set(row.with_(state="held", reason="held by the operator"))

    def release(self, rid: str) -> RequestInfo:
        row = self._row(rid)
        if row.state != "held":
            raise QueueError(f"request {rid} is {row.state}, not held")
        return self._set(row.with_(state="queued", reason="released"))

    def top(self, rid: str) -> RequestInfo:
        """To the head of the queue, as Slurm's ``scontrol top``: the highest priority
        waiting, and ahead of every other request at that priority."""
        row = self._row(rid)
        if row.state not in ("queued", "held"):
            raise QueueError(f"request {rid} is {row.state}; only waiting requests move")
        now = time.time()
        waiting = [r for r in self.store.active() if r.state == "queued" and r.id != rid]
        best = max(
            (scheduler.effective_priority(self._pending(r), now, self.aging_s) for r in waiting),
            default=row.priority,
        )
        with self.store.tx():
            new = row.with_(
                priority=max(row.priority, min(1000, best)), seq=self.store.min_seq() - 1
            )
            self.store.update(new)
        self._note(new)
        return self.info(new)

    def cancel(self, rid: str) -> RequestInfo:
        row = self._row(rid)
        if row.state in ("queued", "held"):
            return self._set(
                row.with_(state="cancelled", ended=time.time(), reason="cancelled before it ran")
            )
        if row.state not in STARTED:
            raise QueueError(f"request {rid} has already ended ({row.state})")
        if row.cancel_at is None:
            row = self._set_row(row.with_(cancel_at=time.time(), reason="cancelling (SIGTERM)"))
        self._signal(row, signal.SIGTERM)
        return self.info(row)

    def withdraw(self, rid: str) -> RequestInfo:
        """Give a waiting request up (it moved to another host): gone from this queue."""
        row = self._row(rid)
        if row.state not in ("queued", "held"):
            raise QueueError(f"request {rid} is {row.state} here; it cannot be withdrawn")
        d = self._dir(rid)
        with self.store.tx():
            self.store.delete(rid)
        import shutil  # noqa: PLC0415 - shutil imports bz2 and lzma; only here, rarely

        shutil.rmtree(d, ignore_errors=True)
        self._gone.append(rid)
        self._changed.pop(rid, None)
        return self.info(row)

    def _set(self, row: Row) -> RequestInfo:
        return self.info(self._set_row(row))

    def _set_row(self, row: Row) -> Row:
        with self.store.tx():
            self.store.update(row)
        self._note(row)
        return row

    def _note(self, row: Row) -> None:
        self._changed[row.id] = self.info(row)
        self._queue_changed = True

    def flush(self) -> None:
        """Tell the daemon what changed since the last flush."""
        if self._changed or self._gone:
            changed, gone = list(self._changed.values()), self._gone
            self._changed, self._gone = {}, []
            self.on_change(changed, gone)

    # ---------------------------------------------------------- scheduling

    def update_resources(self, core_loads: list[float], gpus: list[tuple[str, float]]) -> None:
        if len(core_loads) == self.cores:
            # Smoothed (EWMA over a few samples): one noisy second should not decide
            # where a request runs for hours.
            a = LOAD_SMOOTHING
            self.core_loads = [
                a * new + (1 - a) * old
                for new, old in zip(core_loads, self.core_loads, strict=True)
            ]
        self.gpus = [Gpu(uuid=u, util=util) for u, util in gpus]

    def tick(self, *, start: bool = True) -> None:
        """Reap what ended, escalate cancels, then (with ``start``) start what fits. Cheap
        when idle. A read-only daemon, or one whose audit log cannot be written, passes
        ``start=False``: it still records what ended, and starts nothing.

        The queue is read and ordered only when something changed (a submit, a new
        priority, a release, a request that ended), when the head waits for memory
        (which comes and goes), or every ``REDISPATCH_S`` (aging reorders slowly):
        a thousand waiting requests must not cost a thousand rows a second.
        """
        now = time.time()
        for r in self.store.by_state(*STARTED):
            self._poll(r, now)
        for rid, child in list(self._children.items()):
            if child.poll() is not None:  # reap the supervisor: no zombies
                del self._children[rid]
        due = self._queue_changed or self._memory_wait or now - self._last_dispatch >= REDISPATCH_S
        if start and due:
            self._queue_changed = False
            self._last_dispatch = now
            queued = self.store.by_state("queued")
            if queued:
                self._dispatch(queued, self.store.by_state(*STARTED), now)
        self.flush()

    def _pending(self, r: Row) -> Pending:
        return Pending(
            id=r.id, priority=r.priority, seq=r.seq, submitted=r.submitted, cpus=r.cpus,
            gpus=r.gpus, share_gpu=r.share_gpu, mem=r.mem,
        )  # fmt: skip

    def _resources(self, running: list[Row]) -> Resources:
        res = Resources(
            core_loads=self.core_loads,
            slots_used=[0] * self.cores,
            slots_per_core=self.slots_per_core,
            gpus=[Gpu(g.uuid, g.util) for g in self.gpus],
            mem_available=self.os.memory()[1],
        )
        for r in running:
            for c in r.cores:
                if c < self.cores:
                    res.slots_used[c] += 1
            for g in res.gpus:
                if g.uuid in r.gpu_uuids:
                    if r.share_gpu:
                        g.shared += 1
                    else:
                        g.exclusive = True
        return res

    def _dispatch(self, queued: list[Row], running: list[Row], now: float) -> None:
        res = self._resources(running)
        rows = {r.id: r for r in queued}
        for p in scheduler.order([self._pending(r) for r in queued], now, self.aging_s):
            where = scheduler.place(p, res)
            row = rows[p.id]
            if isinstance(where, str):
                self._memory_wait = where.startswith("waits for memory")
                if row.reason != where:  # say why the head waits; the rest wait behind it
                    self._set_row(row.with_(reason=where))
                    self._queue_changed = False  # noting the reason is not a change to act on
                return
            self._memory_wait = False
            scheduler.claim(res, p, where)
            self._start(row, where, now)

    def _start(self, row: Row, where: scheduler.Placement, now: float) -> None:
        """Start ``row`` at most once, whatever instant this process dies (the steps are
        the named fault points): (1) ``starting`` with a new attempt is committed before
        anything runs; (2) the spec for that attempt is written; (3) the supervisor is
        started; (4) ``running`` is committed with its pid. The supervisor claims the
        attempt under the request's lock before it runs anything; :meth:`_settle` finds
        what a dead daemon left at any step and either adopts it or voids and requeues
        it, never starts it a second time."""
        d = self._dir(row.id)
        nice, why_nice = self._allowed_nice(scheduler.nice_for(row.priority))
        cores = where.cores if hasattr(os, "sched_setaffinity") else []
        attempt = row.attempt + 1
        reason = where.reason + (f"; {why_nice}" if why_nice else "")
        row = self._set_row(
            row.with_(
                state="starting", attempt=attempt, started=now, sup_pid=None, sup_ct=None,
                pid=None, pid_ct=None, cores=cores, gpu_uuids=where.gpus, nice=nice,
                reason=reason,
            )
        )  # fmt: skip
        faults.point("dispatch.starting")
        try:
            private_dir(d)
        except (OSError, UnsafeDirectory) as exc:
            self._set_row(row.with_(state="failed", ended=now, reason=f"cannot start it: {exc}"))
            return
        for stale in ("pid", "exit.json", "claim"):  # a request moved back here starts afresh
            (d / stale).unlink(missing_ok=True)
        env: dict[str, str] = {"LLMAOS_REQUEST_ID": row.id}
        if where.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(where.gpus)
        elif row.gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""  # asked for no GPU: gets none
        write_atomic(
            d / "spec.json",
            {"id": row.id, "attempt": attempt, "argv": row.argv, "shell": row.shell,
             "cwd": row.cwd, "env": env, "cores": cores, "nice": nice},
            sync=False,  # read by the supervisor at once; the database row is the record
        )  # fmt: skip
        faults.point("dispatch.spec")
        penv = dict(os.environ)
        penv["PYTHONPATH"] = _pythonpath()
        kw: dict[str, Any] = {}
        if sys.platform == "win32":
            kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(
                subprocess, "DETACHED_PROCESS", 0
            )
        else:
            kw["start_new_session"] = True
        try:
            log_fd = open_file(d / "supervisor.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                child = subprocess.Popen(
                    [sys.executable, "-m", "llmaos_agent.requests.supervisor", str(d),
                     str(attempt)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log_fd,
                    env=penv,
                    close_fds=True,
                    **kw,
                )  # fmt: skip
            finally:
                os.close(log_fd)
        except (OSError, UnsafeFile) as exc:
            self._set_row(
                row.with_(state="failed", ended=now, reason=f"cannot start the supervisor: {exc}")
            )
            return
        faults.point("dispatch.spawned")
        self._children[row.id] = child
        sup_ct = None
        with contextlib.suppress(Gone, Denied):
            sup_ct = self.os.stamp(child.pid)
        self._set_row(row.with_(state="running", sup_pid=child.pid, sup_ct=sup_ct))
        faults.point("dispatch.running")

    def _allowed_nice(self, want: int) -> tuple[int, str]:
        if sys.platform == "win32" or _privileged():
            return want, ""
        base = os.getpriority(os.PRIO_PROCESS, 0)
        if want >= base:
            return want, ""
        return base, f"nice {base}, not {want}: raising priority needs root"

    def _renice_running(self, row: Row) -> Row:
        want, why = self._allowed_nice(scheduler.nice_for(row.priority))
        if row.nice is not None and want < row.nice and not why and not _privileged():
            why = "raising priority needs root"
        procs = self._procs_of(row)
        done = 0
        for pid in procs:
            with contextlib.suppress(Gone, Denied):
                self.os.set_nice(pid, want)
                done += 1
        if procs and not done:
            # An unprivileged user cannot lower a nice value once raised: it keeps its own.
            note = f"nice kept at {row.nice}: {why or 'refused by the OS'}"
            return row.with_(reason=note)
        return row.with_(nice=want, reason=why or row.reason)

    def _request_runs(self, row: Row) -> bool:
        """Whether the request's own process (not the supervisor) is still there (a zombie
        too: its group may live on)."""
        if row.pid is None:
            return False
        if row.pid_ct is not None:
            return self.os.same(row.pid, row.pid_ct)
        try:
            self.os.status(row.pid)
        except (Gone, Denied):
            return False
        return True

    def _procs_of(self, row: Row) -> list[int]:
        """The request's processes: its child and everything under it (not the supervisor)."""
        if row.pid is None or not self._request_runs(row):
            return []
        try:
            return [row.pid, *self.os.children(row.pid)]
        except (Gone, Denied):
            return []

    def _signal(self, row: Row, sig: int) -> None:
        if row.pid is None:
            return  # not started yet: the next tick signals it once its pid is known
        if sys.platform == "win32":
            kill = sig == getattr(signal, "SIGKILL", 9)
            for pid in self._procs_of(row):
                with contextlib.suppress(Gone, Denied):
                    target = Target(pid, "", self.os.create_time(pid))
                    self.os.send_signal(target, "KILL" if kill else "TERM")
            return
        if not self._request_runs(row):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(row.pid, sig)

    # ------------------------------------------------------------ supervision

    def _poll(self, row: Row, now: float) -> None:
        d = self._dir(row.id)
        claim = read_json(d / "claim")
        if claim is None or claim.get("attempt") != row.attempt:
            self._settle(row, d, now)
            return
        row = self._adopt(row, d, claim)
        ended = self._exit_of(d, row)
        if ended is not None:
            self._finish(row, ended)
            return
        if not self._supervisor_alive(row):
            self._orphaned(row, d, now)
            return
        if row.cancel_at is not None and now - row.cancel_at > self.grace_s:
            self._signal(row, getattr(signal, "SIGKILL", signal.SIGTERM))

    def _adopt(self, row: Row, d: Path, claim: dict[str, Any]) -> Row:
        """``row`` with what its supervisor wrote down: itself (from its claim) and the
        request's pid once it is known."""
        if row.state == "starting" or row.sup_pid is None:
            # Started by a daemon that died before it wrote the supervisor down: adopt it.
            row = self._set_row(
                row.with_(state="running", sup_pid=_int(claim.get("pid")), sup_ct=_stamp(claim))
            )
        if row.pid is None:
            info = read_json(d / "pid")
            if info is not None and info.get("attempt") == row.attempt:
                row = self._set_row(row.with_(pid=_int(info.get("pid")), pid_ct=_stamp(info)))
                if row.cancel_at is not None:
                    self._signal(row, signal.SIGTERM)
        return row

    def _orphaned(self, row: Row, d: Path, now: float) -> None:
        """The supervisor is gone: the request ended (its exit status, if written at the
        last moment), runs on without it (watched here), or is lost."""
        # Look once more: it may have written the file between our two reads.
        ended = self._exit_of(d, row)
        if ended is not None:
            self._finish(row, ended)
            return
        if self._request_runs(row):
            # The request outlived its supervisor: watch it ourselves, and say so.
            note = "its supervisor died; the request runs on, watched by the daemon"
            if row.reason != note:
                self._set_row(row.with_(reason=note))
            return
        if row.reason.startswith("its supervisor died; the request runs on"):
            self._set_row(
                row.with_(state="failed", ended=now,
                          reason="ended after its supervisor died: exit status unknown")
            )  # fmt: skip
            return
        why = (
            "its supervisor vanished without an exit status (host reboot?)"
            if row.pid is not None
            else "its supervisor died after claiming it and before recording the "
            "request's pid: it may or may not have started, so it is not run again"
        )
        self._set_row(row.with_(state="failed", ended=now, reason=why))

    def _settle(self, row: Row, d: Path, now: float) -> None:
        """A dispatched attempt nobody has claimed (yet): wait while its supervisor may
        still claim it; otherwise void it under the request's lock, so no late supervisor
        of it can run, and queue the request again (or fail it after ``MAX_ATTEMPTS``
        supervisors of ours that gave up)."""
        child = self._children.get(row.id)
        if child is not None and child.poll() is None:
            return  # ours, still starting
        if child is None and self._supervisor_alive(row):
            return  # a dead daemon's, still starting
        try:
            lock = open_lock(d)
        except FileNotFoundError:
            lock = None  # the directory went with a dispatch that never got that far
        except (OSError, UnsafeFile) as exc:
            self._set_row(row.with_(state="failed", ended=now, reason=f"cannot settle: {exc}"))
            return
        try:
            if lock is not None and not try_lock(lock):
                return  # a supervisor holds it: it is about to claim, or it has
            claim = read_json(d / "claim")
            if claim is not None and claim.get("attempt") == row.attempt:
                return  # claimed meanwhile: the next poll adopts it
            with contextlib.suppress(FileNotFoundError):
                (d / "spec.json").unlink()  # voided: a supervisor of it now runs nothing
            if row.attempt >= MAX_ATTEMPTS:
                tail = _tail(d / "supervisor.log")
                self._set_row(
                    row.with_(state="failed", ended=now,
                              reason=f"dispatched {row.attempt} times and never started: {tail}")
                )  # fmt: skip
                return
            why = (
                "its supervisor exited before starting it; queued again"
                if child is not None
                else "the daemon stopped while starting it, before it ran; queued again"
            )
            self._set_row(
                row.with_(state="queued", started=None, sup_pid=None, sup_ct=None, pid=None,
                          pid_ct=None, cores=[], gpu_uuids=[], nice=None, reason=why)
            )  # fmt: skip
        finally:
            if lock is not None:
                os.close(lock)

    def _exit_of(self, d: Path, row: Row) -> dict[str, Any] | None:
        ended = read_json(d / "exit.json")
        return ended if ended is not None and ended.get("attempt") == row.attempt else None

    def _supervisor_alive(self, row: Row) -> bool:
        child = self._children.get(row.id)
        if child is not None:
            return child.poll() is None
        if row.sup_pid is None:
            return False
        # A pid reused by another process is not ours; a zombie has ended.
        return self.os.alive(row.sup_pid, row.sup_ct)

    def _finish(self, row: Row, ended: dict[str, Any]) -> None:
        code = _int(ended.get("code"), low=-(2**31))
        code = -1 if code is None else code
        if row.cancel_at is not None:
            state, why = "cancelled", f"cancelled by the operator (exit {code})"
        elif code == 0:
            state, why = "done", "exit 0"
        else:
            state, why = "failed", ended.get("error") or f"exit {code}"
        self._set_row(
            row.with_(state=state, exit_code=code, ended=_float(ended.get("ended")) or time.time(),
                      reason=str(why))
        )  # fmt: skip

    def adopt(self) -> None:
        """At start: running requests whose supervisor lives on stay running; the exit
        status of those that ended while no daemon watched is read now."""
        now = time.time()
        for r in self.store.active():
            if r.state in STARTED:
                self._poll(r, now)
        self._changed.clear()


def _int(v: object, low: int = 1) -> int | None:
    """An integer from a record file (``low`` or more), or None for anything else."""
    return v if isinstance(v, int) and not isinstance(v, bool) and low <= v < 2**31 else None


def _stamp(record: dict[str, Any]) -> float | None:
    """A process's identity in a supervisor's record: its stamp, or (a record of an older
    agent) its create time; :meth:`llmaos_agent.system.HostOS.same` takes either."""
    stamp = _float(record.get("stamp"))
    return stamp if stamp is not None else _float(record.get("create_time"))


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _tail(path: Path, limit: int = 400) -> str:
    try:
        fd = open_file(path, os.O_RDONLY)
    except (OSError, UnsafeFile):
        return "(no supervisor log)"
    with os.fdopen(fd, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
        return f.read().decode("utf-8", "replace").strip() or "(empty supervisor log)"
