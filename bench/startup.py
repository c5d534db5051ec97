"""Console start-up: time from launching ``llmaos-tui`` to its first full screen.

Runs the installed ``llmaos-tui`` (no configuration, this machine only) in a private
tmux server and polls the screen every 10 ms until the host screen shows one core bar
per logical core, the memory line and at least 5 process rows (a screen a user can read;
issue 12); btop is started the same way, side by side in the same run, until
its first frame shows its CPU box, as the baseline. Each is started ``--runs`` times
(alternating) with a private HOME and agent home, so nothing of the user's is read and
each llmaos-tui run starts its agent daemon from cold (the worst case).

    python bench/startup.py [--runs 5] [--baseline DIR]

``--baseline DIR`` also times the console of another checkout (say ``git archive`` of an
earlier commit unpacked in DIR), run with that checkout first on ``PYTHONPATH``, in the
same runs and in turn with the others: a before/after pair measured under the same load.

Each run also reports the CPU time (user + system) the program had used when its screen
became readable, read from the tmux pane's process: on a shared machine the wall time
moves with the load, its own CPU much less, so a before/after difference shows there first.

Targets: the console starts in under 2 s (issue 2); <= 0.5 s median to 5 process rows
(issue 12).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

SIZE = ("160", "45")
BAR = re.compile(r"(?<![\w.])(\d+) [─█▏▎▍▌▋▊▉]+ +\d+%")  # as tests/test_e2e_tmux.py reads it


BASELINE_MAIN = (
    "import runpy, sys; sys.path.pop(0); "
    "runpy.run_module('llmaos_tui', run_name='__main__', alter_sys=True)"
)
"""The baseline's console as ``-m llmaos_tui`` runs it, minus the working directory that
``-c`` puts first on ``sys.path``."""


def _tmux(sock: str, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-S", sock, *args], capture_output=True, text=True, check=False, timeout=10
    ).stdout


def _time_to(sock: str, argv: list[str], env: dict[str, str], ready: Callable[[str], bool],
             timeout: float = 20.0) -> tuple[float | None, float | None]:  # fmt: skip
    """Seconds to a ``ready`` screen, and the CPU seconds the program had used by then."""
    cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
    t0 = time.monotonic()
    subprocess.run(
        ["tmux", "-S", sock, "new-session", "-d", "-x", SIZE[0], "-y", SIZE[1], "-s", "b", *cmd],
        check=True, timeout=10,
    )  # fmt: skip
    screen = ""
    try:
        while time.monotonic() - t0 < timeout:
            screen = _tmux(sock, "capture-pane", "-p", "-t", "b")
            if ready(screen):
                wall = time.monotonic() - t0
                return wall, _pane_cpu(sock)
            time.sleep(0.01)
        print(f"{argv[0]}: not ready after {timeout} s; its screen:\n{screen}", file=sys.stderr)
        return None, None
    finally:
        _tmux(sock, "kill-session", "-t", "b")


def _pane_cpu(sock: str) -> float | None:
    """User + system CPU seconds of the pane's process (``env`` execs the program)."""
    try:
        pid = int(_tmux(sock, "display-message", "-p", "-t", "b", "#{pane_pid}").strip())
        t = psutil.Process(pid).cpu_times()
    except (ValueError, psutil.Error):
        return None
    return t.user + t.system


PROC_ROW = re.compile(r"^\s*\d+\s+\S+\s+\d+(\.\d+)?\s")  # PID USER CPU% ...


def _proc_rows(screen: str) -> int:
    """Process rows drawn under the table's header (PID USER CPU% ...)."""
    lines = screen.splitlines()
    head = next((i for i, ln in enumerate(lines) if re.search(r"\bPID\s+USER\b", ln)), None)
    if head is None:
        return 0
    return sum(1 for ln in lines[head + 1 :] if PROC_ROW.match(ln))


def _ready_checks(cores: int) -> tuple[Callable[[str], bool], Callable[[str], bool]]:
    def tui_ready(screen: str) -> bool:
        # A screen a user can read (issue 12): a bar per core ("N ███  42%"), the memory
        # line, and at least 5 rows of the process table under its header.
        bars = {int(m.group(1)) for m in BAR.finditer(screen)}
        return bars == set(range(cores)) and "Mem" in screen and _proc_rows(screen) >= 5

    def btop_ready(screen: str) -> bool:
        return "cpu" in screen.lower() and "mem" in screen.lower()

    return tui_ready, btop_ready


def _one_run(i: int, tmp: Path, sock: str, tui: str, baseline: Path | None,
             results: dict[str, list[float | None]],
             cpu: dict[str, list[float | None]]) -> None:  # fmt: skip
    """Run ``i``: each console once, a cold agent daemon each, the first in turn."""
    home = tmp / f"home{i}"
    home.mkdir()
    env = {"HOME": str(home), "TERM": "xterm-256color", "PATH": os.environ["PATH"],
           "LANG": "C.UTF-8", "LLMAOS_AGENT_HOME": str(tmp / f"agent{i}")}  # fmt: skip
    tui_ready, btop_ready = _ready_checks(os.cpu_count() or 1)
    order = [("llmaos-tui", [tui], env, tui_ready)]
    if shutil.which("btop") is not None:
        order.append(("btop", ["btop", "--utf-force"], env, btop_ready))
    envs = [env]
    if baseline is not None:
        root = baseline.resolve()
        base_env = {**env, "LLMAOS_AGENT_HOME": str(tmp / f"base-agent{i}"),
                    "PYTHONPATH": f"{root}{os.pathsep}{root / 'agents'}"}  # fmt: skip
        # Not "-m": it puts the working directory first on sys.path, and run from the repo
        # root the "baseline" was this checkout's llmaos_tui (PYTHONPATH comes after it).
        # ("-P" would do, from Python 3.11 on; the project supports 3.10.)
        argv = [sys.executable, "-c", BASELINE_MAIN]
        order.append(("baseline", argv, base_env, tui_ready))
        envs.append(base_env)
    shift = i % len(order)
    for name, argv, run_env, ready in order[shift:] + order[:shift]:
        wall, used = _time_to(sock, argv, run_env, ready)
        results[name].append(wall)
        cpu[name].append(used)
    for run_env in envs:
        subprocess.run(
            [sys.executable, "-m", "llmaos_agent", "stop"], env={**os.environ, **run_env},
            capture_output=True, check=False, timeout=20,
        )  # fmt: skip


def _report(results: dict[str, list[float | None]], cpu: dict[str, list[float | None]],
            out: Path) -> None:  # fmt: skip
    summary: dict[str, dict[str, object]] = {}
    for name, ts in results.items():
        ok = [t for t in ts if t is not None]
        used = [c for c in cpu[name] if c is not None]
        summary[name] = {
            "runs": [None if t is None else round(t, 3) for t in ts],
            "median_s": round(statistics.median(ok), 3) if ok else None,
            "max_s": round(max(ok), 3) if ok else None,
            "cpu_runs": [None if c is None else round(c, 3) for c in cpu[name]],
            "cpu_median_s": round(statistics.median(used), 3) if used else None,
        }
        print(f"{name:<11} median {summary[name]['median_s']} s, max {summary[name]['max_s']} s,"
              f" runs {summary[name]['runs']}; CPU median {summary[name]['cpu_median_s']} s,"
              f" runs {summary[name]['cpu_runs']}")  # fmt: skip
    b = summary.get("btop", {}).get("median_s")
    for name in ("llmaos-tui", "baseline"):
        t = summary.get(name, {}).get("median_s")
        if isinstance(t, float) and isinstance(b, float) and b:
            print(f"{name} / btop: {t / b:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/results/startup.json"))
    ap.add_argument("--baseline", type=Path, help="a checkout whose console to time too")
    args = ap.parse_args()
    tui = shutil.which("llmaos-tui", path=str(Path(sys.executable).parent))
    if tui is None or shutil.which("tmux") is None:
        print("needs llmaos-tui (pip install .) and tmux", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="llmaos-startup-"))
    sock = str(tmp / "tmux.sock")
    results: dict[str, list[float | None]] = {"llmaos-tui": [], "btop": []}
    if args.baseline:
        results["baseline"] = []
    cpu: dict[str, list[float | None]] = {name: [] for name in results}
    load = os.getloadavg()[0]
    # A session that stays: a server left without sessions exits, and a new-session sent
    # while it does fails ("server exited unexpectedly").
    subprocess.run(["tmux", "-S", sock, "new-session", "-d", "-s", "keep"], check=True, timeout=10)
    try:
        for i in range(args.runs):
            _one_run(i, tmp, sock, tui, args.baseline, results, cpu)
    finally:
        _tmux(sock, "kill-server")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average (1 min) {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    _report(results, cpu, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
