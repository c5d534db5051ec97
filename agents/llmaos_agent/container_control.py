"""Start, stop, restart a container of the local engine, and read the tail of its output.

What ``docker start/stop/restart/logs --tail N`` do, as the daemon's ``containers.*`` calls.
Stdlib HTTP on the engine's Unix socket, as the collector's fallback does, so the agent needs
no docker SDK for them (Windows, where the engine is a named pipe, is refused for now).
Each call is blocking: the daemon runs it off its event loop. Errors are :class:`Refused`
(the engine said no, or does not answer) or :class:`NotFound`, in words for the operator.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import urllib.parse
from typing import Any

from llmaos_agent.collect.containers import unix_http_connection
from llmaos_agent.protocol import MAX_LOG_BYTES

TIMEOUT = 10.0


class Refused(Exception):
    """The engine would not do it (or cannot be reached); nothing changed."""


class NotFound(Refused):
    """No such container."""


class EngineControl:
    """The calls that change a container, on the engine at ``socket_path``."""

    def __init__(self, socket_path: str, timeout: float = TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _request(self, method: str, url: str, *, timeout: float | None = None) -> tuple[int, bytes]:
        if sys.platform == "win32":  # pragma: no cover - a named pipe there, not yet done
            raise Refused("container actions on Windows are not supported yet")
        conn = unix_http_connection(self.socket_path, timeout or self.timeout)
        try:
            conn.request(method, url, headers={"Host": "docker"})
            r = conn.getresponse()
            body = r.read(MAX_LOG_BYTES * 4)
        except OSError as exc:
            raise Refused(f"the Docker engine at {self.socket_path} does not answer: "
                          f"{exc.strerror or exc}") from None  # fmt: skip
        finally:
            conn.close()
        return r.status, body

    def state(self, ref: str) -> dict[str, Any]:
        """The container's ``docker inspect`` (id, name, state)."""
        status, body = self._request("GET", f"/containers/{_q(ref)}/json")
        if status == 404:
            raise NotFound(f"no container {ref}")
        if status != 200:
            raise Refused(_engine_says(status, body))
        return dict(json.loads(body))

    def act(self, action: str, ref: str, timeout: int = 10) -> tuple[str, str, str]:
        """``start``, ``stop`` or ``restart`` ``ref``; return (target, before, after)."""
        if action not in ("start", "stop", "restart"):
            raise Refused(f"unknown container action {action!r}")
        info = self.state(ref)
        cid = str(info.get("Id", ref))
        target = f"container {str(info.get('Name', ref)).lstrip('/')} ({cid[:12]})"
        before = _describe(info)
        url = f"/containers/{_q(cid)}/{action}"
        if action != "start":
            url += f"?t={int(timeout)}"
        # The engine answers a stop when the container is down: its grace, then the kill.
        status, body = self._request("POST", url, timeout=self.timeout + timeout)
        if status == 404:
            raise NotFound(f"no container {ref}")
        if status not in (204, 304):  # 304: already in that state, which is fine
            raise Refused(_engine_says(status, body))
        return target, before, _describe(self.state(cid))

    def logs(self, ref: str, tail: int) -> tuple[str, bool]:
        """The last ``tail`` lines of stdout and stderr, and whether they were cut."""
        info = self.state(ref)
        tty = bool((info.get("Config") or {}).get("Tty"))
        url = f"/containers/{_q(str(info.get('Id', ref)))}/logs?stdout=1&stderr=1&tail={tail}"
        status, body = self._request("GET", url)
        if status != 200:
            raise Refused(_engine_says(status, body))
        data = body if tty else _demux(body)
        cut = len(data) > MAX_LOG_BYTES
        if cut:
            data = data[-MAX_LOG_BYTES:]
        text = data.decode("utf-8", errors="replace")
        while len(text) > MAX_LOG_BYTES:  # replacement characters can make it longer
            text, cut = text[len(text) - MAX_LOG_BYTES :], True
        return text, cut


def _demux(raw: bytes) -> bytes:
    """The engine's multiplexed stream (8-byte frame headers) as plain bytes, in order."""
    out = bytearray()
    i = 0
    while i + 8 <= len(raw):
        _kind, size = struct.unpack(">BxxxL", raw[i : i + 8])
        out += raw[i + 8 : i + 8 + size]
        i += 8 + size
    return bytes(out)


def _describe(info: dict[str, Any]) -> str:
    st = info.get("State") or {}
    status = str(st.get("Status", "?"))
    health = (st.get("Health") or {}).get("Status")
    return f"{status} ({health})" if health else status


def _engine_says(status: int, body: bytes) -> str:
    msg = ""
    with contextlib.suppress(ValueError, AttributeError):
        msg = str(json.loads(body).get("message", ""))
    return f"the engine refused ({status}): {msg or body[:200].decode(errors='replace')}"


def _q(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")
