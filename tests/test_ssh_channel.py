"""The agent's SSH channel split into lines as asyncssh hands its packets over.

A real SSH server on loopback (tests/sshserver.py) runs a small program whose output is
cut where the test says (a line over two packets, two lines in one, a last line with no
newline, a line over the limit, more than the console will queue before it reads).
What the console must get is every line, whole and in order, none over the limit, and
an agent that talks before it is read held back, not buffered without bound.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import pytest

from llmaos_agent.protocol import MAX_LINE_BYTES
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import LineTooLong
from llmaos_tui.fleet.ssh import SshLink, SshOptions, SshTransport, connect
from tests.helpers import wait_for
from tests.sshserver import SshServer


async def started(srv: SshServer, program: str) -> SshTransport:
    """A transport on the output of ``program`` (Python), run by the server's shell."""
    spec = HostSpec(name="h1", host="127.0.0.1", port=srv.port, user="ops")
    options = SshOptions(
        known_hosts=srv.known_hosts,
        client_keys=[str(srv.client_key_path)],
        config=[],
        use_agent=False,
        connect_timeout=30.0,
    )
    conn = await connect(spec, options)
    t = SshTransport(conn, SshLink(spec, options=options), (1.0, 2))
    await t.start(shlex.join([sys.executable, "-c", program]))
    return t


WRITER = """
import sys, time
out = sys.stdout.buffer
for part in {parts}:
    out.write(part)
    out.flush()
    time.sleep(0.2)  # each part its own packet
"""


async def test_lines_cut_and_joined_across_packets_arrive_whole(server: SshServer) -> None:
    parts = [b"hello\nsam", b"ple 1\nsample 2\nsample 3\n", b"last, with no newline"]
    t = await started(server, WRITER.format(parts=repr(parts)))
    try:
        got = [await t.readline()]  # before the pump, as the hello is read
        await t.pump(got.append)
        assert got == [
            b"hello\n",
            b"sample 1\n",
            b"sample 2\n",
            b"sample 3\n",
            b"last, with no newline",
        ]
        assert await t.readline() == b""
        assert await t.end_reason() == "the agent exited with code 0"
    finally:
        await t.close()


@pytest.mark.parametrize("newline", [False, True], ids=["unended", "in-one-write"])
async def test_a_line_over_the_limit_ends_the_stream(server: SshServer, newline: bool) -> None:
    big = f'b"x" * {MAX_LINE_BYTES + 10}' + (' + b"\\n"' if newline else "")
    t = await started(server, WRITER.format(parts=f'[b"first\\n", {big}, b"after\\n"]'))
    got: list[bytes] = []
    try:
        with pytest.raises(LineTooLong, match="byte limit"):
            await t.pump(got.append)
        assert got == [b"first\n"], "nothing of or after the long line is handed on"
        assert all(len(line) <= MAX_LINE_BYTES for line in got)
    finally:
        await t.close()


async def test_an_error_in_the_handler_ends_the_pump_with_it(server: SshServer) -> None:
    t = await started(server, WRITER.format(parts=repr([b"one\ntwo\nthree\n", b"four\n"])))
    got: list[bytes] = []

    def handle(line: bytes) -> None:
        if line == b"two\n":
            raise ValueError("the session took this line badly")
        got.append(line)

    try:
        with pytest.raises(ValueError, match="badly"):
            await t.pump(handle)
        assert got == [b"one\n"], "lines after the failing one are not handed on"
    finally:
        await t.close()


@pytest.mark.parametrize(
    ("n", "line"),
    [
        # 12 MB: three times the queue's bound.
        (12_000, b"%06d " + b"y" * 1000 + b"\n"),
        # 550,000 short lines: 3.85 MB, under the bound in bytes (4 MiB), but as many line
        # objects held would cost about 40 MB: a queued line counts more than its bytes.
        (550_000, b"%06d\n"),
    ],
    ids=["long-lines", "short-lines"],
)
async def test_an_agent_talking_before_it_is_read_is_held_back(
    server: SshServer, tmp_path: Path, n: int, line: bytes
) -> None:
    done = tmp_path / "all-written"
    program = f"""
import sys
out = sys.stdout.buffer
for i in range({n}):
    out.write({line!r} % i)
out.flush()
open({str(done)!r}, "w").close()
"""
    t = await started(server, program)
    try:
        # Not read: the channel stops taking data, and SSH's window stops the writer.
        # Unheld, it all goes over loopback SSH in a few seconds, even on a busy machine.
        await asyncio.sleep(5.0)
        assert not done.exists(), "the console took it all without reading any"
        got: list[bytes] = []
        await t.pump(got.append)
        await wait_for(done.exists, 60, "the writer finished once read")
        assert len(got) == n, "every line arrives once read"
        assert [int(g[:6]) for g in got] == list(range(n)), "whole and in order"
    finally:
        await t.close()
