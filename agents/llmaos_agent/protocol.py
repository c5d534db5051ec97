"""The wire: every message between agent and console, as msgspec Structs.

Newline-delimited JSON-RPC 2.0. The agent speaks first with a ``hello``
notification, then streams ``sample`` notifications; the console makes calls
with ids. Decoding is strict: unknown fields are refused, strings and lists are
bounded, and a line longer than :data:`MAX_LINE_BYTES` is refused before it is
parsed. A bad line raises :class:`ProtocolError` and nothing else.

This module is the single source of truth for the message shapes; both sides
import it. Where msgspec is not installed (a bare host's system python3) the Structs are
:mod:`llmaos_agent.wirelite`'s stand-ins and its strict stdlib codec decodes and encodes
them, refusing what msgspec refuses and writing the bytes msgspec writes; type checkers see
msgspec's classes either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NamedTuple, TypeAlias

from llmaos_agent import wirelite
from llmaos_agent.paths import SAFE_ID

_wire = wirelite.backend()
if TYPE_CHECKING:
    # Re-exported (the ``as``): the agent's modules take Struct and replace from here.
    from msgspec import Meta, Raw, field
    from msgspec import Struct as Struct  # noqa: PLC0414
    from msgspec.structs import replace as replace  # noqa: PLC0414
else:
    Struct, Meta, field, Raw, replace = (
        _wire.Struct, _wire.Meta, _wire.field, _wire.Raw, _wire.replace,
    )  # fmt: skip
WIRE: Final = _wire.codec.name
"""Which codec this process speaks with: ``msgspec`` or ``lite`` (the stdlib one)."""
_codec: wirelite.Codec = _wire.codec

PROTOCOL_VERSION: Final = 6
"""Bumped on any incompatible change of the shapes below (2: requests and process control;
containers came within 2: an agent without them answers METHOD_NOT_FOUND and sends none;
3: the change streams are named ``requests.changed`` and ``containers.changed`` as DESIGN.md
has them, and a container tells its compose service and orchestrator; 4: ids that become
paths match :data:`SAFE_ID`, and the hello says whether the request queue is available;
5: a sample carries network, disk and temperature figures (``net``, ``disk``, ``temps``), a
GPU process its SM and memory share, and a process's ``status`` is its state letter as ps
shows it, ``T`` for stopped, ``Z`` for a zombie; 6: per-process data only for clients that
want it, ``procs.watch`` turning a client's off and on, and ``proc.detail``, one process's
command line, cwd, threads, open files, cgroup and GPU use, and a sample may carry the
agent's own cost, ``agent``, whether its client has processes on or off)."""

MAX_LINE_BYTES: Final = 1 << 20
"""Longest line either side accepts. Samples are a few KB; history comes in chunks."""

HISTORY_CHUNK_BYTES: Final = 24 * 1024
"""History notifications stay under 32 KB so a compressed stream can refer back."""

# Bounds that keep a hostile peer from making us allocate without limit.
Str = Annotated[str, Meta(max_length=4096)]
ShortStr = Annotated[str, Meta(max_length=256)]
Load = Annotated[float, Meta(ge=0.0, le=1.0)]
NonNeg = Annotated[int, Meta(ge=0)]
Pid = Annotated[int, Meta(ge=0, le=2**32)]
MAX_CORES: Final = 4096
MAX_GPUS: Final = 64
MAX_PROCS: Final = 100_000
MAX_IO_ROWS: Final = 256
"""Interfaces, disks and temperature sensors a sample may name, each."""
IoName = Annotated[str, Meta(max_length=64)]
"""An interface, disk or sensor name: the kernel's are 15 characters or fewer, Windows'
adapter names longer; the agent cuts them to this."""

SafeId = Annotated[str, Meta(min_length=1, max_length=64, pattern=SAFE_ID)]


class ProtocolError(ValueError):
    """A line that is not a valid message of this protocol."""


class VersionMismatch(ProtocolError):
    """The peer speaks another protocol version."""


class BadParams(ProtocolError):
    """A call whose params are invalid: answered with INVALID_PARAMS under its id."""

    def __init__(self, message: str, rid: RequestId) -> None:
        super().__init__(message)
        self.id = rid


# --------------------------------------------------------------------- hello


class HostFacts(Struct, forbid_unknown_fields=True, frozen=True):
    hostname: ShortStr
    os: ShortStr  # platform.system(): Linux, Windows, Darwin
    os_release: ShortStr
    arch: ShortStr
    python: ShortStr
    user: ShortStr
    cores: Annotated[int, Meta(ge=1, le=MAX_CORES)]
    physical_cores: Annotated[int, Meta(ge=1, le=MAX_CORES)] | None
    mem_total: NonNeg
    boot_time: float


class Capabilities(Struct, forbid_unknown_fields=True, frozen=True):
    affinity: bool
    cpu_num: bool
    nvml: bool
    nvml_reason: Str | None
    docker: bool
    docker_reason: Str | None
    root: bool
    read_only: bool
    queue: bool = True  # the request queue works; False: ``queue_reason`` says why not
    queue_reason: Str | None = None


class Hello(Struct, forbid_unknown_fields=True, frozen=True):
    protocol: int
    agent_version: ShortStr
    pid: Pid
    host: HostFacts
    caps: Capabilities
    interval: Annotated[float, Meta(gt=0, le=3600)]
    proc_interval: Annotated[float, Meta(gt=0, le=3600)]


# -------------------------------------------------------------------- sample


class Memory(Struct, forbid_unknown_fields=True, array_like=True, frozen=True):
    total: NonNeg
    used: NonNeg
    available: NonNeg
    swap_total: NonNeg
    swap_used: NonNeg


class GpuProc(Struct, forbid_unknown_fields=True, array_like=True, frozen=True):
    pid: Pid
    used_mem: NonNeg | None  # bytes; None where the driver does not say
    # Its share of the GPU's SM time and of its memory bandwidth over the last interval
    # (NVML's process utilisation samples, as nvitop shows them); 0 when it had no sample,
    # None where the device does not report them.
    sm: Load | None = None
    mem: Load | None = None


class GpuSample(Struct, forbid_unknown_fields=True, frozen=True):
    """One GPU. A field the device does not support is None ("n/a")."""

    index: Annotated[int, Meta(ge=0, le=MAX_GPUS)]
    uuid: ShortStr
    name: ShortStr
    util: Load | None = None
    mem_used: NonNeg | None = None
    mem_total: NonNeg | None = None
    temp_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    procs: Annotated[list[GpuProc], Meta(max_length=4096)] = field(default_factory=list)
    error: Str | None = None


class Proc(Struct, forbid_unknown_fields=True, array_like=True, frozen=True):
    """One process. Sent as a JSON array: the table is the bulk of the wire."""

    pid: Pid
    ppid: Pid
    name: ShortStr
    user: ShortStr
    cpu: Annotated[float, Meta(ge=0.0)]  # percent of one core, as top shows it
    rss: NonNeg
    nice: int | None
    affinity: ShortStr | None  # cpulist "0-3,8"; None: not available on this OS
    core: int | None  # the core it last ran on
    status: ShortStr  # the state letter as ps shows it: R S D T t Z I ..., "?" unknown
    create_time: float
    gpu_mem: NonNeg | None
    cmd: Str


class NetRate(Struct, forbid_unknown_fields=True, array_like=True, frozen=True):
    """One network interface's traffic over the last interval: ``[name, rx, tx]``."""

    name: IoName
    rx: NonNeg  # bytes per second received
    tx: NonNeg  # bytes per second sent


class DiskRate(Struct, forbid_unknown_fields=True, array_like=True, frozen=True):
    """One whole disk's I/O over the last interval: ``[name, read, write]``."""

    name: IoName
    read: NonNeg  # bytes per second
    write: NonNeg


Celsius = Annotated[int, Meta(ge=-273, le=1000)]


class AgentCost(Struct, forbid_unknown_fields=True, array_like=True, frozen=True):
    """The agent daemon's own cost: ``[cpu, rss]``."""

    cpu: Annotated[float, Meta(ge=0.0)]  # cores (all its threads) since its last report
    rss: NonNeg | None  # resident bytes now; None where the agent cannot read it


class ProcDelta(Struct, forbid_unknown_fields=True, frozen=True):
    """The process table as changes: ``full`` replaces the table."""

    full: bool
    upsert: Annotated[list[Proc], Meta(max_length=MAX_PROCS)]
    gone: Annotated[list[Pid], Meta(max_length=MAX_PROCS)]


class Sample(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    t: float
    seq: NonNeg
    cpu: Annotated[list[Load], Meta(max_length=MAX_CORES)]
    mem: Memory
    load: Annotated[list[float], Meta(min_length=3, max_length=3)] | None = None
    gpus: Annotated[list[GpuSample], Meta(max_length=MAX_GPUS)] = field(default_factory=list)
    procs: ProcDelta | None = None
    # Interfaces and whole disks that moved data in the interval (one left out moved none:
    # 0 B/s).
    net: Annotated[list[NetRate], Meta(max_length=MAX_IO_ROWS)] = field(default_factory=list)
    disk: Annotated[list[DiskRate], Meta(max_length=MAX_IO_ROWS)] = field(default_factory=list)
    # The CPU's temperature sensors in whole degrees C, every few samples (absent between),
    # named by the last ``temp_names``, in its order (hwmon's labels: "Package id 0",
    # "Core 3", "Tctl"). The names come with a daemon's first temperatures, whenever they
    # change and once a minute: a 64-core host's 34 labels would otherwise cost more than
    # its 64 core loads. Temperatures whose count is not the names' are not yet named.
    temps: Annotated[list[Celsius], Meta(max_length=MAX_IO_ROWS)] = field(default_factory=list)
    temp_names: Annotated[list[IoName], Meta(max_length=MAX_IO_ROWS)] = field(default_factory=list)
    # The agent's own cost, every few samples (absent between; collect/self_cost.py): the
    # process table, which also has the daemon's row, goes only to clients that want it.
    agent: AgentCost | None = None


class History(Struct, forbid_unknown_fields=True, frozen=True):
    """Past samples (without processes), oldest first, in chunks."""

    samples: Annotated[list[Sample], Meta(max_length=100_000)]
    last: bool


class Log(Struct, forbid_unknown_fields=True, frozen=True):
    level: Literal["debug", "info", "warning", "error"]
    message: Str


# --------------------------------------------------------------------- calls


class Handshake(Struct, forbid_unknown_fields=True, frozen=True):
    protocol: int
    client: ShortStr
    operator: ShortStr = ""  # who sits at the console (user@host), for the audit log


class HandshakeResult(Struct, forbid_unknown_fields=True, frozen=True):
    protocol: int
    agent_version: ShortStr


class Empty(Struct, forbid_unknown_fields=True, frozen=True):
    pass


class Pong(Struct, forbid_unknown_fields=True, frozen=True):
    t: float


class ProcTable(Struct, forbid_unknown_fields=True, frozen=True):
    t: float
    procs: Annotated[list[Proc], Meta(max_length=MAX_PROCS)]


class RpcError(Struct, forbid_unknown_fields=True, frozen=True):
    code: int
    message: Str
    data: Str | None = None


# ------------------------------------------------------------------ requests

RequestIdStr = SafeId
Priority = Annotated[int, Meta(ge=-1000, le=1000)]
RequestState = Literal["queued", "running", "done", "failed", "cancelled", "held"]
MAX_ARGV: Final = 1024
MAX_REQUESTS_PER_MESSAGE: Final = 500


class RequestSpec(Struct, forbid_unknown_fields=True, frozen=True):
    """What a client submits. ``id`` is given only when a request moves between hosts."""

    argv: Annotated[list[Str], Meta(min_length=1, max_length=MAX_ARGV)]
    shell: bool = False  # run argv[0] through the host's shell; only when asked for
    priority: Priority = 0
    cpus: Annotated[int, Meta(ge=0, le=MAX_CORES)] = 1
    gpus: Annotated[int, Meta(ge=0, le=MAX_GPUS)] = 0
    share_gpu: bool = False
    mem: NonNeg = 0  # bytes the request needs free to start
    name: ShortStr = ""
    cwd: Str | None = None
    id: RequestIdStr | None = None
    hold: bool = False  # arrive held: a request moving between hosts waits for its release


class RequestInfo(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    id: RequestIdStr
    name: ShortStr
    argv: Annotated[list[Str], Meta(max_length=MAX_ARGV)]
    shell: bool
    priority: Priority
    cpus: NonNeg
    gpus: NonNeg
    share_gpu: bool
    mem: NonNeg
    state: RequestState
    seq: int  # FIFO position within a priority (lower first)
    submitted: float
    owner: ShortStr = ""
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    pid: Pid | None = None
    cores: Annotated[list[NonNeg], Meta(max_length=MAX_CORES)] = field(default_factory=list)
    gpu_uuids: Annotated[list[ShortStr], Meta(max_length=MAX_GPUS)] = field(default_factory=list)
    nice: int | None = None
    reason: Str = ""  # where it went and why, or why it waits / failed


class RequestDelta(Struct, forbid_unknown_fields=True, frozen=True):
    """The queue as changes (``requests`` notification); ``full`` starts a new list."""

    full: bool
    upsert: Annotated[list[RequestInfo], Meta(max_length=MAX_REQUESTS_PER_MESSAGE)]
    gone: Annotated[list[RequestIdStr], Meta(max_length=MAX_REQUESTS_PER_MESSAGE)] = field(
        default_factory=list
    )
    last: bool = True  # False while more chunks of a full list follow


class RequestQuery(Struct, forbid_unknown_fields=True, frozen=True):
    states: Annotated[list[RequestState], Meta(max_length=6)] = field(default_factory=list)
    limit: Annotated[int, Meta(ge=1, le=MAX_REQUESTS_PER_MESSAGE)] = MAX_REQUESTS_PER_MESSAGE


class RequestList(Struct, forbid_unknown_fields=True, frozen=True):
    requests: Annotated[list[RequestInfo], Meta(max_length=MAX_REQUESTS_PER_MESSAGE)]
    total: NonNeg  # how many match, when more than ``limit``


class RequestRef(Struct, forbid_unknown_fields=True, frozen=True):
    id: RequestIdStr


class Reprioritize(Struct, forbid_unknown_fields=True, frozen=True):
    id: RequestIdStr
    priority: Priority


class LogQuery(Struct, forbid_unknown_fields=True, frozen=True):
    id: RequestIdStr
    offset: NonNeg = 0
    max_bytes: Annotated[int, Meta(ge=1, le=256 * 1024)] = 64 * 1024


class LogChunk(Struct, forbid_unknown_fields=True, frozen=True):
    id: RequestIdStr
    offset: NonNeg  # where ``data`` starts; the next query starts at offset + len(bytes)
    next_offset: NonNeg
    data: Annotated[str, Meta(max_length=256 * 1024)]
    running: bool  # more may come


# ------------------------------------------------------------ process control


class ProcTarget(Struct, forbid_unknown_fields=True, frozen=True):
    """A process as the console saw it: the create time tells a reused pid apart."""

    pid: Pid
    create_time: float


class Renice(Struct, forbid_unknown_fields=True, frozen=True):
    pid: Pid
    create_time: float
    nice: int  # range checked by the agent, which knows its OS's range


class SetAffinity(Struct, forbid_unknown_fields=True, frozen=True):
    pid: Pid
    create_time: float
    cores: Annotated[list[NonNeg], Meta(min_length=1, max_length=MAX_CORES)]


class SendSignal(Struct, forbid_unknown_fields=True, frozen=True):
    pid: Pid
    create_time: float
    signal: ShortStr  # a name: TERM, KILL, INT, HUP, STOP, CONT, QUIT, USR1, USR2


class ProcWatch(Struct, forbid_unknown_fields=True, frozen=True):
    """``procs.watch``: whether this client gets the process table with its samples.

    On by default. Off, its samples come without ``procs`` (a host in a fleet view costs its
    figures alone); on again, its next process pass is a full table (``full``), then
    changes. The answer says what now holds; other clients are unaffected."""

    on: bool


class ProcDetailQuery(Struct, forbid_unknown_fields=True, frozen=True):
    """``proc.detail``: one process; ``create_time`` (as the table gave it), when given,
    refuses a pid that another process has taken since."""

    pid: Pid
    create_time: float | None = None


MAX_CMDLINE: Final = 32 * 1024
"""Characters of a command line ``proc.detail`` sends (the kernel allows megabytes)."""
CmdArg = Annotated[str, Meta(max_length=MAX_CMDLINE)]
CpuListStr = Annotated[str, Meta(max_length=6 * MAX_CORES)]
"""A cpulist of up to every core, one by one ("0,2,4,...,4094")."""


class ProcGpu(Struct, forbid_unknown_fields=True, frozen=True):
    """A process's use of one GPU in the agent's last sample."""

    index: Annotated[int, Meta(ge=0, le=MAX_GPUS)]
    uuid: ShortStr
    used_mem: NonNeg | None  # bytes; None where the driver does not say
    sm: Load | None = None  # shares as :class:`GpuProc` has them
    mem: Load | None = None


class Unread(Struct, forbid_unknown_fields=True, array_like=True, frozen=True):
    """A field of :class:`ProcDetail` the agent could not read, and why: ``[field, reason]``."""

    field: ShortStr
    reason: Str


class ProcDetail(Struct, forbid_unknown_fields=True, frozen=True):
    """What ``proc.detail`` answers. A field the agent may not or cannot read (another
    user's cwd and open files, a zombie's command line) is None, and ``unread`` says why."""

    pid: Pid
    ppid: Pid
    name: ShortStr
    user: ShortStr | None
    state: ShortStr  # the state letter, as Proc.status
    create_time: float  # epoch s, as the table has it
    argv: Annotated[list[CmdArg], Meta(max_length=MAX_CMDLINE)]  # at most MAX_CMDLINE in all
    argv_cut: bool  # the command line was longer and is cut
    cwd: Str | None
    threads: NonNeg | None
    open_files: NonNeg | None  # open file descriptors (handles on Windows)
    nice: int | None
    affinity: CpuListStr | None  # cpulist; None: not on this OS
    cgroup: Str | None  # the first line of /proc/PID/cgroup; None off Linux
    container: ShortStr | None  # the container id the cgroup names (docker's 64 hex)
    rss: NonNeg | None
    gpus: Annotated[list[ProcGpu], Meta(max_length=MAX_GPUS)] = field(default_factory=list)
    unread: Annotated[list[Unread], Meta(max_length=32)] = field(default_factory=list)


# ---------------------------------------------------------------- containers

ContainerRefStr = Annotated[
    str, Meta(min_length=1, max_length=256, pattern=r"\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
]
"""A container by id (full or short) or name, as the engine accepts it."""
ContainerState = Literal["created", "running", "paused", "restarting", "removing", "exited",
                         "dead", "?"]  # fmt: skip
MAX_CONTAINERS_PER_MESSAGE: Final = 500
MAX_PORTS: Final = 256
MAX_LOG_BYTES: Final = 256 * 1024


class Container(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """One container of the host's engine, with its load from the agent's process table."""

    id: ContainerRefStr  # the full id
    name: ShortStr
    image: ShortStr  # "name:tag", or a short image id when no tag names it
    image_id: ShortStr
    state: ContainerState
    status: ShortStr  # the engine's words: "Up 5 minutes (healthy)"
    created: float
    health: Literal["healthy", "unhealthy", "starting"] | None = None
    ports: Annotated[list[ShortStr], Meta(max_length=MAX_PORTS)] = field(default_factory=list)
    volumes: Annotated[list[Str], Meta(max_length=MAX_PORTS)] = field(default_factory=list)
    gpus: Annotated[int, Meta(ge=-1, le=MAX_GPUS)] = 0  # requested: 0 none, -1 all
    project: ShortStr | None = None  # docker compose project
    service: ShortStr | None = None  # its compose service: replicas share project and service
    # Another orchestrator that owns it and would act on its own when it moves ("swarm",
    # "kubernetes", "nomad", "ecs"), from its labels; None: the engine's alone.
    orchestrator: ShortStr | None = None
    cpu: Annotated[float, Meta(ge=0.0)] = 0.0  # cores used
    mem: NonNeg = 0  # bytes of RSS
    pids: NonNeg = 0
    # When its oldest process started (epoch s), while running: uptime is now - started.
    # Sent rather than the uptime itself, which would change every pass.
    started: float | None = None


class ContainerDelta(Struct, forbid_unknown_fields=True, frozen=True):
    """The containers as changes (``containers`` notification); ``full`` starts a new list."""

    full: bool
    upsert: Annotated[list[Container], Meta(max_length=MAX_CONTAINERS_PER_MESSAGE)]
    gone: Annotated[list[ContainerRefStr], Meta(max_length=MAX_CONTAINERS_PER_MESSAGE)] = field(
        default_factory=list
    )
    last: bool = True  # False while more chunks of a full list follow


class ContainerRef(Struct, forbid_unknown_fields=True, frozen=True):
    """``containers.start`` / ``stop`` / ``restart``: ``timeout`` is the stop grace (s)."""

    id: ContainerRefStr
    timeout: Annotated[int, Meta(ge=0, le=600)] = 10


class ContainerLogQuery(Struct, forbid_unknown_fields=True, frozen=True):
    id: ContainerRefStr
    tail: Annotated[int, Meta(ge=1, le=10_000)] = 200


class ContainerLog(Struct, forbid_unknown_fields=True, frozen=True):
    """The last lines of a container's output (stdout and stderr interleaved)."""

    id: ContainerRefStr
    data: Annotated[str, Meta(max_length=MAX_LOG_BYTES)]
    truncated: bool = False  # cut to MAX_LOG_BYTES (its newest part kept)


class Change(Struct, forbid_unknown_fields=True, frozen=True):
    """What a change did, as the audit log records it."""

    target: Str
    before: Str
    after: Str


# JSON-RPC error codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
VERSION_ERROR: Final = -32001
READ_ONLY_ERROR: Final = -32002
REFUSED: Final = -32003
"""A change the agent will not make (gone pid, bad value, protected process); nothing changed."""
NOT_FOUND: Final = -32004

NOTIFICATIONS: Final[dict[str, type[Struct]]] = {
    "hello": Hello,
    "sample": Sample,
    "history": History,
    "log": Log,
    "requests.changed": RequestDelta,
    "containers.changed": ContainerDelta,
}
"""Agent -> console notifications and their params."""

Needs: TypeAlias = Literal["queue", "docker"]
"""What a call needs of the host beyond the agent itself, as the hello's capabilities name it
(``caps.queue``, ``caps.docker``): without it the call is refused, nothing done."""


class CallSpec(NamedTuple):
    """One console -> agent call, as the agent serves it.

    Built with :func:`read` or :func:`change`, which keep the two flags consistent (checked
    once more below the table): every call that changes state is refused on a read-only
    agent (``daemon --read-only``) and audited, and a call that changes nothing is allowed
    read-only and not audited. A NamedTuple rather than a dataclass: the agent imports this
    module at start and stays light.
    """

    params: type[Struct]
    result: type[Struct]
    changes: bool
    """Changes state on the host: audited (the log checked before, a line after)."""
    read_only_ok: bool
    """Served by a read-only agent."""
    needs: Needs | None = None
    threaded: bool = False
    """The work runs in a thread and is answered when done (a container engine may take
    seconds), while the client's other calls go on."""


def read(params: type[Struct], result: type[Struct], *, needs: Needs | None = None,
         threaded: bool = False) -> CallSpec:  # fmt: skip
    """A call that changes nothing: allowed read-only, not audited."""
    return CallSpec(params, result, changes=False, read_only_ok=True, needs=needs,
                    threaded=threaded)  # fmt: skip


def change(params: type[Struct], result: type[Struct], *, needs: Needs | None = None,
           threaded: bool = False) -> CallSpec:  # fmt: skip
    """A call that changes state: refused read-only, audited."""
    return CallSpec(params, result, changes=True, read_only_ok=False, needs=needs,
                    threaded=threaded)  # fmt: skip


CALL_SPECS: Final[Mapping[str, CallSpec]] = MappingProxyType(
    {
        "handshake": read(Handshake, HandshakeResult),
        "ping": read(Empty, Pong),
        "processes": read(Empty, ProcTable),
        "shutdown": change(Empty, Empty),
        "requests.submit": change(RequestSpec, RequestInfo, needs="queue"),
        "requests.list": read(RequestQuery, RequestList, needs="queue"),
        "requests.get": read(RequestRef, RequestInfo, needs="queue"),
        "requests.prio": change(Reprioritize, RequestInfo, needs="queue"),
        "requests.hold": change(RequestRef, RequestInfo, needs="queue"),
        "requests.release": change(RequestRef, RequestInfo, needs="queue"),
        "requests.top": change(RequestRef, RequestInfo, needs="queue"),
        "requests.cancel": change(RequestRef, RequestInfo, needs="queue"),
        "requests.withdraw": change(RequestRef, RequestInfo, needs="queue"),
        "requests.log": read(LogQuery, LogChunk, needs="queue"),
        "procs.watch": read(ProcWatch, ProcWatch),
        "proc.detail": read(ProcDetailQuery, ProcDetail),
        "proc.renice": change(Renice, Change),
        "proc.affinity": change(SetAffinity, Change),
        "proc.signal": change(SendSignal, Change),
        "containers.start": change(ContainerRef, Change, needs="docker", threaded=True),
        "containers.stop": change(ContainerRef, Change, needs="docker", threaded=True),
        "containers.restart": change(ContainerRef, Change, needs="docker", threaded=True),
        "containers.logs": read(ContainerLogQuery, ContainerLog, needs="docker", threaded=True),
    }
)
"""Console -> agent calls: the one table the agent dispatches from and both sides decode by."""

if any(s.changes == s.read_only_ok for s in CALL_SPECS.values()):
    raise ValueError("CALL_SPECS: a change is refused read-only, and only a change is")

CALLS: Final[Mapping[str, tuple[type[Struct], type[Struct]]]] = MappingProxyType(
    {m: (s.params, s.result) for m, s in CALL_SPECS.items()}
)
"""Console -> agent calls: method -> (params, result), from :data:`CALL_SPECS`."""

CHANGES: Final = frozenset(m for m, s in CALL_SPECS.items() if s.changes)
"""Calls that change something: refused in read-only mode, written to the audit log."""

RequestId: TypeAlias = int | Annotated[str, Meta(max_length=64)]


# ------------------------------------------------------------------ envelope


class _Envelope(Struct, forbid_unknown_fields=True):
    jsonrpc: Literal["2.0"]
    id: RequestId | None = None
    method: ShortStr | None = None
    params: Raw = field(default_factory=Raw)
    result: Raw = field(default_factory=Raw)
    error: RpcError | None = None


class Notification(Struct, frozen=True):
    method: str
    params: Any


class Request(Struct, frozen=True):
    id: RequestId
    method: str
    params: Any


class Response(Struct, frozen=True):
    id: RequestId | None
    result: Raw | None
    error: RpcError | None


Incoming: TypeAlias = Notification | Request | Response

# The codec's errors (``_codec.errors``) include invalid UTF-8 inside a string and JSON
# nested deeper than the decoder's stack allows (a hostile ``[[[[...``): each is a bad line,
# answered as one, never a crash.


def decode(line: bytes, *, notifications: bool = True, requests: bool = True) -> Incoming:
    """Decode one line into a typed message, or raise :class:`ProtocolError`.

    ``notifications`` and ``requests`` say which kinds this side accepts: the
    console takes notifications and responses, the agent requests only.
    """
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(line)} bytes is over the {MAX_LINE_BYTES} byte limit")
    try:
        env = _codec.decode(line, _Envelope)
    except _codec.errors as exc:
        raise ProtocolError(f"not a JSON-RPC 2.0 message: {exc}") from None
    if env.method is None:
        return _response(env)
    if len(env.result) or env.error is not None:
        raise ProtocolError("a message with a method cannot carry result or error")
    if env.id is None:
        if not notifications:
            raise ProtocolError(f"unexpected notification {env.method!r}")
        return _notification(env, env.method)
    if not requests:
        raise ProtocolError(f"unexpected request {env.method!r}")
    return _request(env, env.id, env.method)


def _notification(env: _Envelope, method: str) -> Notification:
    ptype = NOTIFICATIONS.get(method)
    if ptype is None:
        raise ProtocolError(f"unknown notification {method!r}")
    return Notification(method, _params(env, ptype))


def _request(env: _Envelope, rid: RequestId, method: str) -> Request:
    spec = CALL_SPECS.get(method)
    # An unknown method is answered, not refused: the caller gets METHOD_NOT_FOUND.
    try:
        params = _params(env, spec.params) if spec else None
    except ProtocolError as exc:
        raise BadParams(str(exc), rid) from None
    return Request(rid, method, params)


def _response(env: _Envelope) -> Response:
    if len(env.params):
        raise ProtocolError("a response cannot carry params")
    if (len(env.result) > 0) == (env.error is not None):
        raise ProtocolError("a response carries exactly one of result and error")
    return Response(env.id, env.result if len(env.result) else None, env.error)


class _VersionProbe(Struct):
    """Only the version of a ``hello``, read leniently: another version has other shapes."""

    protocol: int


def _params(env: _Envelope, ptype: type[Struct]) -> Any:
    raw = bytes(env.params) if len(env.params) else b"{}"
    if ptype is Hello:
        # Check the version before the strict decode: a hello of another protocol
        # version differs in shape, and must say so rather than "unknown field".
        try:
            probe = _codec.decode(raw, _VersionProbe)
        except _codec.errors:
            pass  # no usable version: the strict decode below says what is wrong
        else:
            if probe.protocol != PROTOCOL_VERSION:
                raise VersionMismatch(
                    f"agent speaks protocol {probe.protocol}, "
                    f"this console speaks {PROTOCOL_VERSION}; "
                    "install the same llmaos-tui version on both sides "
                    "(or run `llmaos-agent stop` on the host so a current agent starts)"
                )
    try:
        return _codec.decode(raw, ptype)
    except _codec.errors as exc:
        raise ProtocolError(f"bad params for {env.method!r}: {exc}") from None


def decode_result(resp: Response, rtype: type[Struct]) -> Any:
    """Decode a response's result as ``rtype``, or raise :class:`ProtocolError`."""
    if resp.result is None:
        raise ProtocolError("response has no result")
    try:
        return _codec.decode(bytes(resp.result), rtype)
    except _codec.errors as exc:
        raise ProtocolError(f"bad result: {exc}") from None


def encode_notification(method: str, params: Struct | Raw) -> bytes:
    return _codec.encode({"jsonrpc": "2.0", "method": method, "params": params}) + b"\n"


def encode_request(rid: RequestId, method: str, params: Struct) -> bytes:
    return _codec.encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}) + b"\n"


def encode_result(rid: RequestId, result: Struct) -> bytes:
    return _codec.encode({"jsonrpc": "2.0", "id": rid, "result": result}) + b"\n"


def encode_error(rid: RequestId | None, code: int, message: str) -> bytes:
    err = RpcError(code=code, message=message[:4000])
    return _codec.encode({"jsonrpc": "2.0", "id": rid, "error": err}) + b"\n"


def encode(obj: Struct | dict[str, Any]) -> bytes:
    """Plain JSON of one Struct, or a dict of them (history entries, ``sample --json``)."""
    return _codec.encode(obj)


def encode_history(entries: list[bytes], *, last: bool) -> bytes:
    """A ``history`` notification from already-encoded samples, without re-encoding them."""
    body = b'{"samples":[' + b",".join(entries) + b'],"last":' + (b"true" if last else b"false")
    return encode_notification("history", Raw(body + b"}"))
