"""Test-only fault points: die at a named step of a multi-step operation.

The exactly-once promise of dispatch (a request is never run twice and never lost, at
whatever instant the daemon or a supervisor dies) is tested by killing the process at
each named step, not at random moments. ``LLMAOS_AGENT_FAULT=STEP`` in the environment
(set by tests only) makes :func:`point` kill the process there with SIGKILL, as the
kernel's OOM killer or ``kill -9`` would: no cleanup, no flush. Unset, it costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "LLMAOS_AGENT_FAULT"
ONCE_ENV = "LLMAOS_AGENT_FAULT_ONCE"
"""A path: when set, the fault fires only in the first process that creates that file (a
supervisor started again after the fault must get past the step)."""

DISPATCH_STEPS = ("dispatch.starting", "dispatch.spec", "dispatch.spawned", "dispatch.running")
"""The daemon's steps of starting a request, in order (see RequestQueue._start)."""
SUPERVISOR_STEPS = ("supervisor.locked", "supervisor.claimed", "supervisor.pid")
"""The supervisor's steps, in order (see supervisor.run)."""


def point(step: str) -> None:
    if os.environ.get(ENV) == step:
        once = os.environ.get(ONCE_ENV)
        if once:
            try:
                os.close(os.open(once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                return
        kill = getattr(signal, "SIGKILL", None)
        if kill is None:  # Windows: no SIGKILL; an immediate exit is the nearest
            os._exit(137)
        os.kill(os.getpid(), kill)
