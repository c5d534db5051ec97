"""The small process that runs one request and writes down how it ended.

``python -m llmaos_agent.requests.supervisor DIR``: reads ``DIR/spec.json``, pins
itself (so the request inherits its cores), sets its nice value, starts the request
in a process group of its own with output to ``DIR/out.log``, writes ``DIR/pid``,
waits, and writes ``DIR/exit.json`` (atomically). The daemon starts it in a new
session, so a daemon that dies (even by kill -9) or a console that goes away leaves
it running; the next daemon adopts it by reading those files. Hang-ups and
terminal signals are ignored here: only the request is ever signalled.
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


def write_atomic(path: Path, data: dict[str, Any], *, sync: bool = True) -> None:
    """Replace ``path`` whole; with ``sync`` (exit status, pid) on disk before it returns."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _create_time(pid: int) -> float | None:
    try:
        import psutil  # noqa: PLC0415 - only here, after the request started

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def run(d: Path) -> int:
    spec = json.loads((d / "spec.json").read_text(encoding="utf-8"))
    for name in ("SIGHUP", "SIGINT", "SIGTERM", "SIGQUIT"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    cores = spec.get("cores") or []
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    nice = spec.get("nice")
    if nice is not None and hasattr(os, "setpriority"):
        # The daemon asks only for what it may; a race with a renice is harmless.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, int(nice))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # ours, for finding this module; not the request's
    env.update(spec.get("env") or {})
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
    argv = spec["argv"]
    started = time.time()
    with open(d / "out.log", "ab", buffering=0) as out:
        try:
            if spec.get("shell"):
                shell = (
                    os.environ.get("COMSPEC", "cmd.exe") if sys.platform == "win32" else "/bin/sh"
                )
                flag = "/c" if sys.platform == "win32" else "-c"
                argv = [shell, flag, argv[0], *argv[1:]]
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=spec.get("cwd") or None,
                env=env,
                **kw,
            )
        except OSError as exc:
            out.write(f"llmaos-agent: cannot start {argv[0]!r}: {exc.strerror or exc}\n".encode())
            write_atomic(
                d / "exit.json",
                {
                    "code": 127,
                    "ended": time.time(),
                    "error": f"cannot start: {exc.strerror or exc}",
                },
            )
            return 0
        write_atomic(
            d / "pid",
            {"pid": child.pid, "create_time": _create_time(child.pid), "started": started},
        )
        code = child.wait()
    write_atomic(d / "exit.json", {"code": code, "ended": time.time()})
    return 0


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m llmaos_agent.requests.supervisor DIR", file=sys.stderr)
        return 2
    return run(Path(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(main())
