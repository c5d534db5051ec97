"""Each host's Docker engine, reached through the link the console already holds to it.

The console (and ``plan --apply``) watch every host over one SSH connection each; a
container move needs both hosts' engines. :class:`EnginePool` forwards a host's engine
socket over that connection (:func:`~llmaos_tui.ops.docker_forward.forward_engine`) on
first use and keeps the engine while the connection lasts; ``local`` hosts open this
machine's engine socket directly. Engines are made on the running loop; their docker
clients must be used off it (``asyncio.to_thread``), as docker_forward explains.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.ssh import SshLink

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
        st = self._state_for(host)
        if st is not None:
            eng.gpus, eng.mem_available = st.gpu_count, st.mem_available
        return eng

    async def aclose(self) -> None:
        """Close every engine (their forwards; the links' connections stay)."""
        engines, self._engines = self._engines, {}
        for _conn, eng in engines.values():
            await _close(eng)


async def _close(eng: Engine) -> None:
    with contextlib.suppress(Exception):
        await (asyncio.to_thread(eng.close) if eng._local else eng.aclose())
