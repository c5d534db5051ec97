"""Keeps one host's link up: connect, read, mark stale or down, reconnect with backoff.

One watcher per host, each an asyncio task (a Textual worker in the console), so
a slow or broken host never stalls another. Whatever goes wrong ends as the
host's status and reason; nothing escapes to crash the console.

Every attempt that does not end in a healthy session, whether the open failed or
the session came up and died at once, is followed by the backoff's wait
(:mod:`llmaos_tui.fleet.backoff`); the host's reason counts it down. A refused
login or host key (:class:`~llmaos_tui.fleet.link.AuthRefused`) is not retried at
all until :meth:`HostWatcher.retry_now`, which also cuts any wait short.

Whether the host's samples carry its process table is the console's choice
(:meth:`HostWatcher.want_procs`, ``procs.watch`` on the wire): a host whose processes no
screen or plan reads costs its figures alone. Every new connection starts with them on,
so the choice is sent again after each reconnect; an agent without the call keeps them on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import Callable
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from llmaos_agent.protocol import (
    METHOD_NOT_FOUND,
    ContainerDelta,
    Hello,
    History,
    Notification,
    ProcWatch,
    RequestDelta,
    Sample,
)
from llmaos_tui.fleet.backoff import Backoff
from llmaos_tui.fleet.link import (
    AuthRefused,
    Link,
    LinkDown,
    Transport,
    raise_if_cancelling,
    reap,
)
from llmaos_tui.fleet.session import AgentSession, CallError
from llmaos_tui.fleet.state import HostState, HostStatus

__all__ = ["RETRY_HINT", "Backoff", "HostWatcher"]

RETRY_HINT = "press R to retry"
"""How a held host says it can be tried again; the console's key for retry_now."""
SWEEP_S = 0.25
"""How often the hosts that are up are checked for silence: a host turns stale at most
this long after its limit (a quarter of the limit, if that is shorter)."""


class _StaleSweep:
    """One timer for every watcher of a loop that checks its hosts for silence.

    A timer per host, slept until its host's last line plus the limit, woke once or twice
    a second per host: with 1,000 hosts that was 4% of the console's busy time headless
    (bench/fleet_scale.py, py-spy). One sweep of every host is a comparison each.
    """

    def __init__(self) -> None:
        self.watchers: dict[HostWatcher, float] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, watcher: HostWatcher, limit: float) -> None:
        self.watchers[watcher] = limit
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    def remove(self, watcher: HostWatcher) -> None:
        self.watchers.pop(watcher, None)
        if not self.watchers and self.task is not None:
            self.task.cancel()  # nothing to watch: no task left behind on the loop
            self.task = None

    async def _run(self) -> None:
        while self.watchers:
            await asyncio.sleep(min(SWEEP_S, min(self.watchers.values()) / 4))
            now = time.monotonic()
            for watcher, limit in list(self.watchers.items()):
                # One host's trouble (its notify raising) must not stop the others' checks;
                # it is kept among that host's warnings, where the operator can see it.
                try:
                    watcher._check_stale(limit, now)
                except Exception as exc:  # noqa: BLE001 - a bug of one host's, not the sweep's
                    watcher.state.warnings.append(
                        f"internal error checking for silence: {type(exc).__name__}: {exc}"
                    )


_SWEEPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _StaleSweep] = (
    weakref.WeakKeyDictionary()
)


def _sweep() -> _StaleSweep:
    """The running loop's sweep (a console has one loop; tests make one each)."""
    loop = asyncio.get_running_loop()
    sweep = _SWEEPS.get(loop)
    if sweep is None:
        sweep = _SWEEPS[loop] = _StaleSweep()
    return sweep


class HostWatcher:
    def __init__(
        self,
        state: HostState,
        link: Link,
        notify: Callable[[HostState], None],
        *,
        stale_after: float | None = None,
        backoff: Backoff | None = None,
        retry_hint: str = RETRY_HINT,
    ) -> None:
        self.state = state
        self.link = link
        self.notify = notify
        self.stale_after = stale_after
        self.backoff = backoff or Backoff()
        self.retry_hint = retry_hint
        self.session: AgentSession | None = None
        self.attempts = 0
        """Attempts made so far (opens begun), for tests and diagnostics."""
        self._retry = asyncio.Event()
        self._waiting = False
        self.procs_wanted = True
        """Whether the console wants this host's process table (:meth:`want_procs`)."""
        self.procs_samples = 0
        """Samples that came with a process table (full or changes): what the wire carried."""
        self.procs_watch_unsupported = False
        """The agent answered METHOD_NOT_FOUND to ``procs.watch``: its table stays on."""
        self._told: bool = True  # what this session's agent holds (a new client: on)
        self._await_full = False  # turned on again: changes before the full table are stale
        self._procs_task: asyncio.Task[None] | None = None
        self._transport: Transport | None = None  # the live session's, while it is up
        self._stale_limit = 0.0  # its silence allowed before the host turns stale
        state.target = link.target
        link.on_phase = self._phase

    def _phase(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            self._set(HostStatus(name))

    def retry_now(self) -> bool:
        """Try the host again at once: ends a backoff wait or a refused login's hold.

        Returns False, and does nothing, when the watcher is not waiting (the host is up
        or an attempt is under way). Call it on the watcher's event loop. The failure
        count is kept, so a host that fails again waits as long as it would have.
        """
        if not self._waiting:
            return False
        self._retry.set()
        return True

    def want_procs(self, on: bool) -> None:
        """Have this host's samples carry its process table, or not. Off, the table held
        is emptied as soon as the agent has heard it (no stale rows; those sent before
        then are applied as they come, so an agent without the call keeps a whole table);
        on again, it fills from the agent's next full table. Sent to the agent when up,
        and after every reconnect; call it on the watcher's loop."""
        if on == self.procs_wanted:
            return
        self.procs_wanted = on
        if not on and self.session is None:
            self._clear_procs()
        self._sync_procs()

    def _clear_procs(self) -> None:
        if self.state.procs:
            self.state.procs.clear()
            self.state.procs_version += 1
            self.notify(self.state)

    def _sync_procs(self) -> None:
        session = self.session
        if session is None or self.procs_watch_unsupported or self._told == self.procs_wanted:
            return
        if self._procs_task is None or self._procs_task.done():
            self._procs_task = asyncio.ensure_future(self._tell_procs(session))

    async def _tell_procs(self, session: AgentSession) -> None:
        """Tell the agent until it holds what is wanted (the wish may change meanwhile)."""
        while self.session is session and self._told != self.procs_wanted:
            on = self.procs_wanted
            # Its next table is a full one; changes before it are to a table not held.
            self._await_full = on
            try:
                await session.call("procs.watch", ProcWatch(on=on))
            except CallError as exc:
                self._await_full = False
                if exc.code == METHOD_NOT_FOUND:  # an older agent: always on, said nowhere
                    self.procs_watch_unsupported = True
                else:
                    self.state.warnings.append(f"procs.watch: {exc}")
                return
            except LinkDown:  # the session ended: the next one is told at its start
                return
            self._told = on
            if not on and not self.procs_wanted:
                # The stream is ordered: every table it sent before this answer is in.
                self._clear_procs()

    async def run(self) -> None:
        """Forever: the caller cancels it (the console quitting)."""
        while True:
            raise_if_cancelling()
            # A press of retry during the attempt must not skip the wait after it.
            self._retry.clear()
            # A host that is down stays down, with its reason, until it is back up.
            if self.state.status is not HostStatus.DOWN:
                self._set(HostStatus.CONNECTING)
            else:
                self.state.show_retrying()
                self.notify(self.state)
            refused = await self._attempt()
            # Measured from the session's start to its end (now): only a session that
            # stayed up resets the count, so a host that was once up and then fails to
            # open, or accepts and drops at once, still backs off.
            wait = self.backoff.failed()
            if refused:
                await self._hold()
            else:
                await self._pause(wait)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (or until retry_now), the reason saying how long is left."""
        until = time.monotonic() + seconds
        self._waiting = True
        try:
            while (left := until - time.monotonic()) > 0:
                self.state.show_retry(until, time.monotonic())
                self.notify(self.state)
                # Wake when the whole seconds shown change, not more often: one update
                # a second per down host, and none at all between them.
                step = left - (math.ceil(left) - 1)
                if await self._woken(step):
                    return
        finally:
            self._waiting = False

    async def _hold(self) -> None:
        """Wait for retry_now, however long: retrying a refusal only repeats it."""
        self.state.show_held(self.retry_hint)
        self.notify(self.state)
        self._waiting = True
        try:
            await self._retry.wait()
        finally:
            self._waiting = False

    async def _woken(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._retry.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _attempt(self) -> bool:
        """One connection, from open to its end; the host is DOWN with the reason after.

        True when the host refused us or we it (AuthRefused): not to be retried unasked.
        """
        transport: Transport | None = None
        refused = False
        self.attempts += 1
        try:
            try:
                transport = await self.link.open()
                reason = await self._serve(transport)
            except LinkDown as exc:
                reason = str(exc)
                refused = isinstance(exc, AuthRefused)
            except (OSError, EOFError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - a bug must not take the console down; shown
                reason = f"internal error: {type(exc).__name__}: {exc}"
            self.session = None
            self._set(HostStatus.DOWN, reason)  # before closing, which may take seconds
        finally:
            # Also when cancelled (the console quitting): never leave an agent process behind.
            self.session = None
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.close()
        return refused

    async def _serve(self, transport: Transport) -> str:
        session = AgentSession(transport, self._on_notification, self.state.warnings.append)
        hello = await session.read_hello()
        raise_if_cancelling()  # asked to stop as the hello came: not up, then
        self.state.on_hello(hello)
        reader = asyncio.ensure_future(session.run())
        try:
            handshake = asyncio.ensure_future(session.handshake())
            done, _ = await asyncio.wait({reader, handshake}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                handshake.cancel()
                return reader.result()
            handshake.result()
            raise_if_cancelling()
            self.session = session
            # A new client of the agent gets the table, a full one first.
            self._told, self._await_full = True, False
            self.procs_watch_unsupported = False  # the host may have been upgraded
            if self._procs_task is not None:
                self._procs_task.cancel()  # the last session's: it tells no one now
                self._procs_task = None
            self._sync_procs()
            self.backoff.up()
            self._set(HostStatus.UP)
            if self.link.live:
                # Two and a half missed samples: a cut network shows as stale within 3 s
                # at 1 Hz. While samples come they show the link alive; probes start when
                # the host turns stale (_check_stale), so a cut link still drops.
                self._stale_limit = self.stale_after or 2.5 * hello.interval
                _sweep().add(self, self._stale_limit)
                self._transport = transport
                transport.keepalive(False, self._stale_limit)
            try:
                return await reader
            finally:
                _sweep().remove(self)
                self._transport = None
        finally:
            reader.cancel()
            await reap(reader)

    def _check_stale(self, limit: float, now: float) -> None:
        st = self.state
        if st.status is HostStatus.UP and now - st.last_rx > limit:
            if self._transport is not None:
                self._transport.keepalive(True, limit)
            self._set(HostStatus.STALE, f"no sample for {now - st.last_rx:.1f} s")

    async def call(self, method: str, params: Struct, timeout: float = 10.0) -> Any:
        """Make a call on the host's agent; LinkDown when the host is not up."""
        session = self.session
        if session is None:
            raise LinkDown(f"{self.state.name} is {self.state.status.value}; try again when up")
        return await session.call(method, params, timeout=timeout)

    def _on_notification(self, msg: Notification) -> None:
        st = self.state
        if isinstance(msg.params, Sample):
            st.on_sample(self._procs_of(msg.params))
            if st.status is HostStatus.STALE:
                self._heard_again()
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

    def _heard_again(self) -> None:
        """A stale host's sample: up, and its samples are its liveness again."""
        if self._transport is not None:
            self._transport.keepalive(False, self._stale_limit)
        self.state.set_status(HostStatus.UP)

    def _procs_of(self, s: Sample) -> Sample:
        """The sample as the table held takes it: without its processes while they are
        changes to a table emptied since (the agent told to send again, its full table
        not in yet)."""
        if s.procs is None:
            return s
        self.procs_samples += 1
        if self._await_full and not s.procs.full:
            return replace(s, procs=None)
        if s.procs.full:
            self._await_full = False
        return s

    def _set(self, status: HostStatus, reason: str = "") -> None:
        self.state.set_status(status, reason)
        self.notify(self.state)
