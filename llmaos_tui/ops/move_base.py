"""The state every part of :class:`~llmaos_tui.ops.container_move.MoveEngine` shares (its
two engines, journal, audit, options) and the reads and the news each part uses. Kept out
of :mod:`~llmaos_tui.ops.move_model` because it needs the docker SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import docker

from llmaos_tui.ops.move_model import Progress, ProgressFn

if TYPE_CHECKING:
    from llmaos_tui.ops.audit import AuditLog
    from llmaos_tui.ops.docker_forward import Engine
    from llmaos_tui.ops.journal import MoveJournal


class MoverBase:
    """The state a move's parts share (set by ``MoveEngine.__init__``), and the reads and
    the news every part uses."""

    src: Engine
    dst: Engine
    journal: MoveJournal
    audit: AuditLog
    read_only: bool
    stop_timeout: int
    settle: float
    health_timeout: float
    operator: str | None
    _progress: ProgressFn | None
    _move_id: str

    def _dst_has_image(self, image_id: str) -> bool:
        try:
            self.dst.client.api.inspect_image(image_id)
        except docker.errors.ImageNotFound:
            return False
        return True

    def _tag_on(self, client: Any, ref: str) -> str | None:
        """The image ID ``ref`` names on an engine, or None."""
        try:
            return str(client.api.inspect_image(ref)["Id"])
        except docker.errors.ImageNotFound:
            return None

    def _emit(
        self,
        move_id: str,
        step: str,
        state: str,
        n: int = 0,
        total: int | None = None,
        message: str = "",
    ) -> None:
        if self._progress is not None:
            self._progress(Progress(move_id or self._move_id, step, state, n, total, message))
