"""The console's side of one agent connection: hello, calls, and the notification stream.

A line that does not parse is an error for that line (kept as a warning on the
host); many of them in a short time, a line over the size limit, or a wrong
protocol version take the link down with the reason.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import platform
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from msgspec import Struct

from llmaos_agent.protocol import (
    CALLS,
    PROTOCOL_VERSION,
    Handshake,
    Hello,
    Notification,
    ProtocolError,
    Response,
    RpcError,
    VersionMismatch,
    decode,
    decode_result,
    encode_request,
)
from llmaos_tui import __version__
from llmaos_tui.fleet.link import LinkDown, Transport

GARBAGE_LIMIT = 5
"""Malformed lines tolerated within GARBAGE_WINDOW seconds before the host is taken down."""
GARBAGE_WINDOW = 10.0
FLOOD_LINES = 1000
"""Lines tolerated within FLOOD_WINDOW seconds: an agent sends a few a second, and
its history at attach in a handful of large chunks; more is a runaway agent."""
FLOOD_WINDOW = 2.0


def operator() -> str:
    """Who sits at this console, as the audit logs name them: user@machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{platform.node() or 'localhost'}"[:256]


class CallError(Exception):
    """The agent answered a call with an error."""

    def __init__(self, err: RpcError) -> None:
        super().__init__(err.message)
        self.code = err.code


class AgentSession:
    def __init__(
        self,
        transport: Transport,
        on_notification: Callable[[Notification], None],
        on_warning: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.transport = transport
        self.on_notification = on_notification
        self.on_warning = on_warning
        self.hello: Hello | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Response], str]] = {}
        self._garbage: deque[float] = deque()
        self._closed: str | None = None
        self._window_start = 0.0
        self._window_lines = 0

    async def read_hello(self, timeout: float = 15.0) -> Hello:
        try:
            line = await asyncio.wait_for(self.transport.readline(), timeout)
        except asyncio.TimeoutError:
            raise LinkDown(f"the agent said nothing for {timeout:.0f} s") from None
        if not line:
            raise LinkDown(await self.transport.end_reason())
        try:
            msg = decode(line, requests=False)
        except VersionMismatch as exc:
            raise LinkDown(str(exc)) from None
        except ProtocolError as exc:
            raise LinkDown(f"the agent did not say hello: {exc}; got {_preview(line)}") from None
        if not (isinstance(msg, Notification) and isinstance(msg.params, Hello)):
            raise LinkDown(f"the agent did not say hello first; got {_preview(line)}")
        self.hello = msg.params
        return msg.params

    async def run(self) -> str:
        """Read until the stream ends; returns why it ended, raises LinkDown on abuse."""
        try:
            await self.transport.pump(self._on_line)
            return await self.transport.end_reason()
        finally:
            self._fail_pending(LinkDown("the link went down"))

    def _on_line(self, line: bytes) -> None:
        # Answers to our own calls are not counted: their number is ours to bound (a
        # script may make thousands of calls); the rest is the agent's.
        if not (line.strip() and self._handle(line)):
            self._count_line()

    async def handshake(self, timeout: float = 10.0) -> None:
        try:
            await self.call(
                "handshake",
                Handshake(
                    protocol=PROTOCOL_VERSION,
                    client=f"llmaos-tui {__version__}",
                    operator=operator(),
                ),
                timeout=timeout,
            )
        except CallError as exc:
            raise LinkDown(str(exc)) from None

    async def call(self, method: str, params: Struct, timeout: float = 10.0) -> Any:
        spec = CALLS.get(method)
        if spec is None:
            raise ValueError(f"unknown method {method!r}")
        rid = next(self._ids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (fut, method)
        self.transport.write(encode_request(rid, method, params))
        try:
            resp = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise LinkDown(f"the agent did not answer {method!r} within {timeout:.0f} s") from None
        finally:
            self._pending.pop(rid, None)
        if resp.error is not None:
            raise CallError(resp.error)
        try:
            return decode_result(resp, spec[1])
        except ProtocolError as exc:
            raise LinkDown(f"bad answer to {method!r}: {exc}") from None

    def _handle(self, line: bytes) -> bool:
        """Act on one line; True when it answered a call of ours."""
        try:
            msg = decode(line, requests=False)
        except ProtocolError as exc:
            self._garbage_line(exc, line)
            return False
        if isinstance(msg, Notification):
            self.on_notification(msg)
        elif isinstance(msg, Response):
            entry = self._pending.get(msg.id) if isinstance(msg.id, int) else None
            if entry is None:
                self.on_warning(f"answer to no call (id {msg.id!r})")
            elif not entry[0].done():
                entry[0].set_result(msg)
                return True
        return False

    def _count_line(self) -> int:
        now = time.monotonic()
        if now - self._window_start > FLOOD_WINDOW:
            self._window_start, self._window_lines = now, 0
        self._window_lines += 1
        if self._window_lines > FLOOD_LINES:
            raise LinkDown(
                f"the agent floods the link: over {FLOOD_LINES} messages in {FLOOD_WINDOW:.0f} s"
            )
        return self._window_lines

    def _garbage_line(self, exc: ProtocolError, line: bytes) -> None:
        now = time.monotonic()
        self._garbage.append(now)
        while self._garbage and now - self._garbage[0] > GARBAGE_WINDOW:
            self._garbage.popleft()
        self.on_warning(f"bad line from agent: {exc}")
        if len(self._garbage) >= GARBAGE_LIMIT:
            raise LinkDown(f"the agent speaks garbage: {exc}; last line {_preview(line)}")

    def _fail_pending(self, exc: Exception) -> None:
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()


def _preview(line: bytes, n: int = 60) -> str:
    text = line[:n].decode(errors="replace").rstrip()
    return repr(text + ("..." if len(line) > n else ""))
