"""What screens ask the app to do on a host: messages carrying a change or a query.

Screens never reach an agent themselves; they post these and the app carries them
out in async workers through the host's link, audited, and reports back.
"""

from __future__ import annotations

from msgspec import Struct
from textual.message import Message


class ChangeIntent(Message):
    """Make one change on ``host`` (a ``proc.*`` or ``requests.*`` call)."""

    def __init__(self, host: str, method: str, params: Struct, target: str, before: str = ""):
        super().__init__()
        self.host = host
        self.method = method
        self.params = params
        self.target = target
        self.before = before


class OpenRequests(Message):
    """Show the requests screen, of one host or (``None``) of the whole fleet."""

    def __init__(self, host: str | None) -> None:
        super().__init__()
        self.host = host


class OpenProcDetail(Message):
    """Ask the app to open the detail of one process (the host screen's Enter): it calls
    ``proc.detail`` and pushes :class:`ProcDetailScreen` with the answer."""

    def __init__(self, host: str, pid: int, create_time: float) -> None:
        super().__init__()
        self.host = host
        self.pid = pid
        self.create_time = create_time


class OpenPlan(Message):
    """Plan at ``level`` for one host (``host``) or the whole fleet (None); at the hosts
    level ``units`` says what may move (None: requests and containers)."""

    def __init__(self, host: str | None, level: str, units: frozenset[str] | None = None) -> None:
        super().__init__()
        self.host = host
        self.level = level
        self.units = units
