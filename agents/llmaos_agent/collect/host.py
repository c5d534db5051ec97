"""Host facts and capabilities for the ``hello``: what this host is and can do."""

from __future__ import annotations

import ctypes
import getpass
import os
import platform
import socket
import sys

import psutil

from llmaos_agent.protocol import Capabilities, HostFacts

DOCKER_SOCKET = "/var/run/docker.sock"


def host_facts() -> HostFacts:
    return HostFacts(
        hostname=socket.gethostname()[:256],
        os=platform.system() or sys.platform,
        os_release=platform.release()[:256],
        arch=platform.machine()[:256],
        python=platform.python_version(),
        user=_user(),
        cores=psutil.cpu_count(logical=True) or 1,
        physical_cores=psutil.cpu_count(logical=False),
        mem_total=int(psutil.virtual_memory().total),
        boot_time=psutil.boot_time(),
    )


def _user() -> str:
    try:
        return getpass.getuser()[:256]
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def is_root() -> bool:
    if hasattr(os, "geteuid"):
        return os.geteuid() == 0
    try:  # Windows: an elevated token
        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False


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
    *, affinity: bool, cpu_num: bool, nvml_reason: str | None, read_only: bool
) -> Capabilities:
    docker, docker_reason = docker_status()
    return Capabilities(
        affinity=affinity,
        cpu_num=cpu_num,
        nvml=nvml_reason is None,
        nvml_reason=nvml_reason,
        docker=docker,
        docker_reason=docker_reason,
        root=is_root(),
        read_only=read_only,
    )
