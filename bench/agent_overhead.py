"""What the host agent costs, side by side with btop, htop and a bare psutil loop.

One run starts, concurrently (so the noise of a shared machine hits all alike):

* the ``llmaos-agent`` daemon (1 Hz, process table every 2 s) with one attached
  client: ``llmaos-agent attach`` fed and read by this script, as the console does;
* with ``--bare-agent``, a second daemon and bridge under a venv made from the system
  python3 with nothing but the standard library (no psutil, no msgspec), as the
  zero-install agent runs on a fresh host; issue 13's targets: its CPU <= btop's at
  btop's cadence (``--agent-proc-interval 1``), its peak RSS <= 15 MB;
* btop with ``update_ms = 1000`` in a detached tmux session of fixed size, under a
  private HOME so the user's configuration is never read or written;
* htop ``-d 10`` (1 s) the same way (optional, ``--no-htop``);
* a bare psutil loop in a subprocess sampling the fields the agent samples, with
  nothing else (no encoding, no sockets): the floor for a psutil-based agent, and how
  the agent read the table before it read /proc (as it still does off Linux);
* an informational row (``--no-direct`` leaves it out): the same loop reading the
  process table straight from ``/proc/PID/stat``, the floor for the agent's Linux
  collector (which reads ``statm`` too, and builds rows);
* with ``--compare-io``, a twin of each agent daemon (and its bridge) with
  ``LLMAOS_AGENT_IO=off``: no network, disk, temperature or per-process GPU figures (issue
  16's), so what they cost is read in the same run; issue 16's target: the agent's CPU
  against btop no more than 10% above its twin's.

After a warm-up it reads utime+stime (+ reaped children) from ``/proc/PID/stat``
at the start and the end of the window, and VmHWM from ``/proc/PID/status``.
``--procs N`` first starts N idle ``sleep`` processes so the cost of the process
table at scale shows.

    .venv/bin/python bench/agent_overhead.py [--seconds 60] [--procs 1000]
    .venv/bin/python bench/agent_overhead.py --bare-agent --agent-proc-interval 1 --procs 1000
    .venv/bin/python bench/agent_overhead.py --compare-io --bare-agent --no-htop

Linux only. Prints a table and writes JSON to bench/results/.

Over 700 lines on purpose: the harness starts, feeds and measures five kinds of process
side by side and must clean every one up on any exit; the probes and bare loops are in
bench/overhead_loops.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
from bench.overhead_loops import (  # noqa: E402
    CLK_TCK,
    alive,
    bare_loop,
    count_pids,
    cpu_ticks,
    status_kb,
)

TMUX_SIZE = (200, 50)
SEGMENT_S = 10
CPU_RATIO_TARGET = 1.5
RSS_TARGET_MB = 30.0
BARE_CPU_RATIO_TARGET = 1.0
BARE_RSS_TARGET_MB = 15.0
IO_COST_TARGET = 1.10
"""Issue 16: agent/btop with the new figures over agent/btop without, same run."""
IO_OFF_ENV = "LLMAOS_AGENT_IO"


# --------------------------------------------------------------------- the client


class StreamReader(threading.Thread):
    """Reads the attach bridge's stdout as the console would, counting what comes."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True, name="attach-reader")
        self.stream = stream
        self.lock = threading.Lock()
        self.lines = 0
        self.bytes = 0
        self.samples = 0
        self.proc_samples = 0
        self.hello: dict[str, Any] | None = None
        self.methods: dict[str, int] = {}
        self.hello_seen = threading.Event()
        self.first_sample = threading.Event()

    def run(self) -> None:
        for line in self.stream:
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {}
            method = msg.get("method") or ("response" if "id" in msg else "?")
            with self.lock:
                self.lines += 1
                self.bytes += len(line)
                self.methods[method] = self.methods.get(method, 0) + 1
                if method == "sample":
                    self.samples += 1
                    if "procs" in (msg.get("params") or {}):
                        self.proc_samples += 1
            if method == "hello":
                self.hello = msg.get("params")
                self.hello_seen.set()
            elif method == "sample":
                self.first_sample.set()

    def counters(self) -> dict[str, int]:
        with self.lock:
            return {
                "lines": self.lines,
                "bytes": self.bytes,
                "samples": self.samples,
                "proc_samples": self.proc_samples,
            }


# ------------------------------------------------------------------------ the run


@dataclass
class Target:
    key: str
    label: str
    pid: int
    note: str = ""
    informational: bool = False  # not a contender: a cost alongside one
    t0: tuple[int, int] = (0, 0)
    t1: tuple[int, int] = (0, 0)
    timeline: list[int] = field(default_factory=list)
    alive_at_end: bool = True

    def ticks(self) -> int:
        self_t, child_t = cpu_ticks(self.pid)
        return self_t + child_t


@dataclass
class Harness:
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sleepers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tmux_socket: Path | None = None
    panes: dict[str, int] = field(default_factory=dict)
    tmux_server: subprocess.Popen[bytes] | None = None
    attaches: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        assert self.tmux_socket is not None
        out = subprocess.run(
            ["tmux", "-f", "/dev/null", "-S", str(self.tmux_socket), *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()

    def cleanup(self) -> None:
        for attach in self.attaches:
            if attach.stdin is not None:
                with suppress(OSError):
                    attach.stdin.close()  # the bridge exits on stdin EOF
        self._stop_tmux()
        self._stop_procs()
        for p in self.sleepers:
            with suppress(OSError):
                p.kill()
        for p in self.sleepers:
            with suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _stop_tmux(self) -> None:
        if self.tmux_socket is None or not self.tmux_socket.exists():
            return
        # Sessions first, so the server reaps btop and htop before it goes.
        for name, pid in self.panes.items():
            with suppress(OSError, subprocess.SubprocessError):
                self.tmux("kill-session", "-t", name)
            with suppress(RuntimeError):
                wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 3, name)
        with suppress(OSError, subprocess.SubprocessError):
            self.tmux("kill-server")
        if self.tmux_server is not None:  # it reaps the server it forked: let it
            with suppress(subprocess.TimeoutExpired):
                self.tmux_server.wait(timeout=5)

    def _stop_procs(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                with suppress(OSError):
                    p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with suppress(OSError):
                    p.kill()
                with suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def start_sleepers(h: Harness, n: int) -> None:
    sleep = shutil.which("sleep") or "/bin/sleep"
    for _ in range(n):
        h.sleepers.append(
            subprocess.Popen(
                [sleep, "infinity"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )


def bare_python(tmp: Path) -> str:
    """A venv from the system python3 with nothing but the standard library, as a fresh
    server has it (the zero-install agent's host, issue 13)."""
    venv = tmp / "bare-venv"
    if (venv / "bin" / "python").exists():  # made for an earlier bare agent of this run
        return str(venv / "bin" / "python")
    for name in ("python3", "python3.13", "python3.12", "python3.11", "python3.10"):
        system = shutil.which(name, path="/usr/bin:/bin:/usr/local/bin")
        if system is None:
            continue
        probe = subprocess.run(
            [system, "-I", "-c", _BARE_PROBE], capture_output=True, text=True, check=False
        )
        if probe.stdout.strip() == "ok":
            subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
            return str(venv / "bin" / "python")
    raise SystemExit("agent_overhead: no system python3 >= 3.10 without psutil and msgspec")


_BARE_PROBE = (
    "import importlib.util as u, sys\n"
    "print('ok' if sys.version_info >= (3, 10) and not any("
    "u.find_spec(m) for m in ('psutil', 'msgspec')) else 'no')"
)


def start_agent(
    h: Harness,
    targets: list[Target],
    proc_interval: float | None,
    *,
    bare: bool = False,
    io: bool = True,
) -> StreamReader:
    """The daemon and an attach bridge fed as the console feeds it; ``bare``: both under a
    bare venv's python (no psutil, no msgspec), the agent from agents/ on PYTHONPATH;
    ``io=False``: with issue 16's figures off (``LLMAOS_AGENT_IO=off``)."""
    key = ("agent-bare" if bare else "agent") + ("" if io else "-noio")
    home = h.tmp / key
    home.mkdir(mode=0o700)
    env = {**os.environ, "LLMAOS_AGENT_HOME": str(home)}
    env.pop("LLMAOS_AGENT_ENDPOINT", None)
    env.pop(IO_OFF_ENV, None)
    if not io:
        env[IO_OFF_ENV] = "off"
    python = sys.executable
    if bare:
        python = bare_python(h.tmp)
        env["PYTHONPATH"] = str(ROOT / "agents")
    extra = [] if proc_interval is None else ["--proc-interval", str(proc_interval)]
    logpath = h.tmp / f"{key}.log"
    log = open(logpath, "ab")  # noqa: SIM115 - handed to the children
    try:
        daemon = h.start(
            [python, "-m", "llmaos_agent", "daemon", *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        sock = home / "run" / "agent.sock"
        wait_for(lambda: sock.exists() or daemon.poll() is not None, 20, "the agent's socket")
        if daemon.poll() is not None:
            raise RuntimeError(f"the agent daemon exited: {logpath.read_text()}")
        attach = h.start(
            [python, "-m", "llmaos_agent", "attach", "--no-start"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    finally:
        log.close()
    h.attaches.append(attach)
    assert attach.stdout is not None and attach.stdin is not None
    reader = StreamReader(attach.stdout)
    reader.start()
    # Say hello as the console does.
    from llmaos_agent.protocol import PROTOCOL_VERSION, Handshake, encode_request

    attach.stdin.write(
        encode_request(1, "handshake", Handshake(protocol=PROTOCOL_VERSION, client="bench"))
    )
    attach.stdin.flush()
    if not reader.hello_seen.wait(20) or not reader.first_sample.wait(20):
        raise RuntimeError(f"no hello/sample from the agent through attach: {logpath.read_text()}")
    hello_pid = (reader.hello or {}).get("pid")
    if hello_pid != daemon.pid:
        raise RuntimeError(f"attached to pid {hello_pid}, expected our daemon {daemon.pid}")
    what = "bare venv: stdlib only" if bare else "test venv: psutil, msgspec present"
    label = "llmaos-agent (bare)" if bare else "llmaos-agent daemon"
    if not io:
        what += f"; {IO_OFF_ENV}=off"
        label = "  bare, io off" if bare else "  agent, io off"
    targets.append(
        Target(
            key,
            label,
            daemon.pid,
            f"{what}; --proc-interval {proc_interval or 'default'}, 1 client",
        )
    )
    targets.append(
        Target(
            f"{key}-attach",
            "  its attach bridge",
            attach.pid,
            "stdio bridge, reported apart",
            informational=True,
        )
    )
    return reader


def start_tui(h: Harness, targets: list[Target], *, htop: bool) -> dict[str, str]:
    """btop (and htop) in detached tmux sessions of fixed size, with a private HOME."""
    home = h.tmp / "home"
    cfg = home / ".config"
    (cfg / "btop").mkdir(parents=True)
    (cfg / "htop").mkdir(parents=True)
    (cfg / "btop" / "btop.conf").write_text("update_ms = 1000\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TMUX")},
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(cfg),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": os.environ.get("TERM") or "xterm-256color",
    }
    h.tmux_socket = h.tmp / "tmux.sock"
    # A server of our own, not daemonised (-D: the client we start stays its parent
    # and reaps it); it never touches the user's tmux server or configuration.
    h.tmux_server = h.start(
        ["tmux", "-D", "-f", "/dev/null", "-S", str(h.tmux_socket)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(h.tmux_socket.exists, 10, "the tmux server")
    w, hh = (str(x) for x in TMUX_SIZE)
    tools = [("btop", ["btop", "--utf-force"])]
    if htop:
        tools.append(("htop", ["htop", "-d", "10"]))
    for name, argv in tools:
        h.tmux("new-session", "-d", "-s", name, "-x", w, "-y", hh, *argv, env=env)
    server = int(h.tmux("display-message", "-p", "-t", "btop", "#{pid}"))
    for name, _ in tools:
        pid = int(h.tmux("list-panes", "-t", name, "-F", "#{pane_pid}"))
        size = h.tmux("list-panes", "-t", name, "-F", "#{pane_width}x#{pane_height}")
        wait_for(lambda pid=pid: alive(pid), 5, name)
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        if comm != name:
            raise RuntimeError(f"tmux pane for {name} runs {comm!r}")
        h.panes[name] = pid
        note = "update_ms=1000" if name == "btop" else "-d 10"
        targets.append(Target(name, name, pid, f"{note}, tmux {size}"))
    targets.append(
        Target(
            "tmux",
            "tmux server",
            server,
            "the terminal btop/htop draw into",
            informational=True,
        )
    )
    return {"tmux_size": f"{w}x{hh}"}


def start_loops(h: Harness, targets: list[Target], *, direct: bool) -> None:
    kinds = [("psutil", "bare psutil loop", "same fields, no wire")]
    if direct:
        kinds.append(("direct", "direct /proc loop", "same fields from /proc/PID/stat"))
    for kind, label, note in kinds:
        p = h.start(
            [sys.executable, str(Path(__file__).resolve()), "--bare-loop", kind],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        targets.append(Target(kind, label, p.pid, note, informational=kind == "direct"))


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so cleanup in ``finally`` runs."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, prev in old.items():
            signal.signal(s, prev)


def measure(targets: list[Target], seconds: float, reader: StreamReader) -> dict[str, Any]:
    for t in targets:
        t.t0 = cpu_ticks(t.pid)
        t.timeline = [sum(t.t0)]
    c0 = reader.counters()
    start = time.monotonic()
    n = 0.0
    while n < seconds:
        n = min(n + 1, seconds)
        time.sleep(max(0.0, start + n - time.monotonic()))
        for t in targets:
            with suppress(OSError):
                t.timeline.append(t.ticks())
    elapsed = time.monotonic() - start
    for t in targets:
        t.alive_at_end = alive(t.pid)
        if t.alive_at_end:
            t.t1 = cpu_ticks(t.pid)
    c1 = reader.counters()
    return {"elapsed": elapsed, "stream": {k: c1[k] - c0[k] for k in c0}}


def segment_ratios(a: Target, b: Target, seconds: int = SEGMENT_S) -> list[float]:
    out = []
    for i in range(seconds, min(len(a.timeline), len(b.timeline)), seconds):
        da = a.timeline[i] - a.timeline[i - seconds]
        db = b.timeline[i] - b.timeline[i - seconds]
        if db > 0:
            out.append(round(da / db, 2))
    return out


def row(t: Target, elapsed: float) -> dict[str, Any]:
    r: dict[str, Any] = {
        "key": t.key,
        "label": t.label,
        "pid": t.pid,
        "note": t.note,
        "informational": t.informational,
        "alive_at_end": t.alive_at_end,
    }
    if not t.alive_at_end:
        return r
    self_s = (t.t1[0] - t.t0[0]) / CLK_TCK
    child_s = (t.t1[1] - t.t0[1]) / CLK_TCK
    mem = status_kb(t.pid, "VmHWM", "VmRSS")
    r.update(
        cpu_s=round(self_s + child_s, 3),
        cpu_children_s=round(child_s, 3),
        cpu_s_per_min=round((self_s + child_s) / elapsed * 60, 3),
        cpu_pct_of_core=round((self_s + child_s) / elapsed * 100, 2),
        peak_rss_mb=round(mem.get("VmHWM", 0) * 1024 / 1e6, 1),
        rss_mb=round(mem.get("VmRSS", 0) * 1024 / 1e6, 1),
    )
    return r


def ratio(rows: dict[str, dict[str, Any]], a: str, b: str) -> float | None:
    x = rows.get(a, {}).get("cpu_s_per_min")
    y = rows.get(b, {}).get("cpu_s_per_min")
    return round(x / y, 2) if x is not None and y else None


def print_table(res: dict[str, Any]) -> None:
    m = res["meta"]
    print(
        f"\nagent overhead: {m['seconds']:.0f} s window after {m['warmup']:.0f} s warm-up, "
        f"{m['cores']} cores, {m['pids_start']}->{m['pids_end']} pids"
        f" ({m['sleepers']} sleepers), load {m['loadavg_end']}"
    )
    head = f"{'process':<22} {'CPU s/min':>9} {'% core':>7} {'peak RSS MB':>11} {'RSS MB':>7}  note"
    print(head)
    print("-" * len(head))
    for r in res["rows"]:
        label = r["label"] + (" *" if r["informational"] else "")
        if not r["alive_at_end"]:
            print(f"{label:<22} {'died during the run':>38}  {r['note']}")
            continue
        print(
            f"{label:<22} {r['cpu_s_per_min']:>9.2f} {r['cpu_pct_of_core']:>7.2f} "
            f"{r['peak_rss_mb']:>11.1f} {r['rss_mb']:>7.1f}  {r['note']}"
        )
    print("* informational, not a contender\n")
    for k, v in res["ratios"].items():
        print(f"{k:<32} {v if v is not None else 'n/a'}")
    for name, seg in res["segments"].items():
        if seg:
            print(
                f"{name + ' per 10 s segment':<32} min {min(seg)} median "
                f"{statistics.median(seg):.2f} max {max(seg)}"
            )
    s = res["stream"]
    print(
        f"{'stream in window':<32} {s['samples']} samples ({s['proc_samples']} with processes), "
        f"{s['bytes'] / 1000:.1f} kB"
    )
    print(
        f"{'process-table passes per min':<32} "
        + ", ".join(f"{k} {v:g}" for k, v in res["passes_per_min"].items() if v is not None)
    )
    for name, t in res["targets"].items():
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        print(f"target {name:<25} {verdict:<5} ({t['measured']} vs {t['limit']})")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not sys.platform.startswith("linux"):
        raise SystemExit("agent_overhead: Linux only (it reads /proc)")
    for tool in ("tmux", "btop") + (("htop",) if args.htop else ()):
        if shutil.which(tool) is None:
            raise SystemExit(f"agent_overhead: {tool} is not installed")
    h = Harness(Path(tempfile.mkdtemp(prefix="aob-", dir="/tmp")))
    targets: list[Target] = []
    try:
        with terminate_as_interrupt():
            if args.procs:
                print(f"starting {args.procs} idle sleepers ...", flush=True)
                start_sleepers(h, args.procs)
            pids_start = count_pids()
            reader = start_agent(h, targets, args.agent_proc_interval)
            if args.compare_io:
                start_agent(h, targets, args.agent_proc_interval, io=False)
            if args.bare_agent:
                start_agent(h, targets, args.agent_proc_interval, bare=True)
                if args.compare_io:
                    start_agent(h, targets, args.agent_proc_interval, bare=True, io=False)
            extra = start_tui(h, targets, htop=args.htop)
            start_loops(h, targets, direct=args.direct)
            targets.append(
                Target("bench", "bench harness", os.getpid(), "this script", informational=True)
            )
            print("pids: " + ", ".join(f"{t.key} {t.pid}" for t in targets), flush=True)
            print(f"warming up {args.warmup:.0f} s, then measuring {args.seconds:.0f} s ...")
            time.sleep(args.warmup)
            dead = [t.label for t in targets if not alive(t.pid)]
            if dead:
                raise RuntimeError(f"died during warm-up: {', '.join(dead)}")
            got = measure(targets, args.seconds, reader)
            pids_end = count_pids()
            rows = [row(t, got["elapsed"]) for t in targets]
    finally:
        h.cleanup()
    by_key = {r["key"]: r for r in rows}
    agent_rss = by_key["agent"].get("peak_rss_mb")
    r_ab = ratio(by_key, "agent", "btop")
    targets_met = _targets(by_key, r_ab, agent_rss)
    results: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(got["elapsed"], 2),
            "warmup": args.warmup,
            "sleepers": args.procs,
            "agent_proc_interval": args.agent_proc_interval,
            "compare_io": args.compare_io,
            "pids_start": pids_start,
            "pids_end": pids_end,
            "cores": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(),
            "psutil": _psutil_version(),
            "agent": _agent_version(),
            "btop": version_of(["btop", "--version"]),
            "htop": version_of(["htop", "--version"]) if args.htop else None,
            "tmux": version_of(["tmux", "-V"]),
            "clk_tck": CLK_TCK,
            **extra,
        },
        "rows": rows,
        "ratios": {
            "agent/btop": r_ab,
            "agent io off/btop": ratio(by_key, "agent-noio", "btop"),
            "agent/agent io off": ratio(by_key, "agent", "agent-noio"),
            "bare agent io off/btop": ratio(by_key, "agent-bare-noio", "btop"),
            "bare agent/bare io off": ratio(by_key, "agent-bare", "agent-bare-noio"),
            "(agent+attach)/btop": _sum_ratio(by_key, ["agent", "agent-attach"], "btop"),
            "bare agent/btop": ratio(by_key, "agent-bare", "btop"),
            "bare agent/agent": ratio(by_key, "agent-bare", "agent"),
            "agent/htop": ratio(by_key, "agent", "htop"),
            "agent/psutil loop": ratio(by_key, "agent", "psutil"),
            "psutil loop/btop": ratio(by_key, "psutil", "btop"),
            "direct loop/btop": ratio(by_key, "direct", "btop"),
        },
        "segments": {
            "agent/btop": segment_ratios(_t(targets, "agent"), _t(targets, "btop")),
            **(
                {
                    "agent/agent io off": segment_ratios(
                        _t(targets, "agent"), _t(targets, "agent-noio")
                    )
                }
                if args.compare_io
                else {}
            ),
        },
        "stream": got["stream"],
        "passes_per_min": {
            "agent": round(got["stream"]["proc_samples"] / got["elapsed"] * 60, 1),
            "psutil": 30.0,
            "direct": 30.0 if args.direct else None,
            "btop": 60.0,
            "htop": 60.0 if args.htop else None,
        },
        "targets": targets_met,
    }
    return results


def _targets(
    by_key: dict[str, dict[str, Any]], r_ab: float | None, agent_rss: float | None
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "agent CPU <= 1.5x btop": {
            "measured": r_ab,
            "limit": CPU_RATIO_TARGET,
            "pass": None if r_ab is None else r_ab <= CPU_RATIO_TARGET,
        },
        "agent peak RSS < 30 MB": {
            "measured": agent_rss,
            "limit": RSS_TARGET_MB,
            "pass": None if agent_rss is None else agent_rss < RSS_TARGET_MB,
        },
    }
    for key, base, name in (
        ("agent", "agent-noio", "agent CPU <= 1.1x its io-off twin"),
        ("agent-bare", "agent-bare-noio", "bare agent CPU <= 1.1x its io-off twin"),
    ):
        if base in by_key:
            r = ratio(by_key, key, base)
            out[name] = {
                "measured": r,
                "limit": IO_COST_TARGET,
                "pass": None if r is None else r <= IO_COST_TARGET,
            }
    if "agent-bare" not in by_key:
        return out
    # Issue 13: the stdlib agent at btop's cadence costs no more than btop, in <= 15 MB.
    r_bare = ratio(by_key, "agent-bare", "btop")
    bare_rss = by_key["agent-bare"].get("peak_rss_mb")
    out["bare agent CPU <= btop"] = {
        "measured": r_bare,
        "limit": BARE_CPU_RATIO_TARGET,
        "pass": None if r_bare is None else r_bare <= BARE_CPU_RATIO_TARGET,
    }
    out["bare agent peak RSS <= 15 MB"] = {
        "measured": bare_rss,
        "limit": BARE_RSS_TARGET_MB,
        "pass": None if bare_rss is None else bare_rss <= BARE_RSS_TARGET_MB,
    }
    return out


def _t(targets: list[Target], key: str) -> Target:
    return next(t for t in targets if t.key == key)


def _sum_ratio(rows: dict[str, dict[str, Any]], keys: list[str], b: str) -> float | None:
    xs = [rows.get(k, {}).get("cpu_s_per_min") for k in keys]
    y = rows.get(b, {}).get("cpu_s_per_min")
    if any(x is None for x in xs) or not y:
        return None
    return round(float(sum(x for x in xs if x is not None)) / float(y), 2)


def _cpu_model() -> str:
    with suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "?"


def _psutil_version() -> str:
    import psutil

    return str(psutil.__version__)


def _agent_version() -> str:
    from llmaos_agent import __version__

    return str(__version__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window (s)")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up before measuring (s)")
    p.add_argument("--procs", type=int, default=0, help="start N idle sleeper processes first")
    p.add_argument("--no-htop", dest="htop", action="store_false", help="leave htop out")
    p.add_argument(
        "--agent-proc-interval",
        type=float,
        help="pass --proc-interval to the daemon (default: the agent's own default)",
    )
    p.add_argument(
        "--bare-agent",
        action="store_true",
        help="also run the agent under a bare venv (stdlib only), side by side",
    )
    p.add_argument(
        "--compare-io",
        action="store_true",
        help=f"also run each agent with {IO_OFF_ENV}=off (no issue-16 figures), side by side",
    )
    p.add_argument("--out", type=Path, help="JSON results path")
    p.add_argument(
        "--no-direct",
        dest="direct",
        action="store_false",
        help="leave out the direct /proc loop (an informational row)",
    )
    p.add_argument("--bare-loop", choices=["psutil", "direct"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare_loop:
        with suppress(KeyboardInterrupt):
            bare_loop(args.bare_loop)
        return 0
    if args.seconds < SEGMENT_S or args.warmup < 0 or args.procs < 0:
        p.error(f"--seconds must be >= {SEGMENT_S}, --warmup and --procs >= 0")
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("agent_overhead: interrupted, cleaned up", file=sys.stderr)
        return 130
    name = "agent_overhead"
    if args.procs:
        name += f"-procs{args.procs}"
    if args.agent_proc_interval is not None:
        name += f"-pi{args.agent_proc_interval:g}"
    if args.bare_agent:
        name += "-bare"
    if args.compare_io:
        name += "-io"
    out = args.out or RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
