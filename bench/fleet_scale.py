"""Fleet scale: N simulated hosts over real SSH into the real console core.

    python bench/fleet_scale.py --runs 3         # N = 50 and 200, 64 cores, 30 s each
    python bench/fleet_scale.py --hosts 200 --seconds 60 --render

A separate process runs an asyncssh server on loopback; every SSH session it
accepts is one simulated host that says hello and streams a 64-core sample a
second, encoded by the agent's own protocol module (the real wire). The bench
process connects to it N times with the console's SshLink and HostWatcher (the
real console core, headless) and measures, after a warm-up:

- the console's CPU (user+sys of this process) as a share of one core, and its
  peak RSS;
- sample-to-state latency, p50/p99: from the sample's timestamp (set when the
  server wrote it) to the moment the console's state has it and the UI would be
  told;
- bytes per sample: the JSON line (payload) and everything the server wrote to its
  TCP connections in the window (SSH framing, MACs, keepalive replies included).

Side by side, in the same run and against the same server, a bare asyncssh
client that opens the same N sessions and only takes and drops the bytes (a session
whose ``data_received`` does nothing: no stream reader, no task woken per packet): the
floor that SSH itself costs on this machine. The ratio console / bare is what is
ours; the absolute share is what the target (25% of a core at 200 hosts) is about.

With ``--render``, this tree's console (``python -m llmaos_tui``) runs in tmux against the same
hosts (its fleet screen drawing), and its CPU and RSS are reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "agents"))

from llmaos_agent.protocol import (  # noqa: E402
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION,
    Capabilities,
    HandshakeResult,
    Hello,
    HostFacts,
    Memory,
    ProtocolError,
    Request,
    Sample,
    decode,
    encode_error,
    encode_notification,
    encode_result,
)

# ----------------------------------------------------------------- the server


WIRE = {"bytes": 0}
"""Bytes the server wrote to its TCP connections: SSH packets, framing and MACs included."""


class _NoAuth(asyncssh.SSHServer):
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        # Count what goes on the wire at the one place asyncssh writes to the socket.
        transport = conn._transport  # type: ignore[attr-defined]
        write = transport.write

        def counted(data: bytes) -> None:
            WIRE["bytes"] += len(data)
            write(data)

        transport.write = counted

    def begin_auth(self, username: str) -> bool:
        return False  # loopback bench hosts: no authentication step to measure


MARKED = 8
"""With --render, the first hosts log in as ``mark0``... and send samples whose cores all
carry one load that changes every sample; the server notes when it sent each, and the bench
watches the terminal for the figure (sample-to-screen latency)."""


def _mark_load(seq: int) -> float:
    """A marked host's load for sample ``seq``: a different whole percent each time."""
    return (11 + (seq * 37) % 89) / 100


async def _sim_host(
    process: asyncssh.SSHServerProcess[bytes],
    cores: int,
    stats: dict[str, int],
    marks: Path | None = None,
) -> None:
    if process.command == "llmaos-agent version":
        # The console's deploy step asks for an installed agent first (the hosts file
        # says agent = "installed"): this sim is one, of the console's protocol.
        process.stdout.write(f"llmaos-agent 0.1.0 protocol {PROTOCOL_VERSION}\n".encode())
        process.exit(0)
        return
    rng = random.Random()
    user = str(process.get_extra_info("username") or "")
    marked = marks is not None and user.startswith("mark")
    hello = Hello(
        protocol=PROTOCOL_VERSION,
        agent_version="0.1.0",
        pid=os.getpid(),
        host=HostFacts(
            hostname=f"sim{rng.randrange(10**6)}",
            os="Linux",
            os_release="6.1",
            arch="x86_64",
            python="3.11",
            user="ops",
            cores=cores,
            physical_cores=cores // 2,
            mem_total=2**38,
            boot_time=time.time() - 86400,
        ),
        caps=Capabilities(
            affinity=True,
            cpu_num=True,
            nvml=False,
            nvml_reason="bench",
            docker=False,
            docker_reason="bench",
            root=False,
            read_only=False,
        ),
        interval=1.0,
        proc_interval=2.0,
    )
    out = process.stdout
    out.write(encode_notification("hello", hello))

    async def answer() -> None:
        with contextlib.suppress(Exception):
            while line := await process.stdin.readline():
                try:
                    msg = decode(line, notifications=False)
                except ProtocolError:
                    continue
                if isinstance(msg, Request) and msg.method == "handshake":
                    out.write(
                        encode_result(
                            msg.id,
                            HandshakeResult(protocol=PROTOCOL_VERSION, agent_version="0.1.0"),
                        )
                    )
                elif isinstance(msg, Request):
                    out.write(encode_error(msg.id, METHOD_NOT_FOUND, "simulated host"))

    reader = asyncio.ensure_future(answer())
    base = [rng.random() for _ in range(cores)]
    await asyncio.sleep(rng.random())  # hosts do not all tick at once
    seq = 0
    try:
        while not reader.done():
            seq += 1
            if marked:
                loads = [_mark_load(seq)] * cores
            else:
                loads = [round(min(1.0, max(0.0, b + rng.uniform(-0.1, 0.1))), 2) for b in base]
            s = Sample(
                t=time.time(),
                seq=seq,
                cpu=loads,
                mem=Memory(
                    total=2**38,
                    used=2**37 + rng.randrange(2**30),
                    available=2**37,
                    swap_total=0,
                    swap_used=0,
                ),
                load=[round(sum(loads), 2)] * 3,
            )
            line = encode_notification("sample", s)
            stats["bytes"] += len(line)
            stats["samples"] += 1
            out.write(line)
            if marked and marks is not None:
                # CLOCK_MONOTONIC is the machine's: the bench process reads the same clock.
                with marks.open("a") as f:
                    f.write(f"{user} {round(_mark_load(seq) * 100)} {time.monotonic()}\n")
            await asyncio.sleep(1.0)
    finally:
        reader.cancel()
        process.exit(0)


def serve(port_file: Path, cores: int, home: Path) -> None:
    async def main() -> None:
        key = asyncssh.generate_private_key("ssh-ed25519")
        stats = {"bytes": 0, "samples": 0}
        acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_factory=_NoAuth,
            server_host_keys=[key],
            process_factory=lambda p: _sim_host(p, cores, stats, port_file.with_suffix(".marks")),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(home)),
            encoding=None,
            backlog=1024,
        )
        port = acceptor.get_port()
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"port": port, "key": key.export_public_key("openssh").decode().strip()})
        )
        tmp.rename(port_file)
        stats_file = port_file.with_suffix(".stats")
        tmp_stats = port_file.with_suffix(".stats.tmp")
        while True:
            await asyncio.sleep(0.5)
            stats["wire"] = WIRE["bytes"]
            tmp_stats.write_text(json.dumps(stats))
            tmp_stats.rename(stats_file)

    asyncio.run(main())


# ----------------------------------------------------------------- the clients


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _stats(path: Path | None) -> dict[str, int]:
    if path is None or not path.exists():
        return {"bytes": 0, "samples": 0, "wire": 0}
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _per_sample(a: dict[str, int], b: dict[str, int]) -> dict[str, float | None]:
    n = b["samples"] - a["samples"]
    if n <= 0:
        return {"payload_b": None, "wire_b": None, "server_samples": 0}
    return {
        "payload_b": round((b["bytes"] - a["bytes"]) / n, 1),
        "wire_b": round((b.get("wire", 0) - a.get("wire", 0)) / n, 1),
        "server_samples": n,
    }


def _pct(xs: list[float], q: float) -> float | None:
    return round(1000 * xs[min(len(xs) - 1, int(len(xs) * q))], 1) if xs else None


CIPHER: list[str] = []
"""--cipher: the SSH ciphers both clients offer (an experiment; empty: the console's own
list, ``fleet/ssh.py``'s CIPHERS, AES-GCM first)."""


async def run_console(
    n: int, port: int, known_hosts: Path, warmup: float, seconds: float, stats: Path | None
) -> dict[str, Any]:
    from llmaos_tui.fleet.inventory import HostSpec
    from llmaos_tui.fleet.ssh import SshLink, SshOptions

    if CIPHER:
        plain = SshLink._connect_options

        def with_cipher(self: SshLink) -> dict[str, Any]:
            return {**plain(self), "encryption_algs": CIPHER}

        SshLink._connect_options = with_cipher  # type: ignore[method-assign]
    from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
    from llmaos_tui.fleet.watcher import HostWatcher

    fleet = FleetState()
    latencies: list[float] = []
    measuring = False

    def notify(h: HostState) -> None:
        if measuring and h.sample is not None and h.status is HostStatus.UP:
            latencies.append(time.time() - h.sample.t)

    options = SshOptions(
        known_hosts=known_hosts, client_keys=[], config=[], use_agent=False, deploy=False
    )
    limiter = asyncio.Semaphore(16)
    watchers = [
        HostWatcher(
            fleet.add(f"sim{i:03d}"),
            SshLink(
                HostSpec(name=f"sim{i:03d}", host="127.0.0.1", port=port, user="ops"),
                options=options,
                limiter=limiter,
            ),
            notify,
        )
        for i in range(n)
    ]
    tasks = [asyncio.ensure_future(w.run()) for w in watchers]
    t0 = time.monotonic()
    while sum(h.status is HostStatus.UP for h in fleet.hosts.values()) < n:
        if time.monotonic() - t0 > 120:
            raise SystemExit(f"only {sum(h.up for h in fleet.hosts.values())} of {n} hosts came up")
        await asyncio.sleep(0.2)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(warmup)
    measuring = True
    s0 = _stats(stats)
    cpu0, w0 = _cpu_seconds(), time.monotonic()
    for _ in range(int(seconds)):
        await asyncio.sleep(1.0)
        fleet.tick()  # what the app does each second (fleet beta history)
    cpu = (_cpu_seconds() - cpu0) / (time.monotonic() - w0)
    measuring = False
    wire = _per_sample(s0, _stats(stats))
    up = sum(h.status is HostStatus.UP for h in fleet.hosts.values())
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted(latencies)
    return {
        "connect_s": round(connect_s, 2),
        "cpu_share": round(cpu, 4),
        "up_at_end": up,
        "samples": len(lat),
        "lat_p50_ms": _pct(lat, 0.5),
        "lat_p99_ms": _pct(lat, 0.99),
        "lat_max_ms": _pct(lat, 1.0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **wire,
    }


class _Drop(asyncssh.SSHClientSession[bytes]):
    """Takes each packet's data and drops it: the least any SSH client can do."""

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        pass


async def run_bare(
    n: int, port: int, known_hosts: Path, warmup: float, seconds: float, stats: Path | None
) -> dict[str, Any]:
    # The console's own cipher list (AES-GCM first) unless --cipher says: the floor is
    # what the same SSH costs, and asyncssh's default (chacha20-poly1305) costs more.
    from llmaos_tui.fleet.ssh import CIPHERS

    ciphers = CIPHER or CIPHERS
    conns = []
    sem = asyncio.Semaphore(16)
    all_connected = asyncio.Event()

    async def one() -> None:
        async with sem:
            conn = await asyncssh.connect(
                "127.0.0.1",
                port,
                username="ops",
                known_hosts=str(known_hosts),
                client_keys=[],
                config=[],
                agent_path=None,
                encryption_algs=ciphers,
            )
        conns.append(conn)
        if len(conns) == n:
            all_connected.set()
        chan, _ = await conn.create_session(_Drop, "sim", encoding=None)
        with contextlib.suppress(Exception):
            await chan.wait_closed()

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    await all_connected.wait()
    await asyncio.sleep(warmup)
    cpu0, w0 = _cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = (_cpu_seconds() - cpu0) / (time.monotonic() - w0)
    for t in tasks:
        t.cancel()
    for c in conns:
        c.close()
    return {
        "cpu_share": round(cpu, 4),
        "cipher": conns[0].get_extra_info("recv_cipher") if conns else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _client(
    kind: str, n: int, port: int, known_hosts: Path, warmup: float, seconds: float, stats: Path
) -> dict[str, Any]:
    """Run one client kind in a fresh process, so CPU and RSS are its own."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            kind,
            "--hosts",
            str(n),
            "--port",
            str(port),
            "--known-hosts",
            str(known_hosts),
            "--warmup",
            str(warmup),
            "--seconds",
            str(seconds),
            "--stats",
            str(stats),
            *(["--cipher", ",".join(CIPHER)] if CIPHER else []),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + warmup + 300,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} client failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _vmhwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_render(
    n: int, port: int, tmp: Path, known_hosts: Path, warmup: float, seconds: float
) -> dict[str, Any]:
    if not shutil.which("tmux"):
        return {"skipped": "tmux missing"}
    hosts = tmp / "hosts.toml"
    # One entry per simulated host: the same address, distinct names.
    lines = []
    for i in range(n):
        user = f"mark{i}" if i < MARKED else "ops"
        lines += [f"[hosts.sim{i:03d}]", 'host = "127.0.0.1"', f"port = {port}",
                  f'user = "{user}"', 'agent = "installed"', ""]  # fmt: skip
    hosts.write_text("\n".join(lines))
    sock = str(tmp / "tmux.sock")
    env = [
        "env",
        "-i",
        f"PATH={os.environ['PATH']}",
        f"HOME={tmp}",
        "TERM=xterm-256color",
        "LANG=C.UTF-8",
        f"XDG_CONFIG_HOME={tmp / 'cfg'}",
        # The console of this tree (not whatever the venv installed), so a copy of an
        # older commit measures its own code side by side with this one.
        f"PYTHONPATH={ROOT}{os.pathsep}{ROOT / 'agents'}",
    ]
    subprocess.run(
        [
            "tmux",
            "-S",
            sock,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "60",
            *env,
            sys.executable,
            "-m",
            "llmaos_tui",
            "--no-local",
            "--hosts-file",
            str(hosts),
            "--known-hosts",
            str(known_hosts),
        ],
        check=True,
    )
    try:
        pid = int(
            subprocess.run(
                ["tmux", "-S", sock, "display-message", "-p", "#{pane_pid}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        proc = psutil.Process(pid)
        # The window starts once every host is up on screen (the title counts them), not
        # while connects are still going on: those cost more than the samples do.
        all_up_s = _wait_all_up(sock, n, 300.0)
        time.sleep(warmup + 5)
        c0, w0 = sum(proc.cpu_times()[:2]), time.monotonic()
        time.sleep(seconds)
        cpu = (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - w0)
        screen = subprocess.run(
            ["tmux", "-S", sock, "capture-pane", "-p"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        shot = ROOT / "bench" / "results" / f"fleet_scale-screen-{n}.txt"
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.write_text(screen)
        # After the CPU window (the polling below costs tmux and this process some CPU).
        latency = _screen_latency(sock, tmp / "server.marks", min(seconds, 20.0))
        return {
            "cpu_share": round(cpu, 4),
            "rss_mb": round(proc.memory_info().rss / 2**20, 1),
            "peak_rss_mb": round(_vmhwm(pid) / 1024, 1),
            "up_on_screen": screen.count(" up "),
            "all_up_s": all_up_s,
            "screen": str(shot),
            **latency,
        }
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], check=False)


_TITLE = re.compile(r"(\d+) hosts, (\d+) up")


def _wait_all_up(sock: str, n: int, deadline: float) -> float | None:
    """Seconds until the console's title says all ``n`` hosts are up (None: never did)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        out = subprocess.run(["tmux", "-S", sock, "capture-pane", "-p"], capture_output=True,
                             text=True, check=False).stdout  # fmt: skip
        m = _TITLE.search(out)
        if m is not None and int(m[1]) == n and int(m[2]) == n:
            return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    return None


_ROW = re.compile(r"^\s*(sim\d{3})\s+up\b\D*?\d+\s+(\d+)%")
"""A fleet-table row: host name, status up, OS, cores, then the CPU% figure."""
POLL_S = 0.02


def _screen_latency(sock: str, marks: Path, seconds: float) -> dict[str, Any]:
    """Sample-to-screen latency of the marked hosts: the terminal (tmux's copy of the
    screen) is read every POLL_S; each time a marked host's CPU% changes, the time since the
    server sent the sample with that figure. The poll adds up to POLL_S to each reading."""
    shown: dict[str, str] = {}
    seen: list[tuple[str, str, float]] = []
    end = time.monotonic() + seconds
    polls = 0
    started = time.monotonic()
    while time.monotonic() < end:
        out = subprocess.run(["tmux", "-S", sock, "capture-pane", "-p"], capture_output=True,
                             text=True, check=False).stdout  # fmt: skip
        now = time.monotonic()
        polls += 1
        for line in out.splitlines():
            m = _ROW.match(line)
            if m is None or int(m[1][3:]) >= MARKED:
                continue
            host, pct = f"mark{int(m[1][3:])}", m[2]
            if shown.get(host) not in (None, pct):
                seen.append((host, pct, now))
            shown[host] = pct
        time.sleep(POLL_S)
    sent: dict[tuple[str, str], list[float]] = {}
    for line in marks.read_text().splitlines() if marks.exists() else []:
        user, pct, t = line.split()
        sent.setdefault((user, pct), []).append(float(t))
    lat = []
    for host, pct, t in seen:
        before = [x for x in sent.get((host, pct), []) if x <= t]
        if before:
            lat.append((t - max(before)) * 1000)
    if not lat:
        return {"screen_latency": "no marked host seen changing"}
    lat.sort()
    return {
        "screen_poll_ms": round((time.monotonic() - started) / max(polls, 1) * 1000, 1),
        "screen_lat_n": len(lat),
        "screen_lat_p50_ms": round(_median(lat), 1),
        "screen_lat_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "screen_lat_max_ms": round(lat[-1], 1),
    }


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def summarize(rows: list[dict[str, Any]]) -> str:
    """One line per host count: median and spread (min-max) over the runs."""
    out = [
        "hosts  runs  console %core (min-max)   bare %core  console/bare   p50 ms  p99 ms"
        "  RSS MB  payload B  wire B  render %core"
    ]
    for n in sorted({r["hosts"] for r in rows}):
        rs = [r for r in rows if r["hosts"] == n]
        c = [100 * r["console"]["cpu_share"] for r in rs]
        b = [100 * r["bare_ssh"]["cpu_share"] for r in rs]
        ratio = [r["console_over_bare"] for r in rs if r["console_over_bare"]]
        p50 = [r["console"]["lat_p50_ms"] for r in rs if r["console"]["lat_p50_ms"] is not None]
        p99 = [r["console"]["lat_p99_ms"] for r in rs if r["console"]["lat_p99_ms"] is not None]
        rss = [r["console"]["peak_rss_mb"] for r in rs]
        pay = [r["console"]["payload_b"] for r in rs if r["console"]["payload_b"]]
        wire = [r["console"]["wire_b"] for r in rs if r["console"]["wire_b"]]
        ren = [100 * r["render"]["cpu_share"] for r in rs if "cpu_share" in r.get("render", {})]
        out.append(
            f"{n:5d}  {len(rs):4d}  {_median(c):6.2f} ({min(c):.2f}-{max(c):.2f})"
            f"  {_median(b):10.2f}  {_median(ratio) if ratio else 0:12.2f}"
            f"  {_median(p50) if p50 else 0:6.1f}  {_median(p99) if p99 else 0:6.1f}"
            f"  {_median(rss):6.1f}  {_median(pay) if pay else 0:9.0f}"
            f"  {_median(wire) if wire else 0:6.0f}"
            f"  {(f'{_median(ren):.2f}') if ren else '-':>12}"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="50,200")
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=1, help="repeat each host count (order alternates)")
    ap.add_argument("--render", action="store_true", help="also run llmaos-tui in tmux")
    ap.add_argument("--cipher", default="", help="SSH ciphers the clients offer (experiment)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet_scale.json")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--known-hosts", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    CIPHER[:] = [c for c in args.cipher.split(",") if c]

    if args.serve:
        serve(args.serve, args.cores, args.serve.parent / "home")
        return
    if args.client:
        fn = run_console if args.client == "console" else run_bare
        res = asyncio.run(
            fn(int(args.hosts), args.port, args.known_hosts, args.warmup, args.seconds, args.stats)
        )
        print(json.dumps(res))
        return

    tmp = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    (tmp / "home").mkdir()
    port_file = tmp / "server.json"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port_file), "--cores", str(args.cores)]
    )
    rows: list[dict[str, Any]] = []
    try:
        while not port_file.exists():
            if server.poll() is not None:
                raise SystemExit("the simulated-host server failed to start")
            time.sleep(0.1)
        info = json.loads(port_file.read_text())
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{info['port']} {info['key']}\n")
        stats = port_file.with_suffix(".stats")
        _measure(args, info, tmp, known_hosts, stats, rows)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        if rows:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))
            print(summarize(rows))
            print(f"(JSON in {args.out})")


def _measure(
    args: argparse.Namespace,
    info: dict[str, Any],
    tmp: Path,
    known_hosts: Path,
    stats: Path,
    rows: list[dict[str, Any]],
) -> None:
    """Every host count of every run: the console and the bare SSH client, side by side;
    each row appended to ``rows`` as it is measured (an interrupted run keeps its rows)."""
    for run in range(args.runs):
        for n in [int(x) for x in args.hosts.split(",")]:
            one = {}
            # Alternate which client goes first, so drift in the machine's load
            # does not always favour the same one.
            kinds = ["console", "bare"] if run % 2 == 0 else ["bare", "console"]
            for kind in kinds:
                one[kind] = _client(
                    kind, n, info["port"], known_hosts, args.warmup, args.seconds, stats
                )
            console, bare = one["console"], one["bare"]
            row: dict[str, Any] = {
                "run": run + 1,
                "hosts": n,
                "cores": args.cores,
                "cipher": args.cipher or "the console's (fleet/ssh.py CIPHERS)",
                "load_avg": os.getloadavg()[0],
                "console": console,
                "bare_ssh": bare,
                "console_over_bare": round(console["cpu_share"] / bare["cpu_share"], 2)
                if bare["cpu_share"]
                else None,
            }
            if args.render:
                row["render"] = run_render(
                    n, info["port"], tmp, known_hosts, args.warmup, args.seconds
                )
                if "cpu_share" in row["render"] and console["cpu_share"]:
                    row["render_over_headless"] = round(
                        row["render"]["cpu_share"] / console["cpu_share"], 2
                    )
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
