"""Containers of the local Docker engine, with their load taken from the process table.

The engine is asked for one sparse list (``GET /containers/json?all=1``: no per-container
inspect, no stats) each :meth:`ContainerCollector.refresh`. What the list lacks and does
not change for a container's life (its GPU requests) is inspected once per container id;
an image's name, when the list shows only its ID (its tag moved on), once per image id.

The load does not come from ``docker stats`` (one slow streaming call per container, about
a second each): the agent already samples every process, so each process is mapped to its
container by ``/proc/PID/cgroup``, which names the container id on every cgroup layout
(v1 ``/docker/ID``, systemd ``docker-ID.scope``, rootless and podman alike), read once per
(pid, start time). A container's CPU is the sum of its processes' (in cores), its memory
the sum of their RSS (shared pages count once per process, as ``ps`` counts them), its
uptime the age of its oldest process.

Without an engine (none installed, not running, not ours to open) the collector reports
why in :attr:`ContainerCollector.reason` and lists nothing; it never raises. The docker SDK
is used when importable, else a small HTTP client on the engine's Unix socket (stdlib).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import http.client

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 5.0
_ID = re.compile(r"(?:^|[/:-])([0-9a-f]{64})(?:\.scope)?$")
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")


class ProcLike(Protocol):
    """What the collector reads of a sampled process (``protocol.Proc`` has it)."""

    @property
    def cpu(self) -> float: ...  # percent of one core

    @property
    def rss(self) -> int: ...

    @property
    def create_time(self) -> float: ...


@dataclass
class ContainerUsage:
    """A container's load, summed over its processes."""

    cpu: float = 0.0  # cores used
    mem: int = 0  # bytes of RSS
    pids: int = 0
    started: float | None = None  # the oldest process's start (epoch seconds)


@dataclass
class ContainerInfo:
    """One container, as the containers screen lists it."""

    id: str  # full id
    name: str
    image: str  # "name:tag", or a short image id when no tag names it
    image_id: str
    state: str  # created, running, paused, restarting, exited, dead
    status: str  # the engine's words: "Up 5 minutes (healthy)"
    health: str | None  # healthy, unhealthy, starting; None without a health check
    created: float
    ports: list[str] = field(default_factory=list)  # "0.0.0.0:8080->80/tcp", "80/tcp"
    volumes: list[str] = field(default_factory=list)  # "name:/data", "/srv/x:/x"
    gpus: int = 0  # GPUs requested: 0 none, -1 all
    project: str | None = None  # docker compose project, when it has one
    service: str | None = None  # its compose service (replicas share project and service)
    orchestrator: str | None = None  # swarm, kubernetes, nomad, ecs: see orchestrator_of
    cpu: float = 0.0  # cores used, from the process sample
    mem: int = 0
    pids: int = 0
    uptime: float | None = None  # seconds, for a running container


_LIVE = frozenset({"running", "paused", "restarting"})


def container_id_of(cgroup_text: str) -> str | None:
    """The container id a ``/proc/PID/cgroup`` names, or None for a process of no container."""
    for line in cgroup_text.splitlines():
        path = line.rsplit(":", 1)[-1]
        m = _ID.search(path)
        if m:
            return m.group(1)
    return None


class _Backend(Protocol):
    def containers(self) -> list[dict[str, Any]]: ...
    def inspect_container(self, cid: str) -> dict[str, Any]: ...
    def inspect_image(self, iid: str) -> dict[str, Any]: ...
    def close(self) -> None: ...


def unix_http_connection(path: str, timeout: float) -> http.client.HTTPConnection:
    """HTTP to the engine over its Unix socket (the stdlib has no such connection).

    http.client (with the email package it parses headers with, about 1.5 MB) is imported
    on the first call: a host without an engine socket never loads it."""
    return _unix_http_class()(path, timeout)


@functools.cache
def _unix_http_class() -> Callable[[str, float], http.client.HTTPConnection]:
    import http.client  # noqa: PLC0415 - see unix_http_connection

    class UnixHTTPConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("localhost")
            self.timeout = timeout
            self._path = path

        def connect(self) -> None:
            if sys.platform == "win32":  # the engine listens on a named pipe there
                raise OSError("Docker on Windows needs the docker SDK (a named pipe, not a socket)")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self._path)
            except OSError:
                s.close()
                raise
            self.sock = s

    return UnixHTTPConnection


class StdlibBackend:
    """The three GETs the collector needs, over the engine's Unix socket (no docker SDK)."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def _get(self, url: str) -> Any:
        conn = unix_http_connection(self.path, self.timeout)
        try:
            conn.request("GET", url, headers={"Host": "docker"})
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        if r.status != 200:
            raise OSError(f"engine answered {r.status} to GET {url}: {body[:200]!r}")
        return json.loads(body)

    def containers(self) -> list[dict[str, Any]]:
        return list(self._get("/containers/json?all=1"))

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return dict(self._get(f"/containers/{urllib.parse.quote(cid)}/json"))

    def inspect_image(self, iid: str) -> dict[str, Any]:
        return dict(self._get(f"/images/{urllib.parse.quote(iid)}/json"))

    def close(self) -> None:
        pass


class SdkBackend:
    """The same calls through the docker SDK (it also speaks Windows named pipes)."""

    def __init__(self, base_url: str | None, timeout: float = TIMEOUT) -> None:
        import docker  # noqa: PLC0415 (optional on hosts: the caller falls back without it)

        self._client = (
            docker.DockerClient(base_url=base_url, timeout=int(timeout))
            if base_url
            else docker.from_env(timeout=int(timeout))
        )
        self._api = self._client.api

    def containers(self) -> list[dict[str, Any]]:
        return list(self._api.containers(all=True))

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return dict(self._api.inspect_container(cid))

    def inspect_image(self, iid: str) -> dict[str, Any]:
        return dict(self._api.inspect_image(iid))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def default_socket() -> str:
    """``DOCKER_HOST`` when it names a Unix socket, the system socket, or the rootless one."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    if os.path.exists(DEFAULT_SOCKET):
        return DEFAULT_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR") or (
        f"/run/user/{os.getuid()}" if hasattr(os, "getuid") else ""
    )
    rootless = os.path.join(runtime, "docker.sock") if runtime else ""
    return rootless if rootless and os.path.exists(rootless) else DEFAULT_SOCKET


class ContainerCollector:
    """Lists the engine's containers and sums the load of their processes.

    ``socket_path``: the engine's Unix socket (default :func:`default_socket`);
    ``use_sdk``: None uses the docker SDK when importable; ``proc``: where /proc is.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        use_sdk: bool | None = None,
        proc: str = "/proc",
        timeout: float = TIMEOUT,
    ) -> None:
        self.socket_path = socket_path or default_socket()
        self.proc = proc
        self.reason: str | None = None
        self._backend: _Backend | None = None
        self._timeout = timeout
        self._use_sdk = use_sdk
        self._containers: list[dict[str, Any]] = []
        self._gpus: dict[str, int] = {}  # container id -> GPUs requested (immutable)
        self._image_names: dict[str, str] = {}  # image id -> name, for lists that show ids
        self._cgroup: dict[tuple[int, float], str | None] = {}  # (pid, start) -> container id
        self.calls = 0  # engine calls made, for tests and the agent's own cost report

    @property
    def available(self) -> bool:
        return self.reason is None and self._backend is not None

    @property
    def any_running(self) -> bool:
        """Whether the last list has a container with processes (running, paused or
        restarting): only then does :meth:`snapshot` need a process table for its load."""
        return any(c.get("State") in _LIVE for c in self._containers)

    def _open(self) -> _Backend | None:
        if self._backend is not None:
            return self._backend
        if sys.platform == "win32" and self._use_sdk is False:
            self.reason = "Docker on Windows needs the docker SDK (pip install docker)"
            return None
        sdk = self._use_sdk
        if sdk is None:
            try:
                import docker  # noqa: F401, PLC0415 (probing for the optional SDK)
            except ImportError:
                sdk = False
            else:
                sdk = True
        if not sdk and not os.path.exists(self.socket_path):
            self.reason = f"no Docker engine socket at {self.socket_path}"
            return None
        try:
            self._backend = (
                SdkBackend(f"unix://{self.socket_path}", self._timeout)
                if sdk
                else StdlibBackend(self.socket_path, self._timeout)
            )
        # The SDK asks the engine its version: it may not answer, with any of the SDK's,
        # requests' or http.client's errors; each becomes the host's reason, not a crash.
        except Exception as exc:  # noqa: BLE001 - shown as the reason
            self.reason = f"Docker engine at {self.socket_path} does not answer: {_why(exc)}"
            return None
        return self._backend

    def refresh(self) -> bool:
        """List the engine's containers now (one call); False, with :attr:`reason`, when no
        engine answers. Call it every few seconds; :meth:`snapshot` uses the last list."""
        backend = self._open()
        if backend is None:
            self._containers = []
            return False
        try:
            self.calls += 1
            listed = backend.containers()
        except Exception as exc:  # noqa: BLE001 - any engine failure is shown as the reason
            self.reason = f"Docker engine at {self.socket_path} does not answer: {_why(exc)}"
            self._containers = []
            # Reopen next time: an engine that restarted may need a new client.
            backend.close()
            self._backend = None
            return False
        self.reason = None
        self._containers = listed
        alive = {str(c.get("Id")) for c in listed}
        self._gpus = {k: v for k, v in self._gpus.items() if k in alive}
        for c in listed:
            cid = str(c.get("Id"))
            if cid not in self._gpus:
                self._gpus[cid] = self._gpu_count(backend, cid)
        return True

    def _gpu_count(self, backend: _Backend, cid: str) -> int:
        try:
            self.calls += 1
            hc = backend.inspect_container(cid).get("HostConfig") or {}
        except Exception:  # noqa: BLE001 - any failure: gone, or the next list says why
            return 0  # gone since the list; the next list drops it
        n = 0
        for r in hc.get("DeviceRequests") or []:
            caps = [c for group in r.get("Capabilities") or [] for c in group]
            if "gpu" in caps or r.get("Driver") == "nvidia":
                count = int(r.get("Count") or 0)
                if count < 0:
                    return -1
                n += count or len(r.get("DeviceIDs") or [])
        return n

    def _image_name(self, c: Mapping[str, Any]) -> str:
        image, iid = str(c.get("Image") or ""), str(c.get("ImageID") or "")
        if image and not image.startswith("sha256:"):
            return image
        name = self._image_names.get(iid)
        if name is None:
            name = iid.removeprefix("sha256:")[:12]
            backend = self._backend
            if backend is not None:
                with contextlib.suppress(Exception):
                    self.calls += 1
                    tags = backend.inspect_image(iid).get("RepoTags") or []
                    name = str(tags[0]) if tags else name
            if len(self._image_names) > 1024:
                self._image_names.clear()
            self._image_names[iid] = name
        return name

    def usage(self, procs: Mapping[int, ProcLike]) -> dict[str, ContainerUsage]:
        """The load of each container that has processes in ``procs`` (pid -> process), by
        full container id. No engine call: /proc/PID/cgroup, read once per process."""
        out: dict[str, ContainerUsage] = {}
        cache: dict[tuple[int, float], str | None] = {}
        old = self._cgroup
        for pid, p in procs.items():
            key = (pid, p.create_time)
            cid = old[key] if key in old else self._read_cgroup(pid)
            cache[key] = cid
            if cid is None:
                continue
            u = out.get(cid)
            if u is None:
                u = out[cid] = ContainerUsage()
            u.cpu += p.cpu / 100.0
            u.mem += p.rss
            u.pids += 1
            if u.started is None or p.create_time < u.started:
                u.started = p.create_time
        self._cgroup = cache  # rebuilt each pass, so it never outgrows the process table
        for u in out.values():
            u.cpu = round(u.cpu, 2)
        return out

    def _read_cgroup(self, pid: int) -> str | None:
        try:
            with open(f"{self.proc}/{pid}/cgroup", encoding="ascii", errors="replace") as f:
                return container_id_of(f.read(8192))
        except OSError:
            return None  # gone, or not ours to read

    def snapshot(
        self, procs: Mapping[int, ProcLike] | None = None, *, now: float | None = None
    ) -> list[ContainerInfo]:
        """The last listed containers with their load from ``procs`` (the agent's latest
        process table), sorted by name."""
        load = self.usage(procs) if procs is not None else {}
        now = time.time() if now is None else now
        out = []
        for c in self._containers:
            cid = str(c.get("Id"))
            u = load.get(cid, ContainerUsage())
            state = str(c.get("State") or "?")
            status = str(c.get("Status") or "")
            m = _HEALTH.search(status)
            health = m.group(1).removeprefix("health: ") if m else None
            names = c.get("Names") or []
            labels = c.get("Labels") or {}
            out.append(
                ContainerInfo(
                    id=cid,
                    name=str(names[0]).lstrip("/") if names else cid[:12],
                    image=self._image_name(c),
                    image_id=str(c.get("ImageID") or ""),
                    state=state,
                    status=status,
                    health=health,
                    created=float(c.get("Created") or 0),
                    ports=_ports(c.get("Ports") or []),
                    volumes=_volumes(c.get("Mounts") or []),
                    gpus=self._gpus.get(cid, 0),
                    project=labels.get("com.docker.compose.project"),
                    service=labels.get("com.docker.compose.service"),
                    orchestrator=orchestrator_of(labels),
                    cpu=u.cpu,
                    mem=u.mem,
                    pids=u.pids,
                    uptime=round(now - u.started, 1)
                    if state == "running" and u.started is not None
                    else None,
                )
            )
        out.sort(key=lambda i: i.name)
        return out

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


# A label each orchestrator puts on the containers it runs (and reschedules on its own).
ORCHESTRATOR_LABELS = (
    ("com.docker.swarm.task.id", "swarm"),
    ("com.docker.swarm.service.id", "swarm"),
    ("io.kubernetes.pod.name", "kubernetes"),
    ("com.hashicorp.nomad.alloc_id", "nomad"),
    ("com.amazonaws.ecs.task-arn", "ecs"),
)


def orchestrator_of(labels: Mapping[str, Any]) -> str | None:
    """The orchestrator that runs a container with these labels, or None (compose is not
    one: it starts containers and leaves them to the engine)."""
    for label, name in ORCHESTRATOR_LABELS:
        if labels.get(label):
            return name
    return None


def _ports(ports: Iterable[Mapping[str, Any]]) -> list[str]:
    out = []
    for p in ports:
        inner = f"{p.get('PrivatePort')}/{p.get('Type') or 'tcp'}"
        if p.get("PublicPort"):
            ip = str(p.get("IP") or "0.0.0.0")  # noqa: S104 (shown, not bound)
            ip = f"[{ip}]" if ":" in ip else ip
            out.append(f"{ip}:{p['PublicPort']}->{inner}")
        else:
            out.append(inner)
    return sorted(set(out))


def _volumes(mounts: Iterable[Mapping[str, Any]]) -> list[str]:
    out = []
    for m in mounts:
        dest = m.get("Destination") or ""
        if m.get("Type") == "volume":
            out.append(f"{m.get('Name')}:{dest}")
        elif m.get("Type") == "bind":
            out.append(f"{m.get('Source')}:{dest}")
    return out


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
