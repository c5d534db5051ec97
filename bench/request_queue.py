"""Request queue: submit throughput, dispatch latency, and the cost of a waiting queue.

    python bench/request_queue.py       # 10,000 submits + drain, idle windows; ~15 min
    python bench/request_queue.py --requests 1000 --idle-seconds 10 --windows 1   # quick

Everything runs against real ``llmaos-agent daemon`` processes, each in a private
``LLMAOS_AGENT_HOME`` under a temp dir, reached the way the console reaches one
(``llmaos-agent attach --no-start`` under a ``LocalLink``, ``AgentSession.call``).

1. **Submit and dispatch.** One daemon (``--slots-per-core``, default 16, so that
   short requests drain in minutes on a small machine). One client submits
   ``--requests`` requests (``true``, ``cpus=1``) one call after the other, as the
   CLI does, each answered only once committed (SQLite WAL, ``synchronous=FULL``,
   plus the fsynced audit line): submit throughput = requests / wall time. Then it
   waits until all have started (``--drain-timeout``) and reads ``submitted`` and
   ``started`` from the daemon's database (the fields ``RequestInfo`` carries):
   dispatch latency p50/p99 of the backlog, which is mostly waiting for a slot.
   Then ``--paced`` requests at ``--rate`` a second into the empty queue: the
   dispatch latency of a request that does not wait for a slot.
   A floor beside it: the same INSERT into a bare SQLite table in the same
   directory, one transaction per row, ``synchronous=FULL`` and ``NORMAL``.
2. **Idle cost of a waiting queue.** Four daemons side by side, started together,
   no client attached while measured: *empty*; *blocker* (one ``sleep`` holding
   every core); *queued* (the blocker plus ``--idle-requests`` requests queued
   behind it); *held* (``--idle-requests`` requests submitted held). CPU
   (utime+stime of the daemon, from /proc) per window; a first window before any
   request is submitted calibrates (all four empty), then ``--windows`` windows of
   ``--idle-seconds``. Each is reported as a ratio to *empty* in the same window.

With ``--profile DIR`` the submit daemon runs under cProfile (stats written when
it stops) and the client too, so where a submit's time goes can be read with
``python -m pstats``. JSON goes to ``bench/results/request_queue.json``.

(Issue 4 calls this file ``bench/queue.py``; a ``queue.py`` in ``bench/`` shadows the
standard library's ``queue`` for every script run from there, which breaks asyncio's
executor, so it is named ``request_queue.py``.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "agents"))

from llmaos_agent.protocol import RequestSpec  # noqa: E402
from llmaos_tui.fleet import session as _session  # noqa: E402
from llmaos_tui.fleet.local import LocalLink  # noqa: E402
from llmaos_tui.fleet.oneshot import connected  # noqa: E402

# Every submit is answered with its result *and* a ``requests`` notification (the
# queue's delta), so a client submitting over about 250 a second crosses the session's
# flood guard (FLOOD_LINES lines in FLOOD_WINDOW s) and takes its own link down. The
# bench lifts the guard to measure the daemon; see docs/BENCHMARKS.md.
_session.FLOOD_LINES = 10**9

CORES = psutil.cpu_count() or 1
HZ = os.sysconf("SC_CLK_TCK")
AGENT = Path(sys.executable).with_name("llmaos-agent")


# ------------------------------------------------------------------ daemons


class Daemon:
    """One ``llmaos-agent daemon`` in its own home; stopped with all it started."""

    def __init__(self, base: Path, name: str, *args: str, profile: Path | None = None) -> None:
        self.home = base / name
        self.home.mkdir()
        self.name = name
        env = {**os.environ, "LLMAOS_AGENT_HOME": str(self.home)}
        if profile is not None:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "llmaos_agent"]
        else:
            cmd = [str(AGENT)] if AGENT.exists() else [sys.executable, "-m", "llmaos_agent"]
        self.proc = subprocess.Popen(
            [*cmd, "daemon", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.home / "daemon.err", "wb"),  # noqa: SIM115 - the child keeps it
            env=env,
            start_new_session=True,
        )

    def link(self) -> LocalLink:
        cmd = [str(AGENT), "attach", "--no-start"] if AGENT.exists() else None
        if cmd is None:
            cmd = [sys.executable, "-m", "llmaos_agent", "attach", "--no-start"]
        return LocalLink(command=cmd, env={"LLMAOS_AGENT_HOME": str(self.home)})

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = (self.home / "daemon.err").read_text()[-2000:]
                raise SystemExit(f"daemon {self.name} exited: {err}")
            with contextlib.suppress(Exception):
                async with connected(self.link(), timeout=5.0):
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"daemon {self.name} did not serve within {timeout} s")
            await asyncio.sleep(0.2)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    @property
    def db(self) -> Path:
        return self.home / "state" / "requests.sqlite"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean stop, so cProfile writes
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Requests outlive their daemon by design; this bench's must not outlive it.
        for p in psutil.process_iter(["environ"]):
            with contextlib.suppress(psutil.Error):
                if (p.info["environ"] or {}).get("LLMAOS_AGENT_HOME") == str(self.home):
                    p.kill()


def _pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))], 3) if xs else None


def _latencies(db: Path) -> tuple[list[float], int]:
    """started - submitted of every request that started; and how many did not."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT submitted, started FROM requests WHERE name='bench'").fetchall()
    finally:
        con.close()
    lat = [s - t for t, s in rows if s is not None]
    return lat, len(rows) - len(lat)


def _started_count(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (total, started) = con.execute(
            "SELECT COUNT(*), COUNT(started) FROM requests WHERE name='bench'"
        ).fetchone()
    finally:
        con.close()
    return int(total), int(started)


# ------------------------------------------------------------ 1: submit, dispatch


async def submit_phase(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    prof = args.profile / "daemon.prof" if args.profile else None
    d = Daemon(base, "submit", "--slots-per-core", str(args.slots_per_core), profile=prof)
    out: dict[str, Any] = {"requests": args.requests, "slots": args.slots_per_core * CORES}
    try:
        await d.ready()
        spec = RequestSpec(argv=["true"], cpus=1, name="bench")
        async with connected(d.link()) as s:
            client_prof = cProfile.Profile() if args.profile else None
            cpu0, t0 = d.cpu_s(), time.monotonic()
            if client_prof:
                client_prof.enable()
            for _ in range(args.requests):
                await s.call("requests.submit", spec)
            if client_prof:
                client_prof.disable()
                client_prof.dump_stats(args.profile / "client.prof")
            wall = time.monotonic() - t0
            out["submit_s"] = round(wall, 2)
            out["submit_per_s"] = round(args.requests / wall, 1)
            out["submit_ms_each"] = round(1000 * wall / args.requests, 2)
            out["daemon_cpu_s_during_submit"] = round(d.cpu_s() - cpu0, 2)
            out["started_during_submit"] = _started_count(d.db)[1]

            # The backlog drains at the slots' pace (one dispatch pass a tick).
            t1 = time.monotonic()
            while time.monotonic() - t1 < args.drain_timeout:
                total, started = _started_count(d.db)
                if started >= total:
                    break
                await asyncio.sleep(1.0)
            drain = time.monotonic() - t1
            lat, missing = _latencies(d.db)
            out["drain_s_after_submit"] = round(drain, 1)
            out["not_started"] = missing
            out["backlog_latency_s"] = {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99)}
            out["daemon_cpu_s_total"] = round(d.cpu_s() - cpu0, 2)

            # Into an empty queue at a steady rate: no wait for a slot.
            await asyncio.sleep(3.0)  # let the last ones finish
            paced = []
            for _ in range(args.paced):
                info = await s.call("requests.submit", spec)
                paced.append(info.id)
                await asyncio.sleep(1.0 / args.rate)
            await asyncio.sleep(3.0)
            con = sqlite3.connect(f"file:{d.db}?mode=ro", uri=True)
            marks = ",".join("?" * len(paced))
            rows = con.execute(
                f"SELECT submitted, started FROM requests WHERE id IN ({marks})",
                paced,
            ).fetchall()
            con.close()
            plat = [b - a for a, b in rows if b is not None]
            out["paced"] = {
                "requests": args.paced,
                "rate_per_s": args.rate,
                "started": len(plat),
                "latency_s": {
                    "p50": _pct(plat, 0.5),
                    "p99": _pct(plat, 0.99),
                    "max": _pct(plat, 1.0),
                },
            }
        out["daemon_peak_rss_mb"] = round(d.rss_mb(), 1)
    finally:
        d.stop()
    out["sqlite_floor"] = sqlite_floor(base, min(args.requests, 2000))
    return out


def sqlite_floor(base: Path, n: int) -> dict[str, float]:
    """One row per transaction into a bare WAL table: what the disk allows per commit."""
    res: dict[str, float] = {}
    for sync in ("FULL", "NORMAL"):
        path = base / f"floor-{sync}.sqlite"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={sync}")
        db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, seq INTEGER, body TEXT)")
        t0 = time.monotonic()
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?, ?)", (f"r{i}", i, "x" * 300))
            db.execute("COMMIT")
        res[f"inserts_per_s_{sync.lower()}"] = round(n / (time.monotonic() - t0), 1)
        db.close()
    return res


# ----------------------------------------------------------------- 2: idle cost


async def idle_phase(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    names = ["empty", "blocker", "queued", "held"]
    ds = {n: Daemon(base, n) for n in names}
    out: dict[str, Any] = {"requests": args.idle_requests, "window_s": args.idle_seconds}
    try:
        for d in ds.values():
            await d.ready()
        await asyncio.sleep(3.0)

        async def window() -> dict[str, Any]:
            c0 = {n: d.cpu_s() for n, d in ds.items()}
            t0 = time.monotonic()
            await asyncio.sleep(args.idle_seconds)
            wall = time.monotonic() - t0
            cpu = {n: (d.cpu_s() - c0[n]) / wall for n, d in ds.items()}
            return {
                "pct_core": {n: round(100 * v, 3) for n, v in cpu.items()},
                "over_empty": {
                    n: (round(v / cpu["empty"], 2) if cpu["empty"] else None)
                    for n, v in cpu.items()
                    if n != "empty"
                },
                "load_avg": round(os.getloadavg()[0], 2),
            }

        out["calibration"] = await window()  # all four empty
        spec = RequestSpec(argv=["true"], cpus=1, name="bench")
        async with connected(ds["blocker"].link()) as s:
            await s.call(
                "requests.submit",
                RequestSpec(argv=["sleep", "3600"], cpus=CORES, priority=1000, name="blocker"),
            )
        async with connected(ds["queued"].link()) as s:
            await s.call(
                "requests.submit",
                RequestSpec(argv=["sleep", "3600"], cpus=CORES, priority=1000, name="blocker"),
            )
            await asyncio.sleep(2.0)  # the blocker starts on the next tick
            for _ in range(args.idle_requests):
                await s.call("requests.submit", spec)
        async with connected(ds["held"].link()) as s:
            held = RequestSpec(argv=["true"], cpus=1, name="bench", hold=True)
            for _ in range(args.idle_requests):
                await s.call("requests.submit", held)
        _total, started = _started_count(ds["queued"].db)
        if started:
            raise SystemExit(f"{started} of the queued requests ran: the blocker did not block")
        await asyncio.sleep(3.0)
        out["windows"] = [await window() for _ in range(args.windows)]
        out["daemon_peak_rss_mb"] = {n: round(d.rss_mb(), 1) for n, d in ds.items()}
    finally:
        for d in ds.values():
            d.stop()
    return out


# ----------------------------------------------------------------------- main


def _report(res: dict[str, Any]) -> str:
    lines = []
    if "submit" in res:
        s = res["submit"]
        lines.append(
            f"submit: {s['requests']} in {s['submit_s']} s = {s['submit_per_s']}/s "
            f"({s['submit_ms_each']} ms each); SQLite floor {s['sqlite_floor']}"
        )
        lines.append(
            f"backlog dispatch latency p50 {s['backlog_latency_s']['p50']} s, "
            f"p99 {s['backlog_latency_s']['p99']} s ({s['slots']} slots; drained "
            f"{s['drain_s_after_submit']} s after the last submit; {s['not_started']} not started)"
        )
        p = s["paced"]
        lines.append(
            f"paced {p['requests']} at {p['rate_per_s']}/s: latency p50 {p['latency_s']['p50']} s, "
            f"p99 {p['latency_s']['p99']} s, max {p['latency_s']['max']} s"
        )
    if "idle" in res:
        i = res["idle"]
        lines.append("idle % of a core      empty  blocker  queued  held   (x empty)")
        for label, w in [("calibration", i["calibration"])] + [
            (f"window {k + 1}", w) for k, w in enumerate(i["windows"])
        ]:
            pc, oe = w["pct_core"], w["over_empty"]
            lines.append(
                f"{label:18s} {pc['empty']:7.3f}  {pc['blocker']:7.3f} {pc['queued']:7.3f} "
                f"{pc['held']:7.3f}   blocker {oe['blocker']} queued {oe['queued']} "
                f"held {oe['held']}"
            )
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="llmq-", dir="/tmp"))  # short: a socket path
    res: dict[str, Any] = {"cores": CORES, "load_avg_start": os.getloadavg()[0]}
    try:
        if not args.skip_submit:
            res["submit"] = await submit_phase(base, args)
        if not args.skip_idle:
            res["idle"] = await idle_phase(base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    res["load_avg_end"] = os.getloadavg()[0]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--slots-per-core", type=int, default=16)
    ap.add_argument("--drain-timeout", type=float, default=900.0)
    ap.add_argument("--paced", type=int, default=100, help="requests into an empty queue")
    ap.add_argument("--rate", type=float, default=5.0, help="paced requests a second")
    ap.add_argument("--idle-requests", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--skip-submit", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--profile", type=Path, help="cProfile the submit daemon and client here")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "request_queue.json")
    args = ap.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()
    res = asyncio.run(amain(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(_report(res))
    print(f"(JSON in {args.out})")


if __name__ == "__main__":
    main()
