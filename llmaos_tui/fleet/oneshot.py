"""One short session with one host's agent, for the CLI's subcommands (submit, prio, ...)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from llmaos_agent.protocol import Notification
from llmaos_tui.fleet.link import Link, reap
from llmaos_tui.fleet.session import AgentSession


@contextlib.asynccontextmanager
async def connected(link: Link, timeout: float = 20.0) -> AsyncIterator[AgentSession]:
    """Open ``link``, read the hello, handshake; close it on the way out."""

    def ignore(_msg: Notification) -> None:
        pass  # samples and the like: a one-shot command has no use for them

    transport = await asyncio.wait_for(link.open(), timeout)
    reader: asyncio.Future[str] | None = None
    try:
        session = AgentSession(transport, ignore)
        await session.read_hello(timeout)
        reader = asyncio.ensure_future(session.run())
        await session.handshake(timeout)
        yield session
    finally:
        if reader is not None:
            reader.cancel()
            await reap(reader)
        await transport.close()
