"""A CPU cgroup with a high weight for the test's own busy processes.

On a shared CI machine other jobs compete for the cores. The balancing tests cannot make
the others' work go away, but they can give their own hogs a guaranteed share of the
cores they run on, so the hogs show up busy at once and keep their load where they are
pinned (or moved) whatever else runs there: cgroup v1 ``cpu.shares`` (every other
process here sits in the root group at 1024 per process) or cgroup v2 ``cpu.weight``.

Only the test's own processes are put in the group; nothing else on the machine is
touched. Without root or a CPU controller :func:`weighted` gives ``None`` and the hogs
run unweighted (the tests' assertions are relative to the loads measured, so they still
hold, only the hogs' share is smaller).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
SHARES = 4096
"""Four times a default process's weight: enough to hold a core against a few other
jobs, not so much that the test's own console and agent starve beside the hogs."""

_seq = itertools.count()


@dataclass(frozen=True)
class Group:
    path: Path
    root: Path  # where the processes go back to

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")


def _v1_root() -> Path | None:
    return V1 if (V1 / "cpu.shares").exists() else None


def _v2_root() -> Path | None:
    try:
        ok = "cpu" in (V2 / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return V2 if ok else None


@contextlib.contextmanager
def weighted(shares: int = SHARES) -> Iterator[Group | None]:
    """A fresh CPU cgroup with weight ``shares`` (v1 units; 1024 is a default process), or
    None where none can be made. Its processes go back to the root group and the group
    is removed after."""
    root = _v1_root()
    knob, value = "cpu.shares", str(shares)
    if root is None:
        root = _v2_root()
        knob, value = "cpu.weight", str(max(1, min(10000, shares * 100 // 1024)))
    if root is None or os.geteuid() != 0:
        yield None
        return
    path = root / f"llmaos-test-{os.getpid()}-{next(_seq)}"
    try:
        path.mkdir()
        (path / knob).write_text(value)
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        yield None
        return
    group = Group(path, root)
    try:
        yield group
    finally:
        _remove(group)


def _remove(group: Group) -> None:
    with contextlib.suppress(OSError):
        for pid in (group.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (group.root / "cgroup.procs").write_text(f"{pid}\n")
    with contextlib.suppress(OSError):
        group.path.rmdir()
