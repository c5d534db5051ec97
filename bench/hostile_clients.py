"""Hostile clients against one real daemon: does a watching client keep its samples and pings?

Starts ``llmaos-agent daemon`` (1 Hz samples, the process table every 2 s) in a private
LLMAOS_AGENT_HOME, attaches one normal client over the Unix socket that reads everything
and sends a ``ping`` every 100 ms, and runs three scenarios while it watches:

a. one client pipelines 5,000 ``processes`` calls (the largest answer) and closes at once;
b. 40 clients each pipeline 500 ``processes`` calls and never read a byte, for 30 s;
c. one client pipelines 5,000 ``requests.submit`` of held requests (``"hold": true``, so
   nothing runs) and reads its answers.

For each: the largest gap between the watcher's samples, its ping round trips (p50, p99,
max), the daemon's RSS at start, at peak and 5 s after the hostile clients left.

    python bench/hostile_clients.py [--out bench/results/hostile_clients.json]

Targets (issue 11): no sample gap over 2 s; another client's ping answered within 100 ms;
the daemon's RSS back within 10 MB of its start after the clients leave.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def _line(method: str, rid: int | str, params: dict[str, Any] | None = None) -> bytes:
    msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


class Watcher:
    """The normal client: reads every line, times samples and its own pings."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.samples: list[float] = []
        self.rtts: list[tuple[float, float]] = []  # (sent at, round trip s)
        self._sent: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._n = 0
        self.missed = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._pinger = threading.Thread(target=self._ping, daemon=True)
        self._reader.start()
        self._pinger.start()

    def _read(self) -> None:
        f = self.sock.makefile("rb")
        for raw in f:
            now = time.monotonic()
            if raw.startswith(b'{"jsonrpc":"2.0","method":"sample"'):
                self.samples.append(now)
                continue
            if b'"method"' in raw[:40]:
                continue
            with contextlib.suppress(ValueError):
                msg = json.loads(raw)
                rid = msg.get("id")
                with self._lock:
                    sent = self._sent.pop(rid, None) if isinstance(rid, int) else None
                if sent is not None:
                    self.rtts.append((sent, now - sent))

    def _ping(self) -> None:
        while not self._stop.wait(0.1):
            self._n += 1
            with self._lock:
                self._sent[self._n] = time.monotonic()
            try:
                self.sock.sendall(_line("ping", self._n))
            except OSError:
                return

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        s = [t for t in self.samples if t0 <= t <= t1]
        gaps = [b - a for a, b in itertools.pairwise(s)]
        r = sorted(rtt for sent, rtt in self.rtts if t0 <= sent <= t1)
        with self._lock:
            unanswered = sum(1 for sent in self._sent.values() if t0 <= sent <= t1 - 1.0)
        return {
            "samples": len(s),
            "max_gap_s": round(max(gaps), 3) if gaps else None,
            "pings": len(r),
            "pings_unanswered": unanswered,
            "ping_p50_ms": round(statistics.median(r) * 1000, 1) if r else None,
            "ping_p99_ms": round(r[min(len(r) - 1, int(len(r) * 0.99))] * 1000, 1) if r else None,
            "ping_max_ms": round(r[-1] * 1000, 1) if r else None,
        }

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def _pipeline_and_close(path: str, n: int) -> None:
    s = _connect(path)
    data = b"".join(_line("processes", i) for i in range(n))
    s.settimeout(30)
    with contextlib.suppress(OSError):
        s.sendall(data)
    s.close()


def _non_readers(path: str, clients: int, calls: int, hold_s: float) -> dict[str, Any]:
    socks = []
    for _ in range(clients):
        s = _connect(path)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        socks.append(s)
    data = b"".join(_line("processes", i) for i in range(calls))
    pending = {s: memoryview(data) for s in socks}
    end = time.monotonic() + hold_s
    while time.monotonic() < end:  # keep pushing calls; the daemon stops reading from us
        for s, rest in list(pending.items()):
            try:
                sent = s.send(rest)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                del pending[s]  # dropped by the daemon
                continue
            pending[s] = rest[sent:]
            if not pending[s]:
                del pending[s]
        time.sleep(0.05)
    dropped = sum(_hung_up(s) for s in socks)
    for s in socks:
        s.close()
    return {"clients": clients, "dropped_by_daemon": dropped}


def _hung_up(s: socket.socket) -> bool:
    """Whether the daemon closed ``s`` (seen without reading what it left unread)."""
    poller = select.poll()
    poller.register(s, select.POLLIN | getattr(select, "POLLRDHUP", 0))
    gone = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
    return any(ev & gone for _, ev in poller.poll(0))


def _submits(path: str, n: int) -> dict[str, Any]:
    s = _connect(path)
    f = s.makefile("rb")
    spec = {"argv": ["true"], "hold": True, "name": "bench-held"}
    t0 = time.monotonic()
    s.sendall(b"".join(_line("requests.submit", i, spec) for i in range(1, n + 1)))
    answered = errors = 0
    s.settimeout(120)
    for raw in f:
        if b'"id":' in raw and b'"method"' not in raw[:40]:
            msg = json.loads(raw)
            if isinstance(msg.get("id"), int):
                answered += 1
                errors += "error" in msg
                if answered == n:
                    break
    took = time.monotonic() - t0
    f.close()
    s.close()
    return {"submits": n, "answered": answered, "errors": errors, "took_s": round(took, 2)}


def _rss(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hostile_clients.json")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds the 40 non-readers stay")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="llma-bench-", dir="/tmp"))
    env = {**os.environ, "LLMAOS_AGENT_HOME": str(home)}
    script = Path(sys.executable).with_name("llmaos-agent")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "llmaos_agent"]
    home.joinpath("daemon.err").touch(mode=0o600)
    err = home / "daemon.err"
    with err.open("wb") as log:
        daemon = subprocess.Popen([*argv, "daemon"], env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=log,
                                  start_new_session=True)  # fmt: skip
    path = str(home / "run" / "agent.sock")
    results: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # a few samples and the first process pass
        w = Watcher(path)
        time.sleep(3)
        rss0 = _rss(daemon.pid)
        results["rss_start_mb"] = round(rss0, 1)
        peak = [rss0]
        stop_peak = threading.Event()

        def watch_rss() -> None:
            while not stop_peak.wait(0.2):
                with contextlib.suppress(psutil.Error):
                    peak[0] = max(peak[0], _rss(daemon.pid))

        threading.Thread(target=watch_rss, daemon=True).start()

        def scenario(name: str, run: Any) -> None:
            peak[0] = _rss(daemon.pid)
            t0 = time.monotonic()
            extra = run()
            t1 = time.monotonic()
            time.sleep(5)  # the daemon lets go of what it held
            row = {"s": round(t1 - t0, 2), **w.window(t0, t1 + 2), **(extra or {})}
            row["rss_peak_mb"] = round(peak[0], 1)
            row["rss_after_mb"] = round(_rss(daemon.pid), 1)
            row["daemon_dropped_total"] = err.read_text().count("dropping a client")
            results[name] = row
            print(name, json.dumps(row), flush=True)

        scenario("a_pipeline_5000_and_close", lambda: _pipeline_and_close(path, 5000))
        scenario("b_40_non_readers", lambda: _non_readers(path, 40, 500, args.hold))
        scenario("c_5000_held_submits", lambda: _submits(path, 5000))
        stop_peak.set()
        w.close()
        results["rss_end_mb"] = round(_rss(daemon.pid), 1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(10)
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(home, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
