"""How the console reaches an agent: a Link opens a Transport of newline-delimited bytes.

The local link runs ``llmaos-agent attach`` as a subprocess; the SSH link (next)
runs the same command over an SSH channel. Everything above the transport,
the protocol and the state, is shared.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class LinkDown(Exception):
    """The link to an agent is down; the message says why, for the operator."""


class LineTooLong(LinkDown):
    pass


class AuthRefused(LinkDown):
    """The host would not have us, or we would not have the host: a refused login, a
    host key that changed, an unknown key the operator did not trust.

    Trying again changes nothing until someone changes something (a key, known_hosts,
    authorized_keys), and each try is a full login in the host's auth log, so the
    watcher does not retry it on its own: it waits to be asked.
    """


class Transport(ABC):
    @abstractmethod
    async def readline(self) -> bytes:
        """The next line with its newline; ``b""`` at end of stream.

        Raises :class:`LineTooLong` for a line over the protocol limit, which is
        never held whole, so memory stays bounded; the stream may end there.
        """

    async def pump(self, on_line: Callable[[bytes], None]) -> None:
        """Hand every line to ``on_line`` until the stream ends; raises what ``on_line``
        or :meth:`readline` raise. Transports that are handed their bytes (SSH) call
        ``on_line`` as the bytes come, with no task woken per line."""
        n = 0
        while line := await self.readline():
            on_line(line)
            n += 1
            if n % 64 == 0:
                # A stream that always has data ready never suspends readline(); yield
                # now and then so one busy host cannot starve the others.
                await asyncio.sleep(0)

    def keepalive(self, on: bool, stale_after: float = 0.0) -> None:
        """Probe the link when it is quiet (``on``), or leave it to the data to show it
        alive, the host turning stale after ``stale_after`` s of silence; a transport
        without probes ignores it."""
        return None

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def end_reason(self) -> str:
        """Why the stream ended, as far as the transport knows (exit code, stderr)."""
        return "the agent closed the connection"


class Link(ABC):
    """A way to reach one host's agent. ``open`` may be called again after a failure."""

    def __init__(self, name: str) -> None:
        self.name = name
        # Told of a phase of open() worth showing ("deploying"); set by the watcher.
        self.on_phase: Callable[[str], None] | None = None

    live = True
    """False for a recording: its samples stop by design, so it never turns stale."""

    login: str | None = None
    """The user the host's agent runs as (for SSH, the login the server accepted): who the
    host's audit log names as the operator, so the console's line names the same."""

    @abstractmethod
    async def open(self) -> Transport: ...

    @property
    def target(self) -> str:
        """Where this link goes, for display."""
        return self.name


def raise_if_cancelling() -> None:
    """Raise CancelledError when the running task has been asked to stop and an
    ``asyncio.wait_for`` swallowed it: on Python 3.11 and before, a cancel that comes as the
    awaited call finishes is lost, wait_for returning its result. A watcher that went on
    from there would reconnect for ever under a caller waiting for it to end."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+; 3.10 cannot tell
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError


async def reap(*tasks: asyncio.Future[Any], timeout: float | None = None) -> None:
    """Wait for ``tasks`` to end, cancelling those still running after ``timeout``, and drop
    what they raised. A cancellation of the caller itself still propagates: the usual
    ``with suppress(CancelledError): await task`` swallows it when it comes during the
    await, and a watcher whose cancel was swallowed goes on reconnecting for ever."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(set(tasks), timeout=timeout)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending)
    for t in tasks:
        if not t.cancelled():
            t.exception()  # retrieved, so asyncio does not warn of it
