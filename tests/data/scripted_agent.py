"""A misbehaving agent, for the console's fault tests: a real process on real pipes.

Sends the recorded hello (optionally with another protocol version), answers the
handshake like an agent, streams the recorded samples, then misbehaves as asked:

    scripted_agent.py MODE [--protocol N]

MODE: ok (samples, then stays quiet but open), silent (hello and handshake,
then nothing), garbage (after the samples, lines that are not JSON-RPC),
one-garbage (a single bad line, then samples again), huge (a 100 MB line),
flood (valid samples as fast as the pipe takes them),
exit (exit with code 7 and a message on stderr after the samples),
no-hello (garbage first).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

RECORDING = Path(__file__).resolve().parent / "recorded_stream.ndjson"


def out(line: bytes) -> None:
    sys.stdout.buffer.write(line if line.endswith(b"\n") else line + b"\n")
    sys.stdout.buffer.flush()


def answer_calls() -> None:
    for raw in sys.stdin.buffer:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if msg.get("method") == "handshake":
            out(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": msg["id"],
                        "result": {
                            "protocol": msg["params"]["protocol"],
                            "agent_version": "scripted",
                        },
                    }
                ).encode()
            )
    os._exit(0)  # stdin EOF: the console went away


def _garbage(rest: list[bytes]) -> None:
    for i in range(10):
        out(b"this is not json " + str(i).encode())


def _one_garbage(rest: list[bytes]) -> None:
    out(b"{not json")
    for ln in rest[4:]:
        out(ln)


def _huge(rest: list[bytes]) -> None:
    chunk = b"x" * (1 << 20)
    for _ in range(100):
        sys.stdout.buffer.write(chunk)
    out(b"")


def _flood(rest: list[bytes]) -> None:
    while True:  # valid samples, as fast as the pipe takes them
        for ln in rest[1:]:
            out(ln)


def _pauses(rest: list[bytes]) -> None:
    for ln in rest[4:7]:  # a sample now and then, silent in between (past a short limit)
        time.sleep(1.5)
        out(ln)


def _exit(rest: list[bytes]) -> None:
    sys.stderr.write("scripted agent: giving up\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(7)  # not sys.exit: the reader thread holds stdin, shutdown would abort


# What each mode plays after the hello and four samples (then it idles, as an agent would).
_MODES: dict[str, Callable[[list[bytes]], None]] = {
    "garbage": _garbage,
    "one-garbage": _one_garbage,
    "huge": _huge,
    "flood": _flood,
    "exit": _exit,
    "pauses": _pauses,
}


def main() -> None:
    mode = sys.argv[1]
    protocol = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--protocol" else None
    lines = [ln for ln in RECORDING.read_bytes().splitlines() if ln.strip()]
    hello, rest = lines[0], lines[1:]
    if protocol is not None:
        h = json.loads(hello)
        h["params"]["protocol"] = protocol
        hello = json.dumps(h).encode()
    if mode == "no-hello":
        out(b"Welcome to my shell!")
        time.sleep(30)
        return
    threading.Thread(target=answer_calls, daemon=True).start()
    out(hello)
    if mode == "silent":
        time.sleep(60)
        return
    for ln in rest[:4]:
        out(ln)
    play = _MODES.get(mode)
    if play is not None:
        play(rest)
    time.sleep(60)


if __name__ == "__main__":
    main()
