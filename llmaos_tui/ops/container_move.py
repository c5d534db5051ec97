"""Moving a container from one host's engine to another's, journaled so it cannot end halfway.

The steps, each written to the :class:`~llmaos_tui.ops.journal.MoveJournal` before it runs:

``inspect``  read the source container, both engines and the target's containers;
``precheck`` refuse what cannot work (:meth:`MoveEngine.precheck`), before anything changes;
``commit``   (``commit=True``) the container's filesystem changes into an image;
``image``    stream the image source -> target when the target lacks it: the source's
             ``save`` is piped chunk by chunk into the target's ``load``, so the console
             never holds more than one chunk, and the service still runs meanwhile;
``create``   the named volumes, then the container, created and not started, with the
             source's configuration (env, command, entrypoint, labels, ports, volumes,
             restart policy, device requests, limits...), while the source still serves;
``stop``     stop the source (bounded timeout): from here the service is down;
``copy``     each volume's data, ``get_archive`` from the stopped source piped into
             ``put_archive`` on the created target;
``start``    the target;
``verify``   running for ``settle`` seconds without restarting, healthy where it has a
             health check;
``finish``   remove the source (and its named volumes, now copied), or with
             ``keep_source`` keep it stopped, renamed ``NAME.moved-ID`` and with restart
             policy ``no`` so no engine restart brings a second copy up.

A move ends in one of two states, never neither: moved (target running and verified), or
rolled back (source as it was, the target's leftovers removed). A failure before ``finish``
rolls back; a console that died mid-move is finished by :func:`recover_all` when it starts
again: forward when the target had been started and verifies, otherwise back. Engines
that cannot be reached leave the entry unfinished, to be resolved on the next try; the
source is always restored first.

The docker SDK is synchronous: run :meth:`MoveEngine.move` off the event loop's thread
(``asyncio.to_thread``), as :mod:`llmaos_tui.ops.docker_forward` explains.
"""

from __future__ import annotations

import contextlib
import posixpath
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import docker

from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.docker_forward import Engine
from llmaos_tui.ops.journal import MoveJournal, MoveRecord
from llmaos_tui.ops.move_streams import (
    CHUNK,  # noqa: F401 (re-exported)
    PIPE_DEPTH,  # noqa: F401 (re-exported)
    Pipe,
    load_image,
    open_archive,
    open_image_save,
    put_archive,
)

STEPS = (
    "inspect",
    "precheck",
    "commit",
    "image",
    "create",
    "stop",
    "copy",
    "start",
    "verify",
    "finish",
)
COMMIT_REPO = "llmaos-moved"
AUDIT_ACTION = "container.move"
# Architectures as `docker info` (uname) and images (GOARCH) name them.
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}
_DEFAULT_NETWORKS = ("", "default", "bridge", "host", "none")


@dataclass(frozen=True)
class Refusal:
    """Why a move cannot go ahead. ``code`` is stable (for the UI and tests); ``message``
    says what and why, in words an operator acts on."""

    code: str
    message: str


@dataclass(frozen=True)
class Progress:
    """A step's news: ``state`` is "start", "bytes", "done", "skip", "failed" (``bytes``:
    what it wrote before it failed, ``message``: why) or "rollback"."""

    move_id: str
    step: str
    state: str
    bytes: int = 0  # transferred so far in this step
    total: int | None = None  # expected bytes, when known
    message: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class MovePlan:
    """What a move will do, worked out without changing anything (``dry_run`` shows it)."""

    container: str  # name
    container_id: str
    source: str
    target: str
    image: str  # what the target container is created from
    image_id: str
    stream_image: bool  # the target lacks the image
    image_size: int
    was_running: bool
    commit: bool
    keep_source: bool
    volumes: list[dict[str, Any]]  # {name, dest, driver, anonymous}
    binds: list[dict[str, str]]  # {source, dest}
    ports: list[str]  # "0.0.0.0:8080->80/tcp"
    gpus: list[dict[str, Any]]  # the device requests carried over
    steps: list[str]
    refusals: list[Refusal] = field(default_factory=list)


@dataclass
class MoveResult:
    """How a move (or a recovery) ended.

    ``outcome``: "moved", "rolled_back", "refused", "dry_run", or "failed" (neither end
    could be reached yet, say an engine is down: the journal keeps the entry open and
    :func:`recover_all` resolves it later; ``message`` says what is where)."""

    outcome: str
    container: str
    source: str
    target: str
    move_id: str | None = None
    new_id: str | None = None
    message: str = ""
    refusals: list[Refusal] = field(default_factory=list)
    image_bytes: int = 0  # streamed source -> target
    volume_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    plan: MovePlan | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("moved", "dry_run")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for ``--json`` and the audit log."""
        return asdict(self)


def describe(res: MoveResult, *, one_line: bool = False) -> str:
    """What happened to the container, and why, as an operator reads it (the CLI, the
    console's notices, a plan's row). ``one_line`` joins a refusal's reasons with "; "."""
    what = f"{res.container} {res.source} -> {res.target}"
    if res.outcome == "moved":
        extra = []
        if res.image_bytes:
            extra.append(f"image {_mib(res.image_bytes)} streamed")
        if res.volume_bytes:
            extra.append(f"volumes {_mib(res.volume_bytes)} copied")
        extra.append(f"{sum(res.timings.values()):.1f} s")
        return f"moved {what} ({', '.join(extra)})"
    if res.outcome == "dry_run":
        return f"dry run of {what}: {res.message}"
    if res.outcome == "refused":
        if one_line:
            return f"refused: {what}: " + "; ".join(r.message for r in res.refusals)
        return "\n".join([f"refused: {what}"] + [f"  {r.message}" for r in res.refusals])
    if res.outcome == "rolled_back":
        return f"rolled back: {what}; the source runs as before ({res.message})"
    return f"{res.outcome}: {what}: {res.message}"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class MoveError(RuntimeError):
    """A step failed; the move is being rolled back (or forward)."""


def _arch(name: str) -> str:
    return _ARCH.get(name, name)


def _port_bindings(host_config: dict[str, Any]) -> list[tuple[str, int, str, int]]:
    """(host ip, host port, proto, container port) of each fixed published port."""
    out = []
    for key, binds in (host_config.get("PortBindings") or {}).items():
        cport, _, proto = key.partition("/")
        for b in binds or []:
            hp = str(b.get("HostPort") or "")
            if hp and hp != "0":
                # a range "8000-8010" publishes each port; its first is enough for a clash
                first = int(hp.split("-", maxsplit=1)[0])
                out.append((str(b.get("HostIp") or ""), first, proto or "tcp", int(cport)))
    return out


_WILDCARD = ("", "0.0.0.0", "::")  # noqa: S104 (addresses compared or probed, nothing bound)
"""Published on every address (an empty HostIp is docker's way of saying so)."""


def _ip_overlap(a: str, b: str) -> bool:
    return a in _WILDCARD or b in _WILDCARD or a == b


class MoveEngine:
    """Moves containers from ``src`` to ``dst``.

    ``read_only`` refuses every move; ``stop_timeout`` bounds the source's stop (then it is
    killed, as ``docker stop`` does); ``settle`` is how long the target must keep running to
    count as verified; ``health_timeout`` how long a health check may take to say healthy.
    """

    def __init__(
        self,
        src: Engine,
        dst: Engine,
        journal: MoveJournal,
        audit: AuditLog,
        *,
        read_only: bool = False,
        stop_timeout: int = 10,
        settle: float = 3.0,
        health_timeout: float = 60.0,
        operator: str | None = None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.journal = journal
        self.audit = audit
        self.read_only = read_only
        self.stop_timeout = stop_timeout
        self.settle = settle
        self.health_timeout = health_timeout
        self.operator = operator
        self._progress: ProgressFn | None = None
        self._move_id = ""

    # -- reading, no changes -------------------------------------------------------------

    def inspect(self, container: str) -> dict[str, Any]:
        """The source container's ``docker inspect``."""
        return dict(self.src.client.api.inspect_container(container))

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

    def plan(self, container: str, *, commit: bool = False, keep_source: bool = False) -> MovePlan:
        """Inspect both sides and work out the move, refusals included; changes nothing."""
        attrs = self.inspect(container)
        return self._plan(attrs, commit=commit, keep_source=keep_source)

    def precheck(self, container: str, *, commit: bool = False) -> list[Refusal]:
        """Every reason the move cannot work, each with a clear message; [] when it can."""
        if self.read_only:
            return [self._read_only_refusal()]
        return self.plan(container, commit=commit).refusals

    def live_unavailable(self) -> str:
        """Why a live move (checkpoint on the source, restore on the target) cannot run.

        It needs both engines started with experimental features and ``criu check`` passing
        on both hosts. Where all of that holds, the answer is still that this version does
        not carry a checkpoint between hosts: it could not be tried on a kernel where CRIU
        works, and an untried path is not offered for a move that must not lose anything.
        """
        reasons = []
        for eng in (self.src, self.dst):
            try:
                if not eng.client.api.info().get("ExperimentalBuild"):
                    reasons.append(
                        f"the engine on {eng.name} does not run with experimental features "
                        "(dockerd --experimental)"
                    )
                why = eng.criu_check()
            except Exception as exc:
                why = f"cannot check {eng.name}: {_reason(exc)}"
            if why:
                reasons.append(why)
        if not reasons:
            reasons.append("this version does not carry a checkpoint between hosts yet")
        return "live mode is unavailable: " + "; ".join(reasons)

    @staticmethod
    def _read_only_refusal() -> Refusal:
        return Refusal("read-only", "the console is read-only (--read-only): moves are refused")

    def _plan(self, attrs: dict[str, Any], *, commit: bool, keep_source: bool) -> MovePlan:
        cfg = attrs.get("Config") or {}
        hc = attrs.get("HostConfig") or {}
        name = str(attrs.get("Name", "")).lstrip("/")
        state = attrs.get("State") or {}
        refusals: list[Refusal] = []
        if self.read_only:
            refusals.append(self._read_only_refusal())
        src_info = self.src.client.info()
        dst_info = self.dst.client.info()
        dst_name = self.dst.name
        if src_info.get("ID") and src_info.get("ID") == dst_info.get("ID"):
            refusals.append(
                Refusal(
                    "same-engine",
                    f"{self.src.name} and {dst_name} are the same Docker engine: nothing to move",
                )
            )
        status = str(state.get("Status", "?"))
        if status not in ("running", "exited", "created"):
            refusals.append(
                Refusal(
                    "state", f"{name} is {status}; only running or stopped containers can be moved"
                )
            )

        # The image: by ID, so what arrives is exactly what ran.
        image_id = str(attrs.get("Image", ""))
        image_ref = str(cfg.get("Image") or image_id)
        image_size = 0
        if commit:
            image = f"{COMMIT_REPO}/{name}:pending"
            stream = True
        else:
            src_image = None
            with contextlib.suppress(docker.errors.ImageNotFound):
                src_image = self.src.client.api.inspect_image(image_id)
            stream = not self._dst_has_image(image_id)
            if src_image is None and stream:
                refusals.append(
                    Refusal(
                        "image",
                        f"image {image_ref} ({image_id[:19]}) is gone "
                        f"from {self.src.name} and missing on {dst_name}",
                    )
                )
            if src_image is not None:
                image_size = int(src_image.get("Size") or 0)
                arch = _arch(str(src_image.get("Architecture") or ""))
                dst_arch = _arch(str(dst_info.get("Architecture") or ""))
                if arch and dst_arch and arch != dst_arch:
                    refusals.append(
                        Refusal("arch", f"image {image_ref} is {arch}; {dst_name} runs {dst_arch}")
                    )
            # Create from the tag when the target's tag is (or will be) this image; when the
            # target's tag names another image, create by ID and leave that tag alone.
            dst_tagged = self._tag_on(self.dst.client, image_ref) if image_ref != image_id else None
            image = image_ref if dst_tagged in (None, image_id) else image_id

        # The name.
        clash = self.dst.client.api.containers(all=True, filters={"name": f"^/{name}$"})
        for c in clash:
            refusals.append(
                Refusal(
                    "name-clash",
                    f"{dst_name} already has a container named "
                    f"{name} ({str(c.get('Id'))[:12]}, {c.get('State')})",
                )
            )

        # Published ports against the target's running containers.
        any_ip = "0.0.0.0"  # noqa: S104 (how `docker ps` shows "all addresses")
        ports = [f"{ip or any_ip}:{hp}->{cp}/{proto}" for ip, hp, proto, cp in _port_bindings(hc)]
        taken: list[tuple[str, int, str, str]] = []
        for c in self.dst.client.api.containers():
            for p in c.get("Ports") or []:
                if p.get("PublicPort"):
                    cname = str((c.get("Names") or ["?"])[0]).lstrip("/")
                    taken.append(
                        (
                            str(p.get("IP") or ""),
                            int(p["PublicPort"]),
                            str(p.get("Type") or "tcp"),
                            cname,
                        )
                    )
        for ip, hp, proto, _cp in _port_bindings(hc):
            for tip, thp, tproto, cname in taken:
                if hp == thp and proto == tproto and _ip_overlap(ip, tip):
                    refusals.append(
                        Refusal(
                            "port-clash",
                            f"port {hp}/{proto} is already published on {dst_name} by {cname}",
                        )
                    )
                    break
            else:
                # A process of the host itself (not a container) may hold it: the start would
                # fail to bind. TCP only; a wildcard binding is probed on the loopback.
                probe = "127.0.0.1" if ip in _WILDCARD else ip
                if proto == "tcp" and self.dst.listening(probe, hp):
                    refusals.append(
                        Refusal(
                            "port-clash",
                            f"port {hp}/tcp is in use on {dst_name} by a process of the host "
                            f"(something accepts connections at {probe}:{hp})",
                        )
                    )

        # Mounts: named volumes are copied; bind mounts must exist on the target.
        volumes: list[dict[str, Any]] = []
        binds: list[dict[str, str]] = []
        dst_volumes = {v["Name"] for v in (self.dst.client.api.volumes().get("Volumes") or [])}
        named_in_config = self._named_volumes(hc)
        for m in attrs.get("Mounts") or []:
            kind, dest = m.get("Type"), str(m.get("Destination", ""))
            if kind == "volume":
                vname = str(m.get("Name", ""))
                anonymous = vname not in named_in_config
                driver = str(m.get("Driver") or "local")
                volumes.append(
                    {"name": vname, "dest": dest, "driver": driver, "anonymous": anonymous}
                )
                if driver != "local":
                    refusals.append(
                        Refusal(
                            "volume",
                            f"volume {vname} uses driver {driver}; "
                            "only local volumes' data can be copied",
                        )
                    )
                if not anonymous and vname in dst_volumes:
                    refusals.append(
                        Refusal(
                            "volume",
                            f"{dst_name} already has a volume named "
                            f"{vname}; moving would mix its data with this one",
                        )
                    )
            elif kind == "bind":
                source = str(m.get("Source", ""))
                binds.append({"source": source, "dest": dest})
                refusals.extend(self._check_path(source, f"bind mount {source} (-> {dest})"))
        for dev in hc.get("Devices") or []:
            path = str(dev.get("PathOnHost", ""))
            refusals.extend(self._check_path(path, f"device {path}"))

        # GPUs: device requests travel as they are; the target must have GPUs for them.
        gpus = [dict(r) for r in hc.get("DeviceRequests") or []]
        if gpus:
            refusals.extend(self._check_gpus(gpus, dst_info))

        # Memory: a limit the target cannot give is refused here rather than at start.
        limit = int(hc.get("Memory") or 0)
        total = int(dst_info.get("MemTotal") or 0)
        if limit and total and limit > total:
            refusals.append(
                Refusal(
                    "memory",
                    f"{name} is limited to {limit >> 20} MiB; "
                    f"{dst_name} has {total >> 20} MiB in all",
                )
            )
        elif limit and self.dst.mem_available is not None and limit > self.dst.mem_available:
            refusals.append(
                Refusal(
                    "memory",
                    f"{name} is limited to {limit >> 20} MiB; "
                    f"{dst_name} has {self.dst.mem_available >> 20} MiB free",
                )
            )

        # Networks: user-defined ones must exist on the target; another container's is no
        # network to move to.
        mode = str(hc.get("NetworkMode") or "")
        if mode.startswith("container:"):
            refusals.append(
                Refusal(
                    "network",
                    f"{name} shares the network of another "
                    f"container ({mode}); move that one instead",
                )
            )
        nets = list(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        dst_nets = {n.get("Name") for n in self.dst.client.api.networks()}
        for net in nets:
            if net not in _DEFAULT_NETWORKS and net not in dst_nets:
                refusals.append(
                    Refusal(
                        "network",
                        f"{name} is on network {net}, which "
                        f"{dst_name} lacks (docker network create {net})",
                    )
                )

        steps = ["inspect", "precheck"]
        if commit:
            steps.append("commit")
        steps.append("image" if stream else "image (present on target: not streamed)")
        steps.append("create")
        if state.get("Running"):
            steps.append("stop")
        if volumes:
            steps.append("copy")
        if state.get("Running"):
            steps += ["start", "verify"]
        steps.append("finish (keep source stopped)" if keep_source else "finish (remove source)")
        return MovePlan(
            container=name,
            container_id=str(attrs.get("Id", "")),
            source=self.src.name,
            target=dst_name,
            image=image,
            image_id=image_id,
            stream_image=stream,
            image_size=image_size,
            was_running=bool(state.get("Running")),
            commit=commit,
            keep_source=keep_source,
            volumes=volumes,
            binds=binds,
            ports=ports,
            gpus=gpus,
            steps=steps,
            refusals=refusals,
        )

    @staticmethod
    def _named_volumes(hc: dict[str, Any]) -> set[str]:
        """Volume names the container was created with (-v NAME:/p, --mount); the rest of
        its volume mounts are anonymous (VOLUME in the image, -v /p)."""
        names = set()
        for b in hc.get("Binds") or []:
            first = str(b).split(":", 1)[0]
            if first and not first.startswith("/"):
                names.add(first)
        for m in hc.get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Source"):
                names.add(str(m["Source"]))
        return names

    def _check_path(self, path: str, what: str) -> list[Refusal]:
        try:
            exists = self.dst.path_exists(path)
        except Exception as exc:  # the host cannot be asked: refuse rather than guess
            return [
                Refusal("bind-mount", f"{what}: cannot check it exists on {self.dst.name} ({exc})")
            ]
        if exists:
            return []
        return [
            Refusal(
                "bind-mount",
                f"{what} does not exist on {self.dst.name}; create it "
                "there (or drop the mount) first",
            )
        ]

    def _check_gpus(
        self, requests: list[dict[str, Any]], dst_info: dict[str, Any]
    ) -> list[Refusal]:
        have = self.dst.gpus
        runtimes = set((dst_info.get("Runtimes") or {}).keys())
        if have is None:
            # No count from the agent: a target without the NVIDIA runtime has none to give.
            have = 0 if "nvidia" not in runtimes else None
        want = 0
        for r in requests:
            if r.get("DeviceIDs"):
                return [
                    Refusal(
                        "gpu",
                        f"the container is pinned to GPUs {r['DeviceIDs']}, "
                        f"which name devices of {self.src.name}; use a GPU count",
                    )
                ]
            count = int(r.get("Count") or 0)
            want = max(want, 1 if count < 0 else count)
        if have == 0:
            return [
                Refusal(
                    "gpu",
                    f"the container asks for GPUs ({self._gpu_words(requests)}) "
                    f"and {self.dst.name} has none",
                )
            ]
        if have is not None and want > have:
            return [
                Refusal("gpu", f"the container asks for {want} GPUs; {self.dst.name} has {have}")
            ]
        return []

    @staticmethod
    def _gpu_words(requests: list[dict[str, Any]]) -> str:
        words = []
        for r in requests:
            count = int(r.get("Count") or 0)
            words.append(
                f"{r.get('Driver') or 'any driver'}, {'all' if count < 0 else count or 'some'}"
            )
        return "; ".join(words)

    # -- the move ------------------------------------------------------------------------

    def move(
        self,
        container: str,
        *,
        commit: bool = False,
        keep_source: bool = False,
        dry_run: bool = False,
        live: bool = False,
        progress: ProgressFn | None = None,
    ) -> MoveResult:
        """Move ``container`` (name or id) from ``src`` to ``dst``; see the module text.

        ``live`` asks for checkpoint and restore instead of stop and start: refused, with
        :meth:`live_unavailable`'s reasons, before anything changes."""
        self._progress = progress
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        self._emit("", "inspect", "start")
        try:
            attrs = self.inspect(container)
            plan = self._plan(attrs, commit=commit, keep_source=keep_source)
        except docker.errors.NotFound as exc:
            return self._refused_early(
                container,
                "not-found",
                f"no container {container} on {self.src.name} ({_reason(exc)})",
            )
        except Exception as exc:  # an engine does not answer: nothing was changed
            return self._refused_early(
                container, "unreachable", f"cannot pre-check the move: {_reason(exc)}"
            )
        timings["inspect"] = time.monotonic() - t0
        base = MoveResult(
            "", plan.container, self.src.name, self.dst.name, plan=plan, timings=timings
        )
        if live:
            plan.refusals.append(Refusal("live-unavailable", self.live_unavailable()))
        if plan.refusals:
            base.outcome, base.refusals = "refused", plan.refusals
            base.message = "; ".join(r.message for r in plan.refusals)
            self._audit(plan, None, f"refused: {base.message}", None)
            return base
        if dry_run:
            base.outcome, base.message = "dry_run", "pre-checks passed; nothing changed"
            return base
        try:
            self.audit.check()  # fails closed: a move the log cannot record is not begun
        except OSError as exc:
            base.outcome, base.message = "refused", f"not started: {exc}"
            base.refusals = [Refusal("audit", base.message)]
            return base
        move_id = self.journal.begin(self._journal_plan(attrs, plan))
        self._move_id = base.move_id = move_id
        rec = self.journal.get(move_id)
        try:
            self._run_steps(rec, attrs, plan, base)
        except Exception as exc:
            rec = self.journal.get(move_id)
            base.timings = timings
            return self._resolve(
                rec, failure=f"{self._last_step(rec)}: {_reason(exc)}", result=base
            )
        return base

    def _refused_early(self, container: str, code: str, why: str) -> MoveResult:
        return MoveResult(
            "refused",
            container,
            self.src.name,
            self.dst.name,
            message=why,
            refusals=[Refusal(code, why)],
        )

    def _journal_plan(self, attrs: dict[str, Any], plan: MovePlan) -> dict[str, Any]:
        return {
            "kind": "container.move",
            "source": self.src.name,
            "target": self.dst.name,
            "operator": self.operator,
            "attrs": attrs,  # everything needed to create the target, or put the source back
            "plan": asdict(plan),
            "settle": self.settle,
            "stop_timeout": self.stop_timeout,
        }

    @staticmethod
    def _last_step(rec: MoveRecord) -> str:
        return rec.steps[-1].name if rec.steps else "begin"

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

    @contextlib.contextmanager
    def _step(
        self, rec: MoveRecord, name: str, timings: dict[str, float], **data: Any
    ) -> Iterator[dict[str, Any]]:
        """Journal the step, run the body, journal it done with what the body recorded."""
        self.journal.step(rec.move_id, name, **data)
        self._emit(rec.move_id, name, "start")
        t = time.monotonic()
        made: dict[str, Any] = {}
        try:
            yield made
        except BaseException as exc:
            timings[name] = timings.get(name, 0.0) + time.monotonic() - t
            self._emit(rec.move_id, name, "failed", int(made.get("bytes", 0)), message=_reason(exc))
            raise
        timings[name] = timings.get(name, 0.0) + time.monotonic() - t
        self.journal.done(rec.move_id, name, **made)
        self._emit(rec.move_id, name, "done", int(made.get("bytes", 0)))

    def _run_steps(
        self, rec: MoveRecord, attrs: dict[str, Any], plan: MovePlan, res: MoveResult
    ) -> None:
        api_src, api_dst = self.src.client.api, self.dst.client.api
        timings = res.timings
        cid = plan.container_id
        self.journal.step(rec.move_id, "precheck")
        self.journal.done(rec.move_id, "precheck")
        image = plan.image
        if plan.commit:
            tag = rec.move_id[:12]
            repo = f"{COMMIT_REPO}/{plan.container}"
            with self._step(rec, "commit", timings, image_ref=f"{repo}:{tag}") as made:
                out = api_src.commit(
                    cid, repository=repo, tag=tag, message=f"llmaos move {rec.move_id}"
                )
                image_id = str(out["Id"])
                made["image_id"] = image_id
            image = f"{repo}:{tag}"
            plan.image, plan.image_id = image, image_id
            plan.image_size = int(api_src.inspect_image(image_id).get("Size") or 0)
        # The image: streamed while the source still serves.
        if self._dst_has_image(plan.image_id):
            self._emit(rec.move_id, "image", "skip", message="the target has the image")
            with self._step(rec, "image", timings, load=False, image_id=plan.image_id):
                if image != plan.image_id and self._tag_on(self.dst.client, image) is None:
                    self._tag(api_dst, plan.image_id, image, rec)
        else:
            # Save by tag only when it names this image on the target too (or nothing):
            # `load` would otherwise move the target's tag off the image it names now.
            ref = image if image != plan.image_id else plan.image_id
            with self._step(
                rec, "image", timings, load=True, image_id=plan.image_id, ref=ref
            ) as made:
                res.image_bytes = self._stream_image(ref, plan.image_size, made)
                if not self._dst_has_image(plan.image_id):
                    raise MoveError(f"{self.dst.name} did not get image {plan.image_id[:19]}")
        # Create: volumes, then the container (not started), while the source still serves:
        # a create the target refuses then costs no downtime, and the service is down only
        # for the stop, the data copy and the start.
        with self._step(rec, "create", timings, container=plan.container) as made:
            for v in plan.volumes:
                if v["anonymous"]:
                    continue  # made with the container, as on the source
                self.journal.step(rec.move_id, "create_volume", volume=v["name"])
                info = api_src.inspect_volume(v["name"])
                api_dst.create_volume(
                    v["name"],
                    driver=v["driver"],
                    driver_opts=info.get("Options") or None,
                    labels=info.get("Labels") or None,
                )
            config = self._create_config(attrs, image)
            new_id = str(api_dst.create_container_from_config(config, name=plan.container)["Id"])
            made["id"] = res.new_id = new_id
            made["networks"] = self._connect_networks(attrs, new_id)
        sizes = self._volume_sizes(plan) if plan.volumes else {}
        if plan.was_running:
            with self._step(rec, "stop", timings, timeout=self.stop_timeout):
                api_src.stop(cid, timeout=self.stop_timeout)
        # Copy the volumes' data from the stopped source into the created target.
        if plan.volumes:
            with self._step(
                rec, "copy", timings, volumes=[v["dest"] for v in plan.volumes]
            ) as made:
                made["bytes"] = 0
                known = len(sizes) == len(plan.volumes)
                total = sum(sizes.values()) if known else None
                for v in plan.volumes:
                    self._copy_volume(cid, new_id, v["dest"], made, total)
                res.volume_bytes = made["bytes"]
        if plan.was_running:
            with self._step(rec, "start", timings, id=new_id):
                api_dst.start(new_id)
            with self._step(rec, "verify", timings, id=new_id):
                self._verify(new_id)
        self._finish(rec, plan, res, timings)

    def _tag(self, api: Any, image_id: str, ref: str, rec: MoveRecord) -> None:
        repo, _, tag = ref.rpartition(":")
        if not repo or "/" in tag:  # "host:5000/name" has no tag
            repo, tag = ref, "latest"
        self.journal.step(rec.move_id, "tag", tagged=f"{repo}:{tag}")
        api.tag(image_id, repo, tag)

    def _stream_image(self, ref: str, size: int, made: dict[str, Any]) -> int:
        """Pipe the source's ``save`` of ``ref`` into the target's ``load``; return the bytes
        the target took (``made["bytes"]`` counts them as they go)."""
        made["bytes"] = 0

        def written(n: int) -> None:
            made["bytes"] = n
            self._emit("", "image", "bytes", n, size or None)

        res = open_image_save(self.src.client.api, ref)
        with Pipe(res, on_written=written) as pipe:
            load_image(self.dst.client.api, pipe.body())
            if not pipe.eof:
                raise MoveError("the source's image stream ended early")
        made["bytes"] = pipe.written
        return pipe.written

    def _volume_sizes(self, plan: MovePlan) -> dict[str, int]:
        """The source's volumes' sizes (``docker system df``), for the copy's progress; {}
        when the engine does not say."""
        out: dict[str, int] = {}
        with contextlib.suppress(Exception):
            for v in self.src.client.api.df().get("Volumes") or []:
                size = int((v.get("UsageData") or {}).get("Size") or -1)
                if size >= 0:
                    out[str(v.get("Name"))] = size
        return {v["dest"]: out[v["name"]] for v in plan.volumes if v["name"] in out}

    def _copy_volume(
        self, src_id: str, dst_id: str, dest: str, made: dict[str, Any], total: int | None
    ) -> None:
        """Stream one volume's data from the source container to the target, adding what
        the target took to ``made["bytes"]``.

        ``get_archive`` names the tar's top entry after the path's last part, so it is put
        into the parent directory, landing exactly on the mount point."""
        before = int(made["bytes"])

        def written(n: int) -> None:
            made["bytes"] = before + n
            # tar headers make the stream a little larger than the files it carries
            shown = max(total, before + n) if total is not None else None
            self._emit("", "copy", "bytes", before + n, shown)

        parent = posixpath.dirname(dest.rstrip("/")) or "/"
        res = open_archive(self.src.client.api, src_id, dest)
        with Pipe(res, on_written=written) as pipe:
            put_archive(self.dst.client.api, dst_id, parent, pipe.body())
            if not pipe.eof:
                raise MoveError(f"the source's archive of {dest} ended early")
        made["bytes"] = before + pipe.written

    @staticmethod
    def _endpoints(attrs: dict[str, Any]) -> tuple[str | None, dict[str, dict[str, Any]]]:
        """The user-defined networks the source is on, with aliases and fixed addresses, and
        which of them the container is created on (the engine takes one at create)."""
        hc = attrs.get("HostConfig") or {}
        nets = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        mode = str(hc.get("NetworkMode") or "")
        short_id = str(attrs.get("Id", ""))[:12]
        endpoints = {}
        for net, ep in nets.items():
            if net in _DEFAULT_NETWORKS:
                continue
            endpoints[net] = {
                "Aliases": [a for a in ep.get("Aliases") or [] if a != short_id],
                "IPAMConfig": ep.get("IPAMConfig"),
            }
        if not endpoints or mode in _DEFAULT_NETWORKS:
            return None, endpoints
        return (mode if mode in endpoints else next(iter(endpoints))), endpoints

    @classmethod
    def _create_config(cls, attrs: dict[str, Any], image: str) -> dict[str, Any]:
        """The create request that gives the target the source's configuration."""
        cfg = dict(attrs.get("Config") or {})
        cfg["Image"] = image
        if cfg.get("Hostname") == str(attrs.get("Id", ""))[:12]:
            del cfg["Hostname"]  # docker's default (the id): let the new id name it
        hc = dict(attrs.get("HostConfig") or {})
        cfg["HostConfig"] = hc
        first, endpoints = cls._endpoints(attrs)
        if first is not None:
            cfg["NetworkingConfig"] = {"EndpointsConfig": {first: endpoints[first]}}
        return cfg

    def _connect_networks(self, attrs: dict[str, Any], new_id: str) -> list[str]:
        """Join the created target to the source's other user-defined networks (before it
        starts, so it never runs half-connected); return their names."""
        first, endpoints = self._endpoints(attrs)
        joined = []
        for net, ep in endpoints.items():
            if net == first:
                continue
            ipam = ep.get("IPAMConfig") or {}
            self.dst.client.api.connect_container_to_network(
                new_id,
                net,
                aliases=ep["Aliases"] or None,
                ipv4_address=ipam.get("IPv4Address") or None,
                ipv6_address=ipam.get("IPv6Address") or None,
            )
            joined.append(net)
        return joined

    def _verify(self, new_id: str) -> None:
        """Running for ``settle`` seconds without a restart, and healthy if it has a check."""
        api = self.dst.client.api
        start = time.monotonic()
        first = api.inspect_container(new_id)
        restarts = int(first.get("RestartCount") or 0)
        has_health = bool(((first.get("Config") or {}).get("Healthcheck") or {}).get("Test"))
        has_health = has_health and first["Config"]["Healthcheck"]["Test"] != ["NONE"]
        deadline = start + max(self.settle, self.health_timeout if has_health else 0)
        while True:
            now_attrs = api.inspect_container(new_id)
            st = now_attrs.get("State") or {}
            if not st.get("Running") or st.get("Restarting"):
                raise MoveError(
                    f"the target container is {st.get('Status')} (exit code "
                    f"{st.get('ExitCode')}){self._log_tail(new_id)}"
                )
            if int(now_attrs.get("RestartCount") or 0) != restarts:
                raise MoveError(f"the target container restarted{self._log_tail(new_id)}")
            health = str((st.get("Health") or {}).get("Status") or "")
            if health == "unhealthy":
                raise MoveError(f"the target container is unhealthy{self._log_tail(new_id)}")
            now = time.monotonic()
            settled = now - start >= self.settle
            if settled and (not has_health or health == "healthy"):
                return
            if now > deadline:
                raise MoveError(
                    f"the target container is not healthy after "
                    f"{self.health_timeout:.0f} s (health: {health or 'none'})"
                )
            time.sleep(0.2)

    def _log_tail(self, cid: str) -> str:
        with contextlib.suppress(Exception):
            out = self.dst.client.api.logs(cid, tail=5).decode(errors="replace").strip()
            if out:
                return f"; its last output: {out[-400:]}"
        return ""

    def _finish(
        self, rec: MoveRecord, plan: MovePlan, res: MoveResult, timings: dict[str, float]
    ) -> None:
        api_src = self.src.client.api
        if plan.keep_source:
            kept = f"{plan.container}.moved-{rec.move_id[:8]}"
            with (
                self._step(rec, "finish", timings, keep=True, renamed=kept),
                contextlib.suppress(docker.errors.NotFound),
            ):
                # a kept copy must not come back up with its engine: no second instance
                api_src.update_container(plan.container_id, restart_policy={"Name": "no"})
                if api_src.inspect_container(plan.container_id)["Name"] != f"/{kept}":
                    api_src.rename(plan.container_id, kept)
        else:
            with self._step(rec, "finish", timings, keep=False) as made:
                with contextlib.suppress(docker.errors.NotFound):
                    api_src.remove_container(plan.container_id, v=True, force=True)
                kept_volumes = []
                for v in plan.volumes:
                    if v["anonymous"]:
                        continue
                    try:
                        api_src.remove_volume(v["name"])
                    except docker.errors.NotFound:
                        pass
                    except docker.errors.APIError:
                        kept_volumes.append(v["name"])  # another container still uses it
                made["kept_volumes"] = kept_volumes
        if plan.commit:
            with contextlib.suppress(docker.errors.APIError):
                api_src.remove_image(plan.image)  # the tag only: the target has the image
        res.outcome = "moved"
        res.new_id = res.new_id or self._target_id(plan.container)
        res.message = f"{plan.container} moved from {self.src.name} to {self.dst.name}" + (
            f" (source kept stopped as {plan.container}.moved-{rec.move_id[:8]})"
            if plan.keep_source
            else ""
        )
        self.journal.end(rec.move_id, "moved", new_id=res.new_id)
        self._audit(plan, res, "ok", rec.move_id)

    def _target_id(self, name: str) -> str | None:
        for c in self.dst.client.api.containers(all=True, filters={"name": f"^/{name}$"}):
            return str(c["Id"])
        return None

    def _audit(
        self,
        plan: MovePlan,
        res: MoveResult | None,
        result: str,
        move_id: str | None,
        *,
        seen: str | None = None,
    ) -> None:
        """One audit line; ``after`` is the state observed on the engine (``seen``, or
        inspected here), never the one hoped for."""
        after = None
        if res is not None and res.outcome == "moved":
            state = self._observe(self.dst.client.api, res.new_id) if res.new_id else "unknown"
            after = {"host": self.dst.name, "id": res.new_id, "state": state}
        elif res is not None:
            state = seen or self._observe(self.src.client.api, plan.container_id)
            after = {"host": self.src.name, "id": plan.container_id, "state": state}
        self.audit.append(
            action=AUDIT_ACTION,
            host=self.src.name,
            target=plan.container,
            before={
                "host": self.src.name,
                "id": plan.container_id,
                "state": "running" if plan.was_running else "stopped",
            },
            after=after,
            result=result,
            operator=self.operator,
            to_host=self.dst.name,
            move_id=move_id,
            image_bytes=res.image_bytes if res else 0,
            volume_bytes=res.volume_bytes if res else 0,
        )

    # -- ending a move that did not finish -----------------------------------------------

    def recover(self, move_id: str, progress: ProgressFn | None = None) -> MoveResult:
        """Take an unfinished move to one of its two ends (see the module text)."""
        self._progress = progress
        self._move_id = move_id
        rec = self.journal.get(move_id)
        p = rec.plan["plan"]
        res = MoveResult(
            "", p["container"], rec.plan["source"], rec.plan["target"], move_id=move_id
        )
        if rec.ended is not None:
            res.outcome = str((rec.outcome or {}).get("outcome", "?"))
            res.message = "already ended"
            return res
        if not self.journal.claim(move_id):
            res.outcome = "failed"
            res.message = "another console is running this move now"
            return res
        return self._resolve(rec, failure=None, result=res)

    def _plan_from(self, rec: MoveRecord) -> MovePlan:
        p = dict(rec.plan["plan"])
        p["refusals"] = [Refusal(**r) for r in p.get("refusals", [])]
        plan = MovePlan(**p)
        commit = rec.step("commit")
        if commit is not None:
            plan.image = str(commit.data.get("image_ref", plan.image))
            plan.image_id = str(commit.result.get("image_id", plan.image_id))
        return plan

    def _resolve(self, rec: MoveRecord, *, failure: str | None, result: MoveResult) -> MoveResult:
        """Forward when the target was started and verifies (or the source may already be
        gone), else back. ``failure`` is set for a step that just failed in this process."""
        plan = self._plan_from(rec)
        if rec.started("finish"):
            return self._forward(rec, plan, result, failure)
        if failure is None and rec.started("start"):
            try:
                new_id = self._target_id(plan.container)
                if new_id is not None:
                    state = self.dst.client.api.inspect_container(new_id)["State"]
                    if not state.get("Running"):
                        self.journal.step(rec.move_id, "start", id=new_id, recovery=True)
                        self.dst.client.api.start(new_id)
                    self.journal.step(rec.move_id, "verify", id=new_id, recovery=True)
                    self._verify(new_id)
                    self.journal.done(rec.move_id, "verify")
                    rec = self.journal.get(rec.move_id)
                    result.new_id = new_id
                    return self._forward(rec, plan, result, None)
            except Exception as exc:
                failure = f"recovery: the target does not verify: {_reason(exc)}"
        return self._back(rec, plan, result, failure or self._why_unfinished(rec))

    @staticmethod
    def _why_unfinished(rec: MoveRecord) -> str:
        """Why a move found unfinished is rolled back: the reason its rollback began with
        (a step failed, and the rollback could not finish then), else the console stopped."""
        rollback = rec.step("rollback")
        if rollback is not None and rollback.data.get("reason"):
            return f"finishing the rollback begun after {rollback.data['reason']}"
        last = next((s for s in reversed(rec.steps) if s.name != "rollback"), None)
        during = f" during {last.name}" if last is not None else ""
        return f"the console stopped mid-move{during}"

    def _forward(
        self, rec: MoveRecord, plan: MovePlan, res: MoveResult, failure: str | None
    ) -> MoveResult:
        try:
            self._finish(rec, plan, res, res.timings)
        except Exception as exc:
            res.outcome = "failed"
            res.message = (
                f"{plan.container} runs on {self.dst.name}, verified; removing the "
                f"source failed ({_reason(exc)}); the journal will finish it"
            )
            return res
        if failure:
            res.message += f" (after: {failure})"
        return res

    def _back(self, rec: MoveRecord, plan: MovePlan, res: MoveResult, why: str) -> MoveResult:
        """Restore the source first (the service is what matters), then clear the target."""
        self.journal.step(rec.move_id, "rollback", reason=why)
        self._emit(rec.move_id, "rollback", "start", message=why)
        api_src = self.src.client.api
        problems: list[str] = []
        # The source, as it was.
        try:
            with contextlib.suppress(docker.errors.APIError):
                if plan.commit and rec.started("commit"):
                    api_src.remove_image(plan.image)
            if plan.was_running:
                state = api_src.inspect_container(plan.container_id)["State"]
                if not state.get("Running"):
                    api_src.start(plan.container_id)
                self._wait_running(api_src, plan.container_id)
        except Exception as exc:
            problems.append(f"the source did not start again on {self.src.name}: {_reason(exc)}")
        # The target's leftovers: only what this move made.
        try:
            self._clear_target(rec, plan)
        except Exception as exc:
            problems.append(
                f"the target's leftovers on {self.dst.name} are not removed yet: {_reason(exc)}"
            )
        res.outcome = "rolled_back"
        res.new_id = None
        seen = self._observe(api_src, plan.container_id)  # what is true now, not the wish
        src_ok = not any(p.startswith("the source") for p in problems)
        if plan.was_running and seen != "running" and src_ok:
            problems.insert(0, f"the source is {seen} on {self.src.name}, not running")
            src_ok = False
        res.message = f"{plan.container} stays on {self.src.name} ({seen}): {why}"
        if problems:
            res.outcome = "failed" if not src_ok else "rolled_back"
            res.message += "; " + "; ".join(problems) + " (the journal keeps the move open)"
            self._audit(
                plan,
                res,
                f"rolled back, incomplete: {why}; {'; '.join(problems)}",
                rec.move_id,
                seen=seen,
            )
            return res
        self.journal.end(rec.move_id, "rolled_back", reason=why)
        self._audit(plan, res, f"rolled back: {why}", rec.move_id, seen=seen)
        self._emit(rec.move_id, "rollback", "done")
        return res

    @staticmethod
    def _observe(api: Any, cid: str) -> str:
        """The container's state as its engine reports it now ("running", "exited"...), or
        what stopped us from seeing it."""
        try:
            st = api.inspect_container(cid).get("State") or {}
        except docker.errors.NotFound:
            return "gone"
        except Exception as exc:
            return f"unknown (cannot inspect it: {_reason(exc)})"
        if st.get("Running") and not st.get("Restarting"):
            return "running"
        return str(st.get("Status") or "unknown")

    def _wait_running(self, api: Any, cid: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            st = api.inspect_container(cid)["State"]
            if st.get("Running") and not st.get("Restarting"):
                return
            if time.monotonic() > deadline:
                raise MoveError(f"still {st.get('Status')} (exit code {st.get('ExitCode')})")
            time.sleep(0.1)

    def _clear_target(self, rec: MoveRecord, plan: MovePlan) -> None:
        api = self.dst.client.api
        if rec.started("create"):
            ids = {str(i) for i in rec.made("id")}
            for c in api.containers(all=True, filters={"name": f"^/{plan.container}$"}):
                cid = str(c["Id"])
                # The name was free at pre-check; a container under it created since this move
                # began (its id unknown if the console died inside the create) is ours.
                if cid in ids or float(c.get("Created") or 0) >= rec.began - 2:
                    with contextlib.suppress(docker.errors.NotFound):
                        api.remove_container(cid, v=True, force=True)
        for name in rec.made("volume"):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_volume(str(name))
        for ref in rec.made("tagged"):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_image(str(ref), noprune=True)
        image = rec.step("image")
        if image is not None and image.data.get("load"):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                # Loaded by this move; kept if another container has started using it.
                api.remove_image(str(image.data["image_id"]))


def recover_all(
    journal: MoveJournal,
    audit: AuditLog,
    engine_for: Callable[[str], Engine],
    *,
    progress: ProgressFn | None = None,
    **engine_options: Any,
) -> list[MoveResult]:
    """Resolve every unfinished move in ``journal`` (run when the console starts).

    ``engine_for(host_name)`` opens a host's engine (it may raise when the host is down: that
    move stays unfinished, reported as "failed", and is tried again next time).
    ``engine_options`` go to :class:`MoveEngine` (``settle``, ``read_only`` is ignored:
    finishing a move the operator started is not a new change).
    """
    out = []
    engine_options.pop("read_only", None)
    settle_override = engine_options.pop("settle", None)
    for rec in journal.unfinished():
        if rec.plan.get("kind") != "container.move":
            continue
        src_name, dst_name = str(rec.plan["source"]), str(rec.plan["target"])
        p = rec.plan["plan"]
        try:
            src, dst = engine_for(src_name), engine_for(dst_name)
        except Exception as exc:
            out.append(
                MoveResult(
                    "failed",
                    p["container"],
                    src_name,
                    dst_name,
                    move_id=rec.move_id,
                    message=f"cannot reach the engines yet: {_reason(exc)}",
                )
            )
            continue
        settle = float(
            settle_override if settle_override is not None else rec.plan.get("settle", 3.0)
        )
        eng = MoveEngine(
            src,
            dst,
            journal,
            audit,
            settle=settle,
            operator=rec.plan.get("operator"),
            **engine_options,
        )
        out.append(eng.recover(rec.move_id, progress=progress))
    return out


def _reason(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc) or type(exc).__name__
