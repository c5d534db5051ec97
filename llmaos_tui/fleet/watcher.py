"""Keeps one host's link up: connect, read, mark stale or down, reconnect with backoff.

One watcher per host, each an asyncio task (a Textual worker in the console), so
a slow or broken host never stalls another. Whatever goes wrong ends as the
host's status and reason; nothing escapes to crash the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

from msgspec import Struct

from llmaos_agent.protocol import (
    ContainerDelta,
    Hello,
    History,
    Notification,
    RequestDelta,
    Sample,
)
from llmaos_tui.fleet.link import Link, LinkDown, Transport
from llmaos_tui.fleet.session import AgentSession
from llmaos_tui.fleet.state import HostState, HostStatus


class Backoff:
    """Exponential backoff with full jitter; reset after a link that stayed up."""

    def __init__(self, first: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        self.first = first
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def next(self) -> float:
        ceiling = min(self.cap, self.first * (2**self.attempt))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class HostWatcher:
    def __init__(
        self,
        state: HostState,
        link: Link,
        notify: Callable[[HostState], None],
        *,
        stale_after: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.state = state
        self.link = link
        self.notify = notify
        self.stale_after = stale_after
        self.backoff = backoff or Backoff()
        self.session: AgentSession | None = None
        self._up_since: float | None = None
        state.target = link.target
        link.on_phase = self._phase

    def _phase(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            self._set(HostStatus(name))

    async def run(self) -> None:
        """Forever: the caller cancels it (the console quitting)."""
        while True:
            # A host that is down stays down, with its reason, until it is back up.
            if self.state.status is not HostStatus.DOWN:
                self._set(HostStatus.CONNECTING)
            await self._attempt()
            if self._up_since is not None and time.monotonic() - self._up_since > 10.0:
                self.backoff.reset()
            await asyncio.sleep(self.backoff.next())

    async def _attempt(self) -> None:
        """One connection, from open to its end; the host is DOWN with the reason after."""
        transport: Transport | None = None
        try:
            try:
                transport = await self.link.open()
                reason = await self._serve(transport)
            except LinkDown as exc:
                reason = str(exc)
            except (OSError, EOFError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must not take the console down
                reason = f"internal error: {type(exc).__name__}: {exc}"
            self.session = None
            self._set(HostStatus.DOWN, reason)  # before closing, which may take seconds
        finally:
            # Also when cancelled (the console quitting): never leave an agent process behind.
            self.session = None
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.close()

    async def _serve(self, transport: Transport) -> str:
        self._up_since = None
        session = AgentSession(transport, self._on_notification, self.state.warnings.append)
        hello = await session.read_hello()
        self.state.on_hello(hello)
        reader = asyncio.ensure_future(session.run())
        try:
            handshake = asyncio.ensure_future(session.handshake())
            done, _ = await asyncio.wait({reader, handshake}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                handshake.cancel()
                return reader.result()
            handshake.result()
            self.session = session
            self._up_since = time.monotonic()
            self._set(HostStatus.UP)
            stale = asyncio.ensure_future(
                self._watch_stale(hello) if self.link.live else asyncio.Event().wait()
            )
            try:
                return await reader
            finally:
                stale.cancel()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _watch_stale(self, hello: Hello) -> None:
        # Two and a half missed samples: a cut network shows as stale within 3 s at
        # 1 Hz. Sleeping until that moment, not polling, costs one wake-up a sample.
        limit = self.stale_after or 2.5 * hello.interval
        while True:
            due = self.state.last_rx + limit - time.monotonic()
            if due > 0:
                await asyncio.sleep(due + 0.01)
                continue
            if self.state.status is HostStatus.UP:
                quiet = time.monotonic() - self.state.last_rx
                self._set(HostStatus.STALE, f"no sample for {quiet:.1f} s")
            await asyncio.sleep(limit)

    async def call(self, method: str, params: Struct, timeout: float = 10.0) -> Any:
        """Make a call on the host's agent; LinkDown when the host is not up."""
        session = self.session
        if session is None:
            raise LinkDown(f"{self.state.name} is {self.state.status.value}; try again when up")
        return await session.call(method, params, timeout=timeout)

    def _on_notification(self, msg: Notification) -> None:
        st = self.state
        if isinstance(msg.params, Sample):
            st.on_sample(msg.params)
            if st.status is HostStatus.STALE:
                st.set_status(HostStatus.UP)
            self.notify(st)
        elif isinstance(msg.params, History):
            st.on_history(msg.params.samples)
            if msg.params.last:
                self.notify(st)
        elif isinstance(msg.params, RequestDelta):
            st.on_requests(msg.params)
            if msg.params.last:
                self.notify(st)
        elif isinstance(msg.params, ContainerDelta):
            st.on_containers(msg.params)
            if msg.params.last:
                self.notify(st)
        elif isinstance(msg.params, Hello):
            st.warnings.append("a second hello in one session")

    def _set(self, status: HostStatus, reason: str = "") -> None:
        self.state.set_status(status, reason)
        self.notify(self.state)
