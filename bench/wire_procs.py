"""Bytes a second on the wire to one client with processes on and off (``procs.watch``).

Two parts:

- this machine: a real daemon at its default cadence (samples every 1 s, the process table
  every 2 s) in a private LLMAOS_AGENT_HOME, two clients on its socket, one of which turns
  processes off; every byte each receives after its greeting, over ``--seconds``;
- a 64-core-like host: a sample as the agent encodes it with 64 core loads, memory, load,
  two interfaces, a disk and 34 temperature sensors (every 5 s, named once a minute, as the
  io collector sends them) and the agent's own cost (one sample in ten, as the sampler
  sends it), over a simulated minute; with processes on, this machine's
  measured process bytes a second on top (the table's size goes with the process count,
  not the cores).

Issue 16's budget: a host in the fleet view (processes off) costs <= 600 B/s at 64 cores.

    .venv/bin/python bench/wire_procs.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "agents"))

from llmaos_agent.collect.self_cost import EVERY  # noqa: E402 - after the path above
from llmaos_agent.protocol import (  # noqa: E402
    AgentCost,
    DiskRate,
    Memory,
    NetRate,
    Sample,
    encode_notification,
)


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    s.setblocking(False)
    return s


def measure_here(seconds: float) -> tuple[float, float]:
    """(B/s with processes on, B/s off) to two clients of one real daemon."""
    home = Path(tempfile.mkdtemp(prefix="llmw-", dir="/tmp"))
    env = {**os.environ, "LLMAOS_AGENT_HOME": str(home), "PYTHONPATH": str(ROOT / "agents")}
    daemon = subprocess.Popen([sys.executable, "-m", "llmaos_agent", "daemon"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    sock = home / "run" / "agent.sock"
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not start")
            time.sleep(0.05)
        on, off = _connect(sock), _connect(sock)
        off.sendall(b'{"jsonrpc":"2.0","id":1,"method":"procs.watch","params":{"on":false}}\n')
        time.sleep(3.0)  # greetings (hello, history) and the answer go by
        for s in (on, off):
            _drain(s)
        counts = {on: 0, off: 0}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for s in (on, off):
                counts[s] += _drain(s)
            time.sleep(0.05)
        return counts[on] / seconds, counts[off] / seconds
    finally:
        daemon.terminate()
        daemon.wait(20)
        shutil.rmtree(home, ignore_errors=True)


def _drain(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            chunk = s.recv(1 << 16)
        except BlockingIOError:
            return n
        if not chunk:
            return n
        n += len(chunk)


def sample_64(seconds: int = 60, seed: int = 1) -> float:
    """B/s of a 64-core host's samples (no processes), as the daemon encodes them."""
    rnd = random.Random(seed)
    names = ([f"Package id {i}" for i in range(2)]
             + [f"Core {i} #{s}" for s in range(2) for i in range(16)])  # fmt: skip
    total = 0
    for t in range(seconds):
        temps_now = t % 5 == 0
        sample = Sample(
            t=1_718_000_000.0 + t + rnd.random() / 1000,
            seq=t + 1,
            cpu=[round(rnd.random(), 2) for _ in range(64)],  # the agent's 2 decimals (cpu.py)
            mem=Memory(540_000_000_000, rnd.randrange(1 << 38), rnd.randrange(1 << 38), 0, 0),
            load=[round(rnd.uniform(0, 64), 2) for _ in range(3)],
            net=[
                NetRate("eth0", rnd.randrange(10**7), rnd.randrange(10**6)),
                NetRate("lo", rnd.randrange(10**4), rnd.randrange(10**4)),
            ],
            disk=[DiskRate("nvme0n1", rnd.randrange(10**8), rnd.randrange(10**8))],
            temps=[rnd.randrange(30, 90) for _ in names] if temps_now else [],
            temp_names=names if t % 60 == 0 else [],
            agent=AgentCost(round(rnd.uniform(0, 0.2), 3), rnd.randrange(30 << 20, 60 << 20))
            if (t + 1) % EVERY == 0
            else None,
        )
        total += len(encode_notification("sample", sample))
    return total / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    on, off = measure_here(args.seconds)
    procs = on - off
    s64 = sample_64()
    out = {
        "this machine": {"cores": os.cpu_count(), "procs on B/s": round(on),
                         "procs off B/s": round(off), "processes": _count_procs()},
        "64-core-like": {"procs off B/s": round(s64), "procs on B/s": round(s64 + procs),
                         "budget off B/s": 600, "within budget": s64 <= 600},
    }  # fmt: skip
    print(json.dumps(out, indent=2))


def _count_procs() -> int:
    return sum(e.isdigit() for e in os.listdir("/proc")) if os.path.isdir("/proc") else 0


if __name__ == "__main__":
    main()
