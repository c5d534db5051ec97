"""Fleet scale: N simulated hosts over real SSH into the real console core.

    python bench/fleet_scale.py                  # N = 50 and 200, 64 cores, 30 s each
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
- bytes per sample on the wire.

Side by side, in the same run and against the same server, a bare asyncssh
client that opens the same N sessions and only reads and drops the bytes: the
floor that SSH itself costs on this machine. The ratio console / bare is what is
ours; the absolute share is what the target (25% of a core at 200 hosts) is about.

With ``--render``, the installed ``llmaos-tui`` runs in tmux against the same
hosts (its fleet screen drawing), and its CPU and RSS are reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
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


class _NoAuth(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # loopback bench hosts: no authentication step to measure


async def _sim_host(
    process: asyncssh.SSHServerProcess[bytes], cores: int, stats: dict[str, int]
) -> None:
    rng = random.Random()
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
            loads = [round(min(1.0, max(0.0, b + rng.uniform(-0.1, 0.1))), 3) for b in base]
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
            process_factory=lambda p: _sim_host(p, cores, stats),
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
        while True:
            await asyncio.sleep(1.0)
            stats_file.write_text(json.dumps(stats))

    asyncio.run(main())


# ----------------------------------------------------------------- the clients


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run_console(
    n: int, port: int, known_hosts: Path, warmup: float, seconds: float
) -> dict[str, Any]:
    from llmaos_tui.fleet.inventory import HostSpec
    from llmaos_tui.fleet.ssh import SshLink, SshOptions
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
    cpu0, w0 = _cpu_seconds(), time.monotonic()
    for _ in range(int(seconds)):
        await asyncio.sleep(1.0)
        fleet.tick()  # what the app does each second (fleet beta history)
    cpu = (_cpu_seconds() - cpu0) / (time.monotonic() - w0)
    measuring = False
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
        "lat_p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
        "lat_p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1) if lat else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def run_bare(
    n: int, port: int, known_hosts: Path, warmup: float, seconds: float
) -> dict[str, Any]:
    conns = []
    sem = asyncio.Semaphore(16)

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
            )
        conns.append(conn)
        proc = await conn.create_process("sim", encoding=None)
        with contextlib.suppress(Exception):
            while await proc.stdout.read(65536):
                pass

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    while len(conns) < n:
        await asyncio.sleep(0.2)
    await asyncio.sleep(warmup)
    cpu0, w0 = _cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = (_cpu_seconds() - cpu0) / (time.monotonic() - w0)
    for t in tasks:
        t.cancel()
    for c in conns:
        c.close()
    return {"cpu_share": round(cpu, 4)}


def _client(
    kind: str, n: int, port: int, known_hosts: Path, warmup: float, seconds: float
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


def run_render(
    n: int, port: int, tmp: Path, known_hosts: Path, warmup: float, seconds: float
) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "llmaos-tui"
    if not shutil.which("tmux") or not exe.exists():
        return {"skipped": "tmux or llmaos-tui missing"}
    hosts = tmp / "hosts.toml"
    # One entry per simulated host: the same address, distinct names.
    lines = []
    for i in range(n):
        lines += [f"[hosts.sim{i:03d}]", 'host = "127.0.0.1"', f"port = {port}", 'user = "ops"', ""]
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
            str(exe),
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
        time.sleep(warmup + 10)
        c0, w0 = sum(proc.cpu_times()[:2]), time.monotonic()
        time.sleep(seconds)
        cpu = (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - w0)
        screen = subprocess.run(
            ["tmux", "-S", sock, "capture-pane", "-p"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return {
            "cpu_share": round(cpu, 4),
            "rss_mb": round(proc.memory_info().rss / 2**20, 1),
            "up_on_screen": screen.count(" up "),
        }
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="50,200")
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--render", action="store_true", help="also run llmaos-tui in tmux")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--known-hosts", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve:
        serve(args.serve, args.cores, args.serve.parent / "home")
        return
    if args.client:
        fn = run_console if args.client == "console" else run_bare
        res = asyncio.run(
            fn(int(args.hosts), args.port, args.known_hosts, args.warmup, args.seconds)
        )
        print(json.dumps(res))
        return

    tmp = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    (tmp / "home").mkdir()
    port_file = tmp / "server.json"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port_file), "--cores", str(args.cores)]
    )
    try:
        while not port_file.exists():
            if server.poll() is not None:
                raise SystemExit("the simulated-host server failed to start")
            time.sleep(0.1)
        info = json.loads(port_file.read_text())
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{info['port']} {info['key']}\n")
        for n in [int(x) for x in args.hosts.split(",")]:
            before = (
                json.loads((port_file.with_suffix(".stats")).read_text())
                if port_file.with_suffix(".stats").exists()
                else {"bytes": 0, "samples": 0}
            )
            console = _client("console", n, info["port"], known_hosts, args.warmup, args.seconds)
            after = json.loads(port_file.with_suffix(".stats").read_text())
            bare = _client("bare", n, info["port"], known_hosts, args.warmup, args.seconds)
            row: dict[str, Any] = {
                "hosts": n,
                "cores": args.cores,
                "console": console,
                "bare_ssh": bare,
                "console_over_bare": round(console["cpu_share"] / bare["cpu_share"], 2)
                if bare["cpu_share"]
                else None,
                "bytes_per_sample": round(
                    (after["bytes"] - before["bytes"])
                    / max(1, after["samples"] - before["samples"])
                ),
            }
            if args.render:
                row["render"] = run_render(
                    n, info["port"], tmp, known_hosts, args.warmup, args.seconds
                )
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
