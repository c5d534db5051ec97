"""The console's one headless service for container moves: engines, journal, audit, recovery.

The App (its move dialog, its plan review) and the CLI (``plan --apply``) hold one
:class:`Moves` and go through it for every step of a container move: the target's image
check, the pre-check, the move itself, the plans' container moves, and finishing the moves
an earlier console left unfinished. It owns the hosts' engines (the console's: an
:class:`~llmaos_tui.ops.engine_pool.EnginePool` over the links the fleet is watched on;
the ``move`` command's: SSH connections of its own, see :func:`opened_engines`), the move
journal (opened on first use; a damaged one is reported, never replaced) and the
audit log, so a second engine or a new caller is wired once, here. Everything runs on the
event loop; the docker calls go to worker threads. No UI is imported: results and
progress come back as values (:class:`~llmaos_tui.ops.move_model.MoveResult`,
:class:`~llmaos_tui.ops.move_model.Progress`), never as prose to parse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.journal import MoveJournal
from llmaos_tui.ops.rebalance import ContainerMoves

if TYPE_CHECKING:  # the docker SDK is optional: loaded on the first container move
    from llmaos_tui.balance import Move
    from llmaos_tui.ops.container_move import MoveEngine, MovePlan, MoveResult, Progress
    from llmaos_tui.ops.docker_forward import Engine

ENGINE_WAIT_S = 60.0
"""How long a recovery (on its worker thread) waits for a host's engine from the loop."""


EngineFor = Callable[[str], Awaitable["Engine"]]
MoveEngines = Callable[[str, str], AbstractAsyncContextManager[tuple["Engine", "Engine"]]]
"""A move's own engines (source, target), open for the ``async with`` block only."""


class Moves:
    """Container moves for one console. ``engine_for(host)`` gives a host's engine on the
    loop (an EnginePool's ``get``), ``close_engines`` lets them go at the end.
    ``move_engines``: where a move gets its engines when not from ``engine_for`` (the
    console's :meth:`~llmaos_tui.ops.engine_pool.EnginePool.for_move`: connections of the
    move's own, for its streams, closed when it ends). ``journal``: an open journal to
    use (tests, a caller that already has one), else the one at ``journal_path``
    (default: the console's state directory), opened on first use."""

    def __init__(
        self,
        engine_for: EngineFor,
        audit: AuditLog,
        *,
        close_engines: Callable[[], Awaitable[None]] | None = None,
        move_engines: MoveEngines | None = None,
        read_only: bool = False,
        journal: MoveJournal | None = None,
        journal_path: Path | None = None,
    ) -> None:
        self._engine_for = engine_for
        self._close_engines = close_engines
        self._move_engines = move_engines
        self.audit = audit
        self.read_only = read_only
        self._journal = journal
        self._journal_path = journal_path

    @property
    def journal(self) -> MoveJournal:
        """The move journal; raises :class:`~llmaos_tui.ops.journal.JournalUnavailable`
        (or OSError) when it cannot be opened, every time it is asked (nothing is moved
        without it)."""
        if self._journal is None:
            self._journal = MoveJournal(self._journal_path)
        return self._journal

    async def engine(self, host: str) -> Engine:
        return await self._engine_for(host)

    async def mover(self, source: str, target: str) -> MoveEngine:
        from llmaos_tui.ops.container_move import MoveEngine  # noqa: PLC0415 (optional SDK)

        src, dst = await asyncio.gather(self.engine(source), self.engine(target))
        return MoveEngine(src, dst, self.journal, self.audit, read_only=self.read_only)

    async def has_image(self, host: str, image_id: str) -> bool | None:
        """Whether ``host``'s engine has the image (so it need not be streamed); None when
        the engine cannot say (the pre-check then says what is wrong with that host)."""
        try:
            api = (await self.engine(host)).client.api
            return await asyncio.to_thread(_has_image, api, image_id)
        except Exception:  # noqa: BLE001 - any failure is "cannot say", shown as "?"
            return None

    async def precheck(
        self, source: str, target: str, container: str, *, commit: bool = False,
        keep_source: bool = False, live: bool = False,
    ) -> tuple[MovePlan, list[str]]:  # fmt: skip
        """The move's plan and every reason it would be refused (nothing is changed)."""
        mover = await self.mover(source, target)
        plan = await asyncio.to_thread(
            mover.plan, container, commit=commit, keep_source=keep_source
        )
        live_why = await asyncio.to_thread(mover.live_unavailable) if live else None
        return plan, [r.message for r in plan.refusals] + ([live_why] if live_why else [])

    async def move(
        self, source: str, target: str, container: str, *, name: str = "",
        commit: bool = False, keep_source: bool = False, live: bool = False,
        dry_run: bool = False, progress: Callable[[Progress], None] | None = None,
    ) -> MoveResult:  # fmt: skip
        """Move ``container``: it ends moved and verified, or with the source running as
        before. Never raises: an engine or journal that cannot be had is a failed result
        (nothing was changed then). ``progress`` is called from the move's thread."""
        from llmaos_tui.ops.container_move import (  # noqa: PLC0415 (optional SDK)
            MoveEngine,
            MoveResult,
        )

        async def run(mover: MoveEngine) -> MoveResult:
            return await asyncio.to_thread(
                mover.move, container, commit=commit, keep_source=keep_source, live=live,
                dry_run=dry_run, progress=progress,
            )  # fmt: skip

        try:
            if self._move_engines is None:
                return await run(await self.mover(source, target))
            journal = self.journal  # before any connection: nothing is moved without it
            async with self._move_engines(source, target) as (src, dst):
                return await run(
                    MoveEngine(src, dst, journal, self.audit, read_only=self.read_only)
                )
        except Exception as exc:  # noqa: BLE001 - every failure is a result, with its reason
            return MoveResult("failed", name or container, source, target, message=_why(exc))

    def for_plans(
        self, progress: Callable[[Move, Progress], None] | None = None, *,
        stop_timeout: int = 10, settle: float = 3.0,
    ) -> ContainerMoves:  # fmt: skip
        """What :func:`~llmaos_tui.ops.rebalance.apply_move` needs for a plan's container
        moves, through this service's engines and journal (raises as :attr:`journal`)."""
        return ContainerMoves(self.engine, self.journal, progress, stop_timeout, settle)

    async def recover(
        self,
        wait_for_hosts: Callable[[set[str]], Awaitable[None]] | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> list[MoveResult]:
        """Finish the container moves an earlier console left unfinished, forward or back.
        ``wait_for_hosts`` is awaited first with the hosts they name (so their engines can
        be reached). Raises when the journal cannot be read."""
        pending = [r for r in self.journal.unfinished() if r.plan.get("kind") == "container.move"]
        if not pending:
            return []
        from llmaos_tui.ops.container_move import recover_all  # noqa: PLC0415 (optional SDK)

        if wait_for_hosts is not None:
            # An entry of a format this console cannot read may lack them (it is reported).
            await wait_for_hosts(
                {str(r.plan[k]) for r in pending for k in ("source", "target") if k in r.plan}
            )
        loop = asyncio.get_running_loop()

        def engine_for(host: str) -> Engine:  # called from recover_all's thread
            return asyncio.run_coroutine_threadsafe(self.engine(host), loop).result(ENGINE_WAIT_S)

        results: list[MoveResult] = await asyncio.to_thread(
            recover_all, self.journal, self.audit, engine_for, progress=progress
        )
        return results

    async def aclose(self) -> None:
        if self._close_engines is not None:
            await self._close_engines()
        if self._journal is not None:
            self._journal.close()


def opened_engines(
    open_one: Callable[[str], Engine],
) -> tuple[EngineFor, Callable[[], Awaitable[None]]]:
    """``engine_for`` and ``close_engines`` for engines a caller opens itself, blocking
    (the ``move`` command's own SSH connections): each opened once, off the loop, even when
    asked for twice at once; all closed at the end."""
    opening: dict[str, asyncio.Task[Engine]] = {}

    async def engine_for(host: str) -> Engine:
        task = opening.get(host)
        if task is None or (task.done() and task.exception() is not None):
            task = opening[host] = asyncio.ensure_future(asyncio.to_thread(open_one, host))
        return await task

    async def close() -> None:
        for task in opening.values():
            if task.done() and task.exception() is None:
                with contextlib.suppress(Exception):
                    task.result().close()

    return engine_for, close


def _has_image(api: Any, image_id: str) -> bool:
    try:
        api.inspect_image(image_id)
    except Exception as exc:
        if type(exc).__name__ in ("ImageNotFound", "NotFound"):
            return False
        raise
    return True


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc) or type(exc).__name__
