"""``llmaos-agent``: daemon, attach, sample, stop, version.

Text output (``sample``'s GPU names, error messages) goes through
:func:`llmaos_agent.safetext.clean`; ``sample --json`` is ASCII-only JSON (:func:`ascii_json`),
so no process name reaches the terminal raw (msgspec writes DEL, C1 and bidi characters
as they are).
"""

# Each subcommand imports what it needs and no more: ``attach`` is a byte pipe that
# stays up as long as the console does, and must not carry the daemon, psutil,
# msgspec or asyncio in its memory (docs/BENCHMARKS.md). Hence imports in functions:
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from llmaos_agent import __version__
from llmaos_agent.paths import UnsafeDirectory, UnsafeFile, default_paths

if TYPE_CHECKING:
    import argparse


def clean(text: str) -> str:
    """:func:`llmaos_agent.safetext.clean`, imported when first used: ``attach`` keeps
    ``re`` and ``unicodedata`` out of the bridge's memory (see above)."""
    from llmaos_agent.safetext import clean as _clean

    return _clean(text)


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise _bad(f"not a number of seconds: {text!a}") from None
    if not 0.05 <= v <= 3600:  # false for nan as well as for inf and 1e400
        raise _bad("must be between 0.05 and 3600 seconds")
    return v


def _bad(message: str) -> Exception:
    import argparse  # only on the way to an error: _plain_daemon runs without it

    return argparse.ArgumentTypeError(message)


MAX_SLOTS = 1024


def _slots(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise _bad(f"not a whole number: {text!a}") from None
    if not 1 <= v <= MAX_SLOTS:
        raise _bad(f"must be between 1 and {MAX_SLOTS}")
    return v


def parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog="llmaos-agent", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("daemon", help="run the per-user daemon in the foreground")
    d.add_argument("--read-only", action="store_true", help="refuse every change")
    d.add_argument("--interval", type=_interval, default=1.0, help="core sampling period (s)")
    d.add_argument("--proc-interval", type=_interval, default=2.0, help="process table period (s)")
    d.add_argument(
        "--slots-per-core", type=_slots, default=1, help="requests a core takes at once (1)"
    )
    d.add_argument(
        "--aging",
        type=_interval,
        default=60.0,
        help="seconds of waiting that raise a queued request's priority by one (60)",
    )
    d.add_argument(
        "--cancel-grace", type=_interval, default=10.0, help="SIGTERM to SIGKILL on cancel (10 s)"
    )
    a = sub.add_parser("attach", help="bridge stdio to the daemon, starting it if needed")
    a.add_argument("--no-start", action="store_true", help="fail instead of starting a daemon")
    a.add_argument("--read-only", action="store_true", help="start the daemon read-only")
    s = sub.add_parser("sample", help="print one sample")
    s.add_argument("--json", action="store_true", help="as JSON, for scripts")
    s.add_argument("--interval", type=_interval, default=0.5, help="measurement window (s)")
    sub.add_parser("stop", help="stop this user's daemon")
    sub.add_parser("version", help="print agent and protocol versions")
    return p


_ATTACH_FLAGS = ("--no-start", "--read-only")


def _plain_attach(argv: list[str]) -> tuple[bool, bool] | None:
    """(no_start, read_only) for ``attach`` with nothing but its own flags, read
    without argparse.

    That is how the console runs it, and argparse (0.4 MB) with its help formatter,
    which it builds for every argument it adds and which imports shutil, bz2 and lzma
    (1 MB more), would stay in the bridge's memory for as long as it lives. Anything
    else (help, a typo) goes to the parser.
    """
    if not argv or argv[0] != "attach" or not set(argv[1:]) <= set(_ATTACH_FLAGS):
        return None
    return "--no-start" in argv, "--read-only" in argv


_DAEMON_DEFAULTS: dict[str, float | int | bool] = {
    "interval": 1.0, "proc_interval": 2.0, "slots_per_core": 1, "aging": 60.0,
    "cancel_grace": 10.0, "read_only": False,
}  # fmt: skip


def _plain_daemon(argv: list[str]) -> Any | None:
    """The ``daemon`` flags read without argparse, for the reason :func:`_plain_attach`
    gives (the daemon lives as long; argparse and shutil cost it about 1.5 MB), when each
    is well formed (``--flag VALUE`` or ``--flag=VALUE``, values in range); anything else
    goes to the parser, which says what is wrong. Same defaults as :func:`parser`."""
    if not argv or argv[0] != "daemon":
        return None
    got = dict(_DAEMON_DEFAULTS)
    rest = list(argv[1:])
    while rest:
        flag = rest.pop(0)
        if flag == "--read-only":
            got["read_only"] = True
            continue
        flag, eq, text = flag.partition("=")
        key = flag[2:].replace("-", "_")
        if not flag.startswith("--") or key not in got or key == "read_only":
            return None
        if not eq:
            if not rest:
                return None
            text = rest.pop(0)
        try:
            got[key] = _slots(text) if key == "slots_per_core" else _interval(text)
        except Exception:  # noqa: BLE001 - a bad value: argparse words the error
            return None
    from types import SimpleNamespace

    return SimpleNamespace(cmd="daemon", **got)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    plain = _plain_attach(argv)
    try:
        if plain is not None:
            return _attach(*plain)
        args = _plain_daemon(argv) or parser().parse_args(argv)
        if args.cmd == "daemon":
            return _daemon(args)
        if args.cmd == "attach":
            return _attach(args.no_start, args.read_only)
        if args.cmd == "sample":
            return _sample(args.json, args.interval)
        if args.cmd == "stop":
            return _stop()
        from llmaos_agent.protocol import PROTOCOL_VERSION

        print(f"llmaos-agent {__version__} protocol {PROTOCOL_VERSION}")
        return 0
    except (UnsafeDirectory, UnsafeFile) as exc:
        print(clean(f"llmaos-agent: {exc}"), file=sys.stderr)
        return 2


def _attach(no_start: bool, read_only: bool) -> int:
    from llmaos_agent.attach import EXIT_NO_DAEMON, bridge, connect_or_start

    extra = ["--read-only"] if read_only else []
    try:
        sock = connect_or_start(default_paths(), start=not no_start, extra=extra)
    except OSError as exc:
        print(clean(f"llmaos-agent attach: no daemon: {exc}"), file=sys.stderr)
        return EXIT_NO_DAEMON
    return bridge(sock)


def _daemon(args: argparse.Namespace) -> int:
    no_ssl()
    import asyncio
    import logging

    from llmaos_agent.daemon import AlreadyRunning, Daemon

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    d = Daemon(
        default_paths(),
        interval=args.interval,
        proc_interval=args.proc_interval,
        read_only=args.read_only,
        slots_per_core=max(1, args.slots_per_core),
        aging_s=args.aging,
        cancel_grace_s=args.cancel_grace,
    )
    try:
        asyncio.run(d.run())
    except AlreadyRunning as exc:
        print(clean(f"llmaos-agent daemon: {exc}"), file=sys.stderr)
        return 1
    return 0


def no_ssl() -> None:
    """Keep ``ssl`` (libssl and libcrypto, about 4.5 MB) out of this process.

    asyncio imports it if it can, for TLS the daemon never speaks; it works without
    it (``import ssl`` failing is what it does on a Python built without OpenSSL).
    Only where nothing has imported ssl yet, so a process that uses it keeps it.
    """
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


def ascii_json(encoded: bytes) -> str:
    """msgspec's JSON with every character past ``~`` (DEL, C1, bidi, all non-ASCII) as a
    ``\\u`` escape, as ``json.dumps`` writes them: the same document, safe to print.
    Such characters occur only inside strings, where the escape means the same."""
    import re

    def esc(m: re.Match[str]) -> str:
        c = ord(m.group())
        if c > 0xFFFF:  # a surrogate pair, as JSON spells it
            c -= 0x10000
            return f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}"
        return f"\\u{c:04x}"

    return re.sub("[^\x00-\x7e]", esc, encoded.decode())


def _sample(as_json: bool, window: float) -> int:
    from llmaos_agent.collect.sampler import Sampler
    from llmaos_agent.metrics import beta
    from llmaos_agent.procdelta import full
    from llmaos_agent.protocol import encode, replace

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
            "sample": replace(sample, procs=full(table)),
            "beta_cpu": round(bc, 4),
            "beta_gpu": round(bg, 4),
        }
        sys.stdout.write(ascii_json(encode(report)) + "\n")
        return 0
    cores = " ".join(f"{x * 100:3.0f}" for x in sample.cpu)
    print(f"cores %: {cores}")
    print(f"beta_cpu {bc:.3f}  beta_gpu {bg:.3f}  processes {len(table)}")
    for g in sample.gpus:
        print(clean(f"gpu{g.index} {g.name}: util {g.util} mem {g.mem_used}/{g.mem_total}"))
    return 0


def _stop(timeout: float = 10.0) -> int:
    from llmaos_agent import endpoint
    from llmaos_agent.attach import NotOurDaemon, ours
    from llmaos_agent.protocol import Empty, encode_request

    paths = default_paths()
    try:
        sock = ours(endpoint.connect(paths, timeout=2.0))
    except NotOurDaemon as exc:
        print(clean(f"llmaos-agent: {exc}"), file=sys.stderr)
        return 2
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
    import json

    try:
        msg = json.loads(stream.split(b"\n", 1)[0])
        pid = msg["params"]["pid"] if msg.get("method") == "hello" else None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


def _wait_gone(pid: int, deadline: float) -> bool:
    """Whether process ``pid`` (the one it is now: a reused pid is another) is gone, or a
    zombie, before ``deadline``: the host's own check (/proc on Linux, psutil off it)."""
    from llmaos_agent.system import wait_gone

    return wait_gone(pid, deadline)


if __name__ == "__main__":
    raise SystemExit(main())
