"""``llmaos-agent``: daemon, attach, sample, stop, version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

import msgspec
import psutil

from llmaos_agent import __version__, endpoint
from llmaos_agent.attach import EXIT_NO_DAEMON, bridge, connect_or_start
from llmaos_agent.collect.processes import full
from llmaos_agent.collect.sampler import Sampler
from llmaos_agent.daemon import AlreadyRunning, Daemon
from llmaos_agent.metrics import beta
from llmaos_agent.paths import UnsafeDirectory, default_paths
from llmaos_agent.protocol import PROTOCOL_VERSION, Empty, encode_request


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.05 <= v <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.05 and 3600 seconds")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmaos-agent", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("daemon", help="run the per-user daemon in the foreground")
    d.add_argument("--read-only", action="store_true", help="refuse every change")
    d.add_argument("--interval", type=_interval, default=1.0, help="core sampling period (s)")
    d.add_argument("--proc-interval", type=_interval, default=2.0, help="process table period (s)")
    a = sub.add_parser("attach", help="bridge stdio to the daemon, starting it if needed")
    a.add_argument("--no-start", action="store_true", help="fail instead of starting a daemon")
    a.add_argument("--read-only", action="store_true", help="start the daemon read-only")
    s = sub.add_parser("sample", help="print one sample")
    s.add_argument("--json", action="store_true", help="as JSON, for scripts")
    s.add_argument("--interval", type=_interval, default=0.5, help="measurement window (s)")
    sub.add_parser("stop", help="stop this user's daemon")
    sub.add_parser("version", help="print agent and protocol versions")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cmd == "daemon":
            return _daemon(args)
        if args.cmd == "attach":
            extra = ["--read-only"] if args.read_only else []
            try:
                sock = connect_or_start(default_paths(), start=not args.no_start, extra=extra)
            except OSError as exc:
                print(f"llmaos-agent attach: no daemon: {exc}", file=sys.stderr)
                return EXIT_NO_DAEMON
            return bridge(sock)
        if args.cmd == "sample":
            return _sample(args.json, args.interval)
        if args.cmd == "stop":
            return _stop()
        print(f"llmaos-agent {__version__} protocol {PROTOCOL_VERSION}")
        return 0
    except UnsafeDirectory as exc:
        print(f"llmaos-agent: {exc}", file=sys.stderr)
        return 2


def _daemon(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    d = Daemon(
        default_paths(),
        interval=args.interval,
        proc_interval=args.proc_interval,
        read_only=args.read_only,
    )
    try:
        asyncio.run(d.run())
    except AlreadyRunning as exc:
        print(f"llmaos-agent daemon: {exc}", file=sys.stderr)
        return 1
    return 0


def _sample(as_json: bool, window: float) -> int:
    s = Sampler()
    s.procs.snapshot()  # prime per-process CPU%
    time.sleep(window)
    sample = s.sample()
    table = s.processes(sample)
    s.close()
    bc = beta(sample.cpu)
    bg = beta([g.util for g in sample.gpus if g.util is not None])
    if as_json:
        report = {
            "host": s.facts(),
            "sample": msgspec.structs.replace(sample, procs=full(table)),
            "beta_cpu": round(bc, 4),
            "beta_gpu": round(bg, 4),
        }
        sys.stdout.buffer.write(msgspec.json.encode(report) + b"\n")
        return 0
    cores = " ".join(f"{x * 100:3.0f}" for x in sample.cpu)
    print(f"cores %: {cores}")
    print(f"beta_cpu {bc:.3f}  beta_gpu {bg:.3f}  processes {len(table)}")
    for g in sample.gpus:
        print(f"gpu{g.index} {g.name}: util {g.util} mem {g.mem_used}/{g.mem_total}")
    return 0


def _stop(timeout: float = 10.0) -> int:
    paths = default_paths()
    try:
        sock = endpoint.connect(paths, timeout=2.0)
    except OSError:
        print("llmaos-agent: no daemon is running", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout
    buf = b""
    with sock:
        try:
            sock.sendall(encode_request(1, "shutdown", Empty()))
            # The daemon answers, then closes the connection on its way out.
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
        except OSError:
            pass
    # It is stopped once its process is gone: only then are its endpoint and lock
    # released, so a `stop` followed by an `attach` starts a fresh daemon.
    pid = _hello_pid(buf)
    if pid is None:
        print("llmaos-agent: the daemon did not say who it is; cannot wait for it", file=sys.stderr)
        return 1
    if not _wait_gone(pid, deadline):
        print(
            f"llmaos-agent: the daemon (pid {pid}) did not stop within {timeout:.0f} s",
            file=sys.stderr,
        )
        return 1
    print(f"llmaos-agent: daemon stopped (pid {pid})")
    return 0


def _hello_pid(stream: bytes) -> int | None:
    """The daemon's pid from the ``hello`` that starts its stream."""
    try:
        msg = msgspec.json.decode(stream.split(b"\n", 1)[0])
        pid = msg["params"]["pid"] if msg.get("method") == "hello" else None
    except (msgspec.DecodeError, TypeError, KeyError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


def _wait_gone(pid: int, deadline: float) -> bool:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    while time.monotonic() < deadline:
        try:
            # is_running() also notices a pid reused by another process.
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


if __name__ == "__main__":
    raise SystemExit(main())
