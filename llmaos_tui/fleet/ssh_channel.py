"""The agent's SSH channel as a transport of lines, split as asyncssh hands the bytes over.

asyncssh calls :meth:`_Session.data_received` with each packet's data. Before the session
reads its stream (the hello, the handshake's answer), complete lines wait in a queue for
:meth:`SshTransport.readline`; from then on (:meth:`SshTransport.pump`) each line goes to
the session's handler inside that call. No reader task wakes per packet: with 1,000 hosts
a sample a second each, the stream session's buffer, its waiter and a task step per
packet were a fifth of the console's headless CPU (bench/fleet_scale.py). The bytes are
not held by us longer than a line, and a line is bounded as it arrives
(``MAX_LINE_BYTES``); queued lines past ``PAUSE_BYTES`` pause the channel, so an agent
that talks before it is read is held back by SSH's own window.

Keep-alives: a channel whose agent samples every second proves the link alive with each
sample, and asyncssh re-arms its keep-alive timer (a ``call_later``) on every packet it
receives. :meth:`SshTransport.keepalive` turns them off while samples come and on when the
host falls silent (the watcher's stale sweep), so a cut network still ends in a dropped
connection and a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Protocol

import asyncssh

from llmaos_agent.protocol import MAX_LINE_BYTES
from llmaos_tui.fleet import deploy
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import LineTooLong, LinkDown, Transport

STDERR_KEEP = 2000
PAUSE_BYTES = 4 * MAX_LINE_BYTES
"""Lines queued and not yet read past which the channel stops taking data (SSH's window
then holds the agent back) until they are read."""
LINE_COST = 64
"""What a queued line costs beyond its bytes (the object, the deque's slot), counted
against PAUSE_BYTES so that a flood of short lines is bounded too."""


class _Session(asyncssh.SSHClientSession[bytes]):
    """asyncssh's callbacks for the channel, passed on to the transport."""

    def __init__(self, transport: SshTransport) -> None:
        self._t = transport

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self._t._on_stderr(data)
        else:
            self._t._on_data(data)

    def eof_received(self) -> bool:
        self._t._on_eof()
        return False  # asyncssh sends our EOF too: the agent's attach has nothing more

    def connection_lost(self, exc: Exception | None) -> None:
        self._t._on_lost(exc)


class LinkFacts(Protocol):
    """What the transport reads of its link (an SshLink) to word an agent's exit."""

    spec: HostSpec
    python_used: str | None

    @property
    def windows(self) -> bool: ...


class SshTransport(Transport):
    """The agent's stdout, split into lines here so a line's size is bounded as it arrives."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        link: LinkFacts,
        keepalive: tuple[float, int] = (5.0, 3),
    ) -> None:
        self.conn = conn
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._link = link
        self._keepalive = keepalive  # interval and count, when probes are on
        self._buf = bytearray()  # the line being received
        self._lines: deque[bytes] = deque()  # received and not yet read (before the pump)
        self._queued = 0  # their bytes
        self._paused = False
        self._eof = False
        self._lost = False
        self._error: BaseException | None = None
        self._on_line: Callable[[bytes], None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._stderr = bytearray()

    async def start(self, command: str) -> None:
        """Run ``command`` on the connection, its stdout read from now on."""
        self.chan, _ = await self.conn.create_session(
            lambda: _Session(self), command, encoding=None
        )

    # -- asyncssh's side (called from its packet handling; never raises into it)

    def _on_data(self, data: bytes) -> None:
        if self._error is not None or not data:
            return
        buf = self._buf
        if not buf and data.find(b"\n") == len(data) - 1:
            # One whole line in one packet, the usual case: no copy.
            if len(data) > MAX_LINE_BYTES:
                self._fail(_too_long())
            else:
                self._deliver(data)
            return
        buf += data
        start = 0
        while self._error is None and (nl := buf.find(b"\n", start)) >= 0:
            if nl + 1 - start > MAX_LINE_BYTES:
                self._fail(_too_long())
                break
            self._deliver(bytes(buf[start : nl + 1]))
            start = nl + 1
        del buf[:start]
        if len(buf) > MAX_LINE_BYTES and self._error is None:
            buf.clear()
            self._fail(_too_long())

    def _deliver(self, line: bytes) -> None:
        on_line = self._on_line
        if on_line is not None:
            try:
                on_line(line)
            except BaseException as exc:  # noqa: BLE001 - handed to the pump, which raises it
                self._fail(exc)
            return
        self._lines.append(line)
        self._queued += len(line) + LINE_COST
        if self._queued > PAUSE_BYTES and not self._paused and self.chan is not None:
            self._paused = True
            self.chan.pause_reading()
        self._wake()

    def _on_stderr(self, data: bytes) -> None:
        self._stderr += data
        del self._stderr[:-STDERR_KEEP]

    def _on_eof(self) -> None:
        if self._buf and self._error is None:
            line, self._buf = bytes(self._buf), bytearray()
            self._deliver(line)  # the last line, without its newline
        self._eof = True
        self._wake()

    def _on_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._eof and self._error is None:
            self._error = LinkDown(f"SSH connection lost: {ssh_reason(exc)}")
        elif not self._eof:
            self._on_eof()  # closed with no EOF first (some servers): the end all the same
        self._lost = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        if self.chan is not None and not self._paused:
            self._paused = True
            self.chan.pause_reading()  # nothing more is wanted from this agent
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # -- the session's side

    async def readline(self) -> bytes:
        while True:
            if self._lines:
                line = self._lines.popleft()
                self._queued -= len(line) + LINE_COST
                if self._paused and self._error is None and self._queued <= PAUSE_BYTES // 2:
                    self._resume()
                return line
            if self._error is not None:
                raise self._error
            if self._eof or self._lost:
                return b""
            await self._wait()

    async def pump(self, on_line: Callable[[bytes], None]) -> None:
        while self._lines:  # what came before the pump, in order
            line = self._lines.popleft()
            self._queued -= len(line) + LINE_COST
            on_line(line)
        self._on_line = on_line
        try:
            if self._paused and self._error is None:
                self._resume()  # delivers what the channel held, through on_line
            while self._error is None and not (self._eof or self._lost):
                await self._wait()
            if self._error is not None:
                raise self._error
        finally:
            self._on_line = None
            if not (self._eof or self._lost) and not self._paused and self.chan is not None:
                # Left early (cancelled: a failed handshake, the console quitting): no one
                # reads this channel again, so it takes nothing more in.
                self._paused = True
                self.chan.pause_reading()

    def _resume(self) -> None:
        self._paused = False
        if self.chan is not None:
            self.chan.resume_reading()

    def keepalive(self, on: bool, stale_after: float = 0.0) -> None:
        interval, count = self._keepalive
        if self._lost:
            return  # a dead connection: no timer to arm on it
        if not on and stale_after > interval * (count + 1):
            # Samples too far apart (an agent at --interval 60): the host would turn stale
            # later than the probes find a dead link, so the probes stay on.
            on = True
        with contextlib.suppress(Exception):  # a connection already closing
            self.conn.set_keepalive(interval if on else 0, count)

    def write(self, data: bytes) -> None:
        if self.chan is not None:
            with contextlib.suppress(Exception):
                self.chan.write(data)

    async def close(self) -> None:
        chan = self.chan
        if chan is not None and (self._error is not None or self._paused):
            # The agent may be blocked on a full window it will never see opened: our EOF
            # would wait for it in vain. The channel goes at once (its buffer dropped).
            with contextlib.suppress(Exception):
                chan.close()
        elif chan is not None:
            with contextlib.suppress(Exception):
                chan.write_eof()  # attach exits on stdin EOF
            with contextlib.suppress(Exception):
                await asyncio.wait_for(chan.wait_closed(), 2.0)
        self.conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), 2.0)

    async def end_reason(self) -> str:
        chan = self.chan
        if chan is None:
            return "the SSH connection closed"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(chan.wait_closed(), 2.0)
        lines = self._stderr.decode(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else ""
        code = chan.get_exit_status()
        signal = chan.get_exit_signal()
        if signal:  # its status then reads -1: the signal is the news
            return f"the agent was killed by SIG{signal[0]}"
        if code is None:
            return "the SSH connection closed"
        link = self._link
        return deploy.explain_exit(code, tail, link.python_used or link.spec.python, link.windows)


def _too_long() -> LineTooLong:
    return LineTooLong(f"the agent sent a line over the {MAX_LINE_BYTES} byte limit")


def ssh_reason(exc: BaseException) -> str:
    """An SSH failure in the operator's words (asyncssh's reason, not its class)."""
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
