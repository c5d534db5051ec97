"""Host facts and capabilities for the ``hello``: what this host is and can do.

The counts come from :mod:`llmaos_agent.system` (the standard library on Linux, psutil
elsewhere); what process control can do on each platform is
:func:`llmaos_agent.system.features`, which :func:`capabilities` reports.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys

from llmaos_agent.protocol import Capabilities, HostFacts
from llmaos_agent.system import Features, features, host_os

DOCKER_SOCKET = "/var/run/docker.sock"


def host_facts() -> HostFacts:
    hos = host_os()
    return HostFacts(
        hostname=socket.gethostname()[:256],
        os=platform.system() or sys.platform,
        os_release=platform.release()[:256],
        arch=platform.machine()[:256],
        python=platform.python_version(),
        user=_user(),
        cores=hos.cpu_count(),
        physical_cores=hos.physical_cores(),
        mem_total=hos.memory()[0],
        boot_time=hos.boot_time(),
    )


def _user() -> str:
    try:
        return getpass.getuser()[:256]
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def is_root() -> bool:
    if sys.platform == "win32":
        try:  # an elevated token
            import ctypes  # noqa: PLC0415 - Windows only; 0.4 MB elsewhere for nothing

            return bool(ctypes.windll.shell32.IsUserAnAdmin())
        except (AttributeError, OSError):
            return False
    return os.geteuid() == 0


def docker_status(sock_path: str = DOCKER_SOCKET, timeout: float = 0.5) -> tuple[bool, str | None]:
    """Whether a Docker engine answers ``/_ping`` on its socket, and why not."""
    if not hasattr(socket, "AF_UNIX"):
        return False, "Docker detection on this OS is not implemented yet"
    if not os.path.exists(sock_path):
        return False, f"no Docker engine socket at {sock_path}"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = s.recv(256)
    except OSError as exc:
        return False, f"Docker engine does not answer at {sock_path}: {exc.strerror or exc}"
    if reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]:
        return True, None
    return False, f"unexpected answer from {sock_path}: {reply[:40]!r}"


def capabilities(
    *,
    affinity: bool | None = None,
    cpu_num: bool | None = None,
    nvml_reason: str | None,
    read_only: bool,
    platform: Features | None = None,
) -> Capabilities:
    """What this host can do. ``affinity`` and ``cpu_num`` default to what process
    control can do on this platform (``platform``, default :func:`features` of this OS);
    a False from the caller (a collector that cannot) wins."""
    docker, docker_reason = docker_status()
    can = platform or features()
    return Capabilities(
        affinity=can.affinity if affinity is None else affinity and can.affinity,
        cpu_num=can.cpu_num if cpu_num is None else cpu_num and can.cpu_num,
        nvml=nvml_reason is None,
        nvml_reason=nvml_reason,
        docker=docker,
        docker_reason=docker_reason,
        root=is_root(),
        read_only=read_only,
    )
