"""The small process that runs one request and writes down how it ended.

``python -m llmaos_agent.requests.supervisor DIR ATTEMPT``: takes ``DIR/lock`` (held for
its whole life), reads ``DIR/spec.json``, and runs it only when the spec is the one the
daemon wrote for that request and that attempt and nobody has claimed the attempt yet;
then writes ``DIR/claim`` (on disk before anything runs), pins itself (so the request
inherits its cores), sets its nice value, starts the request in a process group of its
own with output to ``DIR/out.log``, writes ``DIR/pid``, waits, and writes
``DIR/exit.json`` (atomically). The lock and the claim are what make a dispatch happen at
most once whatever instant the daemon dies: a second supervisor of the same request
gives up, and a daemon that finds an unclaimed attempt voids it under the lock before it
queues the request again. The daemon starts this in a new session, so a daemon that dies
(even by kill -9) or a console that goes away leaves it running; the next daemon adopts
it by reading those files. Hang-ups and terminal signals are ignored here: only the
request is ever signalled. Every file is opened without following links and only when it
is this user's (:func:`llmaos_agent.paths.open_file`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmaos_agent import faults
from llmaos_agent.paths import UnsafeFile, open_file, try_lock

EXIT_NOT_MINE = 3
"""Exit status of a supervisor that ran nothing: the attempt was voided, superseded,
claimed by another supervisor, or its directory or spec is not the daemon's."""
MAX_SPEC_BYTES = 4 << 20


def write_atomic(path: Path, data: dict[str, Any], *, sync: bool = True) -> None:
    """Replace ``path`` whole; with ``sync`` (exit status, pid) on disk before it returns."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a writer that died; O_EXCL below must not meet it
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path, limit: int = 1 << 16) -> dict[str, Any] | None:
    """A small JSON object file of ours; None when missing, unreadable, not ours or not an
    object (a half-written or planted file is no record)."""
    try:
        fd = open_file(path, os.O_RDONLY)
    except (OSError, UnsafeFile):
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def open_lock(d: Path) -> int:
    return open_file(d / "lock", os.O_RDWR | os.O_CREAT)


def _check_dir(d: Path) -> str:
    """Why ``d`` is not a request directory the daemon made for us ("" when it is)."""
    try:
        st = os.lstat(d)
    except OSError as exc:
        return f"cannot read {d}: {exc.strerror or exc}"
    if sys.platform == "win32":
        return ""
    if not os.path.isdir(d) or os.path.islink(d):
        return f"{d} is not a directory"
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return f"{d} is not a private directory of ours"
    return ""


def _identity(pid: int) -> dict[str, float | None]:
    """How the daemon knows ``pid`` again: its :meth:`~llmaos_agent.system.HostOS.stamp`
    (on Linux its start since boot, which no clock step moves) and its create time."""
    from llmaos_agent.system import Denied, Gone, host_os  # noqa: PLC0415 - after the lock

    hos = host_os()
    try:
        return {"stamp": hos.stamp(pid), "create_time": hos.create_time(pid)}
    except (Gone, Denied):
        return {"stamp": None, "create_time": None}


def _take(d: Path, attempt: int) -> tuple[int, dict[str, Any]] | None:
    """The request's lock and spec when this supervisor is the one to run ``attempt``;
    None (said on stderr) when it is not."""
    why = _check_dir(d)
    if why:
        print(f"llmaos-agent supervisor: {why}; running nothing", file=sys.stderr)
        return None
    lock = open_lock(d)
    if not try_lock(lock):
        print("llmaos-agent supervisor: another supervisor holds this request", file=sys.stderr)
        return None
    faults.point("supervisor.locked")
    spec = read_json(d / "spec.json", MAX_SPEC_BYTES)
    if spec is None or spec.get("id") != d.name or spec.get("attempt") != attempt:
        print(
            f"llmaos-agent supervisor: no spec for attempt {attempt} of {d.name} "
            "(voided or superseded); running nothing",
            file=sys.stderr,
        )
        return None
    claim = read_json(d / "claim")
    if claim is not None and claim.get("attempt") == attempt:
        # An earlier supervisor of this attempt claimed it and died: it may have started
        # the request, so this one must not (the daemon reports the attempt failed).
        print(f"llmaos-agent supervisor: attempt {attempt} was claimed before", file=sys.stderr)
        return None
    return lock, spec


def _settle_in(spec: dict[str, Any]) -> None:
    """Ignore hang-ups and terminal signals, and take the request's cores and nice value
    (which the request inherits)."""
    for name in ("SIGHUP", "SIGINT", "SIGTERM", "SIGQUIT"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    cores = spec.get("cores") or []
    if cores and sys.platform == "linux":
        os.sched_setaffinity(0, cores)
    nice = spec.get("nice")
    if nice is not None and sys.platform != "win32":
        # The daemon asks only for what it may; a race with a renice is harmless.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, int(nice))


def _popen_options() -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if sys.platform == "win32":
        kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        # Its own group: a cancel signals the request and what it started, not us.
        # Signals we ignore stay ignored across exec, so restore their defaults.
        def _child() -> None:
            os.setpgid(0, 0)
            for n in ("SIGHUP", "SIGINT", "SIGTERM", "SIGQUIT"):
                signal.signal(getattr(signal, n), signal.SIG_DFL)

        kw["preexec_fn"] = _child
    return kw


def _argv(spec: dict[str, Any]) -> list[str]:
    argv: list[str] = spec["argv"]
    if spec.get("shell"):
        shell = os.environ.get("COMSPEC", "cmd.exe") if sys.platform == "win32" else "/bin/sh"
        flag = "/c" if sys.platform == "win32" else "-c"
        argv = [shell, flag, argv[0], *argv[1:]]
    return argv


def run(d: Path, attempt: int) -> int:
    taken = _take(d, attempt)
    if taken is None:
        return EXIT_NOT_MINE
    lock, spec = taken
    me = {"attempt": attempt, "pid": os.getpid(), **_identity(os.getpid())}
    write_atomic(d / "claim", me)
    faults.point("supervisor.claimed")
    _settle_in(spec)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # ours, for finding this module; not the request's
    env.pop(faults.ENV, None)
    env.update(spec.get("env") or {})
    argv = _argv(spec)
    started = time.time()
    out_fd = open_file(d / "out.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(out_fd, "ab", buffering=0) as out:
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=spec.get("cwd") or None,
                env=env,
                **_popen_options(),
            )
        except OSError as exc:
            out.write(f"llmaos-agent: cannot start {argv[0]!r}: {exc.strerror or exc}\n".encode())
            write_atomic(
                d / "exit.json",
                {
                    "attempt": attempt,
                    "code": 127,
                    "ended": time.time(),
                    "error": f"cannot start: {exc.strerror or exc}",
                },
            )
            return 0
        write_atomic(
            d / "pid",
            {"attempt": attempt, "pid": child.pid, **_identity(child.pid), "started": started},
        )
        faults.point("supervisor.pid")
        code = child.wait()
    write_atomic(d / "exit.json", {"attempt": attempt, "code": code, "ended": time.time()})
    os.close(lock)
    return 0


def main() -> int:
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        print("usage: python -m llmaos_agent.requests.supervisor DIR ATTEMPT", file=sys.stderr)
        return 2
    return run(Path(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    sys.exit(main())
