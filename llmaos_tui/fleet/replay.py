"""A link that plays back a recorded agent stream (demos, screenshots, snapshot tests).

The file holds the lines an agent sent, one per line, as ``llmaos-agent`` wrote
them. Calls are answered the way an agent would answer a console of this
version; after the last line the stream stays open, as a quiet agent's would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from llmaos_agent import __version__
from llmaos_agent.protocol import (
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION,
    HandshakeResult,
    ProtocolError,
    Request,
    decode,
    encode_error,
    encode_result,
)
from llmaos_tui.fleet.link import Link, LinkDown, Transport


class ReplayTransport(Transport):
    def __init__(self, lines: list[bytes], delay: float) -> None:
        self._lines = lines
        self._delay = delay
        self._answers: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = asyncio.Event()

    async def readline(self) -> bytes:
        if not self._answers.empty():
            return self._answers.get_nowait()
        if self._lines:
            if self._delay:
                await asyncio.sleep(self._delay)
            return self._lines.pop(0)
        getter = asyncio.ensure_future(self._answers.get())
        closed = asyncio.ensure_future(self._closed.wait())
        done, pending = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        return getter.result() if getter in done else b""

    def write(self, data: bytes) -> None:
        for line in data.splitlines():
            try:
                msg = decode(line, notifications=False)
            except ProtocolError:
                continue
            if not isinstance(msg, Request):
                continue
            if msg.method == "handshake":
                answer = encode_result(
                    msg.id, HandshakeResult(protocol=PROTOCOL_VERSION, agent_version=__version__)
                )
            else:
                answer = encode_error(msg.id, METHOD_NOT_FOUND, "a recording answers no calls")
            self._answers.put_nowait(answer)

    async def close(self) -> None:
        self._closed.set()

    async def end_reason(self) -> str:
        return "the recording ended"


class ReplayLink(Link):
    live = False

    def __init__(self, path: Path, name: str | None = None, delay: float = 0.0) -> None:
        super().__init__(name or path.stem)
        self.path = path
        self.delay = delay

    @property
    def target(self) -> str:
        return f"recording {self.path.name}"

    async def open(self) -> Transport:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise LinkDown(f"cannot read recording {self.path}: {exc.strerror}") from exc
        lines = [ln + b"\n" for ln in data.splitlines() if ln.strip()]
        return ReplayTransport(lines, self.delay)
