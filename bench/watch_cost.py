"""The cost of watching one host: the console's CPU seconds a minute and its RSS.

Runs the installed ``llmaos-tui`` in a private tmux server showing one host's screen,
sampled at 1 Hz, and reads the console process's own CPU time (utime + stime of
/proc/PID/stat, which counts all its threads and none of its children, so the agent
daemon of the local case is left out) over a window of ``--seconds`` after a warm-up;
RSS is VmRSS (and VmHWM, its peak) at the end. btop runs in the same tmux server at the
same size, side by side for the same window, at 1 Hz (``update_ms = 1000`` in a private
config), as the baseline; the ratio printed is console / btop.

The hosts watched:

- ``big``: a 64-core, 8-GPU host, played back at 1 Hz with ``--replay`` (the product's
  recorded-stream link). The recording is made here, long enough for the run, from
  tests/data/recorded_stream.ndjson widened by tests/data/make_big_recordings.py: a
  sample a second, new per-core loads and GPU figures every sample, and process-table
  changes every 2 s (the agent's default proc interval), the recorded ones in turn.
- ``local``: this machine (its own agent daemon, from cold, in a private agent home).

Each case runs with a private HOME, so nothing of the user's is read or written.

    python bench/watch_cost.py [--seconds 60] [--size 120x40 --size 200x60] [--hosts big,local]

Target (issue 12): <= 1.5 CPU s/min at 1 Hz on the 64-core 8-GPU host screen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.data import make_big_recordings as big  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 8.0
"""Seconds from start to the window: the first frame drawn, the history replayed."""
BTOP_CONF = 'update_ms = 1000\nproc_tree = False\nshown_boxes = "cpu mem net proc"\n'


def long_recording(seconds: int, protocol: int, cores: int = 64, gpus: int = 8) -> str:
    """An agent stream of ``seconds`` samples, one a second, of a ``cores``-core
    ``gpus``-GPU host: the recorded stream's hello and history, then its samples in
    turn (fresh seq and time), with the full process table first and then the recorded
    process changes every second sample, as an agent with proc_interval 2 s sends."""
    lines = [json.loads(ln) for ln in big.SOURCE.read_text().splitlines() if ln.strip()]
    hello = next(m for m in lines if m.get("method") == "hello")
    # The protocol of the console measured: the recording plays a current agent.
    hello["params"] = dict(hello["params"], protocol=protocol, interval=1.0, proc_interval=2.0)
    history = next(m for m in lines if m.get("method") == "history")
    samples = [m["params"] for m in lines if m.get("method") == "sample"]
    full = next(s["procs"] for s in samples if s.get("procs", {}).get("full"))
    deltas = [s["procs"] for s in samples if s.get("procs") and not s["procs"]["full"]]
    last = samples[-1]
    out = [hello, history]
    t0, seq0 = last["t"] + 1.0, last["seq"] + 1
    for k in range(seconds):
        s = dict(samples[k % len(samples)], t=round(t0 + k, 3), seq=seq0 + k)
        s.pop("procs", None)
        if k == 0:
            s["procs"] = full
        elif k % 2 == 0:
            s["procs"] = deltas[(k // 2) % len(deltas)]
        out.append({"jsonrpc": "2.0", "method": "sample", "params": s})
    text = "\n".join(json.dumps(m, separators=(",", ":")) for m in out)
    wide = [json.loads(ln) for ln in big.convert(text.splitlines(), cores, gpus).splitlines()]
    for m in wide:
        if m.get("method") == "hello":  # convert stamps this process's; the tree's is wanted
            m["params"]["protocol"] = protocol
        if m.get("method") == "sample":
            _move_gpus(m["params"])
    return "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in wide)


def _move_gpus(s: dict[str, Any]) -> None:
    # The recorded stand-in GPUs hold still; a busy 8-GPU box's figures move every second.
    for g in s["gpus"]:
        if g.get("util") is not None:
            g["util"] = round(((g["index"] * 29 + s["seq"] * 7) % 100) / 100, 2)
        if g.get("mem_used") is not None and g.get("mem_total"):
            frac = ((g["index"] * 17 + s["seq"] * 3) % 90 + 5) / 100
            g["mem_used"] = int(g["mem_total"] * frac)


class Tmux:
    def __init__(self, tmp: Path) -> None:
        self.sock = str(tmp / "tmux.sock")
        self.conf = tmp / "tmux.conf"
        self.conf.write_text("set -g status off\nset -g remain-on-exit on\n")

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.sock, "-f", str(self.conf), *args],
            capture_output=True, text=True, check=False, timeout=10,
        ).stdout  # fmt: skip

    def start(self, name: str, argv: list[str], env: dict[str, str], size: tuple[int, int]) -> int:
        cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
        self("new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), *cmd)
        return int(self("display-message", "-p", "-t", name, "#{pane_pid}").strip())

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)


def cpu_s(pid: int) -> float:
    # Fields after the command's closing paren: utime and stime are 14 and 15 overall.
    stat = Path(f"/proc/{pid}/stat").read_text()
    f = stat[stat.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / CLK


def rss_mb(pid: int) -> tuple[float, float]:
    kb = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            kb[k] = int(v.split()[0])
    return kb.get("VmRSS", 0) / 1024, kb.get("VmHWM", 0) / 1024


def measure(tmux: Tmux, pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU s/min of each pid over the same ``seconds`` window, and RSS at its end."""
    a = {n: cpu_s(p) for n, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    b = {n: cpu_s(p) for n, p in pids.items()}
    dt = time.monotonic() - t0
    out = {}
    for n, p in pids.items():
        rss, hwm = rss_mb(p)
        per_min = (b[n] - a[n]) * 60 / dt
        out[n] = {"cpu_s_per_min": round(per_min, 3), "core_pct": round(per_min / 0.6, 2),
                  "rss_mb": round(rss, 1), "peak_rss_mb": round(hwm, 1)}  # fmt: skip
    return out


def protocol_of(env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", "from llmaos_agent.protocol import PROTOCOL_VERSION as v; print(v)"],
        env=env, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return int(out.stdout)


def run_case(host: str, size: tuple[int, int], seconds: float, tmp: Path, tui: str,
             profile: Path | None, tree: Path | None) -> dict[str, Any]:  # fmt: skip
    case = tmp / f"{host}-{size[0]}x{size[1]}"
    home = case / "home"
    (home / ".config" / "btop").mkdir(parents=True)
    (home / ".config" / "btop" / "btop.conf").write_text(BTOP_CONF)
    env = {"HOME": str(home), "TERM": "xterm-256color", "PATH": os.environ["PATH"],
           "LANG": "C.UTF-8", "LLMAOS_AGENT_HOME": str(case / "agent")}  # fmt: skip
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}:{tree / 'agents'}"
    if host == "big":
        rec = case / "host-64c-8g.ndjson"
        rec.write_text(long_recording(int(seconds + WARMUP_S + 30), protocol_of(env)))
        argv = [tui, "--no-local", "--replay", f"host-64c-8g={rec}"]
    else:
        argv = [tui]
    tmux = Tmux(case)
    try:
        pids = {"llmaos-tui": tmux.start("tui", argv, env, size)}
        if shutil.which("btop"):
            pids["btop"] = tmux.start("btop", ["btop", "--utf-force"], env, size)
        time.sleep(WARMUP_S)
        screen = tmux.screen("tui")
        want = ("64 cores", "GPU7") if host == "big" else (f"{os.cpu_count()} cores",)
        missing = [w for w in want if w not in screen]
        if missing:
            raise RuntimeError(f"{host}: the host screen is not up ({missing}):\n{screen}")
        spy = None
        if profile is not None:
            spy = threading.Thread(target=_py_spy, args=(pids["llmaos-tui"], seconds, profile))
            spy.start()
        figures = measure(tmux, pids, seconds)
        if spy is not None:
            spy.join()
        tail = tmux.screen("tui")
        if host == "big" and "64 cores" not in tail:
            raise RuntimeError(f"{host}: the host screen left during the window:\n{tail}")
        return {"host": host, "size": f"{size[0]}x{size[1]}", "seconds": seconds, **figures}
    finally:
        tmux("kill-server")
        if host == "local":
            subprocess.run([tui.replace("llmaos-tui", "llmaos-agent"), "stop"],
                           env={**os.environ, "LLMAOS_AGENT_HOME": env["LLMAOS_AGENT_HOME"]},
                           capture_output=True, check=False, timeout=20)  # fmt: skip


def _py_spy(pid: int, seconds: float, out: Path) -> None:
    spy = Path(sys.executable).parent / "py-spy"
    subprocess.run(
        [str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw",
         "-o", str(out), "--nonblocking"],
        capture_output=True, check=False, timeout=seconds + 60,
    )  # fmt: skip


def size_arg(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    try:
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want WIDTHxHEIGHT, e.g. 120x40") from None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Target: <= 1.5 CPU s/min on the big host."
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    ap.add_argument("--size", type=size_arg, action="append", metavar="WxH",
                    help="terminal size, repeatable (default 120x40)")  # fmt: skip
    ap.add_argument("--hosts", default="big,local", help="big, local or both (default both)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="also py-spy record the console (raw folded stacks) into DIR")  # fmt: skip
    ap.add_argument("--tree", type=Path, metavar="DIR",
                    help="run the console from this source tree (e.g. a `git archive` of a "
                    "commit) instead of the installed one's, to compare commits")  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "watch_cost.json")
    args = ap.parse_args()
    tui = shutil.which("llmaos-tui", path=str(Path(sys.executable).parent))
    if tui is None or shutil.which("tmux") is None:
        print("needs llmaos-tui (pip install .) and tmux", file=sys.stderr)
        return 2
    if shutil.which("btop") is None:
        print("btop not found: no baseline, console figures only", file=sys.stderr)
    sizes = args.size or [(120, 40)]
    tmp = Path(tempfile.mkdtemp(prefix="llmaos-watch-"))
    results = []
    try:
        for host in args.hosts.split(","):
            for size in sizes:
                prof = None
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    prof = args.profile / f"{host}-{size[0]}x{size[1]}.txt"
                r = run_case(host, size, args.seconds, tmp, tui, prof, args.tree)
                results.append(r)
                t, b = r["llmaos-tui"], r.get("btop")
                line = (f"{host:<5} {r['size']:>7}: llmaos-tui {t['cpu_s_per_min']:.2f} CPU s/min "
                        f"({t['core_pct']:.1f}% of a core), RSS {t['rss_mb']:.0f} MB "
                        f"(peak {t['peak_rss_mb']:.0f})")  # fmt: skip
                if b:
                    ratio = t["cpu_s_per_min"] / b["cpu_s_per_min"] if b["cpu_s_per_min"] else 0
                    r["ratio"] = round(ratio, 2)
                    line += (f"; btop {b['cpu_s_per_min']:.2f} CPU s/min, RSS "
                             f"{b['rss_mb']:.0f} MB; ratio {ratio:.1f}x")  # fmt: skip
                print(line, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
