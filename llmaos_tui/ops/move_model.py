"""What a container move is made of: its plan, its result, its progress news, its refusals.

Plain values, for every side: the engine makes them, the CLI prints them, and the move
dialog receives them as they are (so this module loads no docker, SSH or UI library: a
screen may import it; tests/test_layering.py checks what it loads). Nothing here changes
an engine; the engines' shared state is :class:`~llmaos_tui.ops.move_base.MoverBase`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

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
    steps: list[str]  # ids, in order: a subset of STEPS
    refusals: list[Refusal] = field(default_factory=list)
    step_notes: dict[str, str] = field(default_factory=dict)  # id -> what is special

    def label(self, step: str) -> str:
        """``step`` as an operator reads it: "image (present on target: not streamed)"."""
        note = self.step_notes.get(step)
        return f"{step} ({note})" if note else step


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


def _reason(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc) or type(exc).__name__
