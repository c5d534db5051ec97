"""Each host's Docker engine, reached through the link the console already holds to it.

The console (and ``plan --apply``) watch every host over one SSH connection each; a
container move needs both hosts' engines. :class:`EnginePool` forwards a host's engine
socket over that connection (:func:`~llmaos_tui.ops.docker_forward.forward_engine`) on
first use and keeps the engine while the connection lasts; ``local`` hosts open this
machine's engine socket directly. Engines are made on the running loop; their docker
clients must be used off it (``asyncio.to_thread``), as docker_forward explains.

A move's bulk streams (the image, the volumes' data) do not go over the link's connection:
:meth:`EnginePool.for_move` opens a connection of its own to each host for the move, as
the ``move`` command does (verified exactly as the link verifies its own: the link's
spec, options and trust dialog, through :func:`~llmaos_tui.fleet.ssh.connect`), with
AES-GCM and larger packets (``docker_forward.bulk_options``), and closes them when the
move ends however it ends. Measured (docs/BENCHMARKS.md, container move): the image
stream over the link's connection, default cipher, took ~1.4x as long.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.ssh import SshLink, connect

if TYPE_CHECKING:  # the docker SDK is optional: loaded on the first container move
    from llmaos_tui.fleet.link import Link
    from llmaos_tui.fleet.state import HostState
    from llmaos_tui.ops.docker_forward import Engine


class EnginePool:
    """Engines by host name. ``link_for`` names each host's link (None: no such host);
    ``state_for`` its state, whose GPU count and free memory are handed to the move's
    pre-checks on every :meth:`get`."""

    def __init__(
        self,
        link_for: Callable[[str], Link | None],
        state_for: Callable[[str], HostState | None],
    ) -> None:
        self._link_for = link_for
        self._state_for = state_for
        self._engines: dict[str, tuple[object, Engine]] = {}  # host -> (its connection, engine)

    async def get(self, host: str) -> Engine:
        """The host's engine, forwarded over its link's connection now (or kept from an
        earlier call on the same connection). Runs on the loop; raises
        :class:`~llmaos_tui.ops.docker_forward.EngineUnavailable` when there is none."""
        from llmaos_agent.collect.containers import default_socket  # noqa: PLC0415
        from llmaos_tui.ops.docker_forward import (  # noqa: PLC0415 (optional SDK)
            EngineUnavailable,
            forward_engine,
            local_engine,
        )

        link = self._link_for(host)
        if link is None:
            raise EngineUnavailable(f"no host {host!r}")
        conn: object = "local" if isinstance(link, LocalLink) else getattr(link, "conn", None)
        if conn is None:
            st = self._state_for(host)
            now = f" (it is {st.status.value})" if st is not None else ""
            raise EngineUnavailable(f"{host} has no SSH connection now{now}")
        cached = self._engines.get(host)
        if cached is not None and cached[0] is conn:
            eng = cached[1]
        else:
            if cached is not None:
                await _close(cached[1])
            if isinstance(link, LocalLink):
                eng = await asyncio.to_thread(local_engine, host, default_socket())
            elif isinstance(link, SshLink) and link.conn is not None:
                eng = await forward_engine(link.conn, host)
            else:
                raise EngineUnavailable(f"{host}: its containers cannot be reached (no SSH link)")
            self._engines[host] = (conn, eng)
        self._facts(host, eng)
        return eng

    def _facts(self, host: str, eng: Engine) -> None:
        st = self._state_for(host)
        if st is not None:
            eng.gpus, eng.mem_available = st.gpu_count, st.mem_available

    async def _open_own(self, host: str) -> Engine:
        """The host's engine over a new connection of its own (bulk ciphers); the caller
        closes it. A host that is not up now is refused as :meth:`get` refuses it."""
        from llmaos_agent.collect.containers import default_socket  # noqa: PLC0415
        from llmaos_tui.ops.docker_forward import (  # noqa: PLC0415 (optional SDK)
            EngineUnavailable,
            bulk_options,
            forward_engine,
            local_engine,
        )

        link = self._link_for(host)
        if link is None:
            raise EngineUnavailable(f"no host {host!r}")
        if isinstance(link, LocalLink):
            eng = await asyncio.to_thread(local_engine, host, default_socket())
        elif isinstance(link, SshLink):
            if link.conn is None:
                st = self._state_for(host)
                now = f" (it is {st.status.value})" if st is not None else ""
                raise EngineUnavailable(f"{host} has no SSH connection now{now}")
            conn = await connect(link.spec, link.options, ask=link.ask, **bulk_options())
            try:
                eng = await forward_engine(conn, host, owns_conn=True)
            except BaseException:
                conn.close()
                raise
        else:
            raise EngineUnavailable(f"{host}: its containers cannot be reached (no SSH link)")
        self._facts(host, eng)
        return eng

    @contextlib.asynccontextmanager
    async def for_move(self, source: str, target: str) -> AsyncIterator[tuple[Engine, Engine]]:
        """Both hosts' engines for one move, each on a connection of its own opened now
        (both at once); every one opened is closed when the block ends, however it ends."""
        opened = await asyncio.gather(
            self._open_own(source), self._open_own(target), return_exceptions=True
        )
        engines = [e for e in opened if not isinstance(e, BaseException)]
        try:
            for e in opened:
                if isinstance(e, BaseException):
                    raise e
            yield engines[0], engines[1]
        finally:
            # Shielded: a cancelled move still lets go of its connections.
            await asyncio.shield(asyncio.gather(*(_close(e) for e in engines)))

    async def aclose(self) -> None:
        """Close every engine (their forwards; the links' connections stay)."""
        engines, self._engines = self._engines, {}
        for _conn, eng in engines.values():
            await _close(eng)


async def _close(eng: Engine) -> None:
    with contextlib.suppress(Exception):
        await (asyncio.to_thread(eng.close) if eng._local else eng.aclose())
