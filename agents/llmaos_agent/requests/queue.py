"""The host's request queue: submit, schedule, supervise, re-prioritise, hold, cancel, adopt.

Owned by the daemon, which calls :meth:`RequestQueue.tick` once a sample with the
cores' loads and the GPUs. State lives in :mod:`store` (SQLite) and, per request,
in ``requests/<id>/`` (spec, output, pid and exit status, written by the
supervisor), so a restarted daemon loses nothing: queued requests stay queued,
running ones are re-adopted (supervisor pid and start time checked), and the exit
status of those that ended meanwhile is read from their ``exit.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from llmaos_agent.protocol import LogChunk, RequestInfo, RequestSpec
from llmaos_agent.requests import scheduler
from llmaos_agent.requests.scheduler import Gpu, Pending, Resources
from llmaos_agent.requests.store import Row, Store
from llmaos_agent.requests.supervisor import write_atomic

CREATE_TIME_SLACK = 0.05
LOAD_SMOOTHING = 0.3
"""Weight of the newest sample in the cores' smoothed load (about 3 samples' memory)."""
RECENT_FINISHED = 200
REDISPATCH_S = 10.0
"""Longest time between two passes over an unchanged queue (aging reorders it slowly)."""
"""Finished requests a new client is sent (all are kept in the database)."""


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
    # imports the same code whether the agent is installed or pushed as a .pyz.
    return str(Path(__file__).resolve().parent.parent.parent)


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
        self.dir = state_dir / "requests"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = Store(state_dir / "requests.sqlite")
        self.slots_per_core = slots_per_core
        self.aging_s = aging_s
        self.grace_s = grace_s
        self.on_change = on_change
        self.cores = psutil.cpu_count() or 1
        self.mem_total = psutil.virtual_memory().total
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
            state=row.state,  # type: ignore[arg-type]
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
        rows, total = self.store.query(states, limit)
        return [self.info(r) for r in rows], total

    def snapshot(self) -> list[RequestInfo]:
        """What a new client is sent: every active request and the recently finished."""
        rows = self.store.active() + self.store.recent_finished(RECENT_FINISHED)
        return [self.info(r) for r in rows]

    def _row(self, rid: str) -> Row:
        row = self.store.get(rid)
        if row is None:
            raise NotFound(f"no request {rid!r} on this host")
        return row

    def log(self, rid: str, offset: int, max_bytes: int) -> LogChunk:
        row = self._row(rid)
        path = self.dir / rid / "out.log"
        data = b""
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
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
            running=row.state in ("running", "queued", "held"),
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
        if row.state not in ("queued", "held", "running"):
            raise QueueError(f"request {rid} has ended ({row.state}); its priority is history")
        before = f"priority {row.priority}"
        new = row.with_(priority=priority)
        if row.state == "running":
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
        if row.state != "running":
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
        with self.store.tx():
            self.store.delete(rid)
        shutil.rmtree(self.dir / rid, ignore_errors=True)
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

    def tick(self) -> None:
        """Reap what ended, escalate cancels, then start what fits. Cheap when idle.

        The queue is read and ordered only when something changed (a submit, a new
        priority, a release, a request that ended), when the head waits for memory
        (which comes and goes), or every ``REDISPATCH_S`` (aging reorders slowly):
        a thousand waiting requests must not cost a thousand rows a second.
        """
        now = time.time()
        for r in self.store.by_state("running"):
            self._poll(r, now)
        for rid, child in list(self._children.items()):
            if child.poll() is not None:  # reap the supervisor: no zombies
                del self._children[rid]
        if self._queue_changed or self._memory_wait or now - self._last_dispatch >= REDISPATCH_S:
            self._queue_changed = False
            self._last_dispatch = now
            queued = self.store.by_state("queued")
            if queued:
                self._dispatch(queued, self.store.by_state("running"), now)
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
            mem_available=psutil.virtual_memory().available,
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
        d = self.dir / row.id
        d.mkdir(mode=0o700, exist_ok=True)
        for stale in ("pid", "exit.json"):  # a request moved back here starts afresh
            (d / stale).unlink(missing_ok=True)
        nice, why_nice = self._allowed_nice(scheduler.nice_for(row.priority))
        env: dict[str, str] = {"LLMAOS_REQUEST_ID": row.id}
        if where.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(where.gpus)
        elif row.gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""  # asked for no GPU: gets none
        cores = where.cores if hasattr(os, "sched_setaffinity") else []
        write_atomic(
            d / "spec.json",
            {"argv": row.argv, "shell": row.shell, "cwd": row.cwd, "env": env,
             "cores": cores, "nice": nice},
            sync=False,  # read by the supervisor at once; the database row is the record
        )  # fmt: skip
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
            child = subprocess.Popen(
                [sys.executable, "-m", "llmaos_agent.requests.supervisor", str(d)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(d / "supervisor.log", "ab"),  # noqa: SIM115 - the child keeps it
                env=penv,
                close_fds=True,
                **kw,
            )
        except OSError as exc:
            self._set_row(
                row.with_(state="failed", ended=now, reason=f"cannot start the supervisor: {exc}")
            )
            return
        self._children[row.id] = child
        sup_ct = None
        with contextlib.suppress(psutil.Error):
            sup_ct = psutil.Process(child.pid).create_time()
        reason = where.reason + (f"; {why_nice}" if why_nice else "")
        self._set_row(
            row.with_(
                state="running", started=now, sup_pid=child.pid, sup_ct=sup_ct,
                cores=cores, gpu_uuids=where.gpus, nice=nice, reason=reason,
            )
        )  # fmt: skip

    def _allowed_nice(self, want: int) -> tuple[int, str]:
        if _privileged():
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
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.nice(want)
                done += 1
        if procs and not done:
            # An unprivileged user cannot lower a nice value once raised: it keeps its own.
            note = f"nice kept at {row.nice}: {why or 'refused by the OS'}"
            return row.with_(reason=note)
        return row.with_(nice=want, reason=why or row.reason)

    def _procs_of(self, row: Row) -> list[psutil.Process]:
        """The request's processes: its child and everything under it (not the supervisor)."""
        if row.pid is None:
            return []
        try:
            p = psutil.Process(row.pid)
            if row.pid_ct is not None and abs(p.create_time() - row.pid_ct) > CREATE_TIME_SLACK:
                return []
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return []

    def _signal(self, row: Row, sig: int) -> None:
        if row.pid is None:
            return  # not started yet: the next tick signals it once its pid is known
        procs = self._procs_of(row)
        if not procs:
            return
        if sys.platform == "win32":
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.kill() if sig == getattr(signal, "SIGKILL", 9) else p.terminate()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(row.pid, sig)

    # ------------------------------------------------------------ supervision

    def _poll(self, row: Row, now: float) -> None:
        d = self.dir / row.id
        if row.pid is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                info = json.loads((d / "pid").read_text())
                row = self._set_row(row.with_(pid=int(info["pid"]), pid_ct=info.get("create_time")))
                if row.cancel_at is not None:
                    self._signal(row, signal.SIGTERM)
        try:
            ended = json.loads((d / "exit.json").read_text())
        except (FileNotFoundError, ValueError):
            ended = None
        if ended is not None:
            self._finish(row, ended)
            return
        if not self._supervisor_alive(row):
            # Look once more: it may have written the file between our two reads.
            if (d / "exit.json").exists():
                with contextlib.suppress(ValueError, OSError):
                    self._finish(row, json.loads((d / "exit.json").read_text()))
                    return
            self._set_row(
                row.with_(
                    state="failed", ended=now,
                    reason="its supervisor vanished without an exit status (host reboot?)",
                )
            )  # fmt: skip
            return
        if row.cancel_at is not None and now - row.cancel_at > self.grace_s:
            self._signal(row, getattr(signal, "SIGKILL", signal.SIGTERM))

    def _supervisor_alive(self, row: Row) -> bool:
        child = self._children.get(row.id)
        if child is not None:
            return child.poll() is None
        if row.sup_pid is None:
            return False
        try:
            p = psutil.Process(row.sup_pid)
            if row.sup_ct is not None and abs(p.create_time() - row.sup_ct) > CREATE_TIME_SLACK:
                return False  # the pid was reused: ours is gone
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _finish(self, row: Row, ended: dict[str, Any]) -> None:
        code = int(ended.get("code", -1))
        if row.cancel_at is not None:
            state, why = "cancelled", f"cancelled by the operator (exit {code})"
        elif code == 0:
            state, why = "done", "exit 0"
        else:
            state, why = "failed", ended.get("error") or f"exit {code}"
        self._set_row(
            row.with_(state=state, exit_code=code, ended=float(ended.get("ended", time.time())),
                      reason=str(why))
        )  # fmt: skip

    def adopt(self) -> None:
        """At start: running requests whose supervisor lives on stay running; the exit
        status of those that ended while no daemon watched is read now."""
        now = time.time()
        for r in self.store.active():
            if r.state == "running":
                self._poll(r, now)
        self._changed.clear()
