"""The wire (DESIGN.md, "The wire"): every message survives a round trip, and a bad line
is refused with a ProtocolError a user can read, never with a crash or a silent pass.

Every test here runs twice: once with msgspec's codec (the console, and an agent that has
msgspec) and once with the standard-library codec a bare host's agent decodes with
(``llmaos_agent.wirelite``), on the same messages and the same hostile lines."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmaos_agent import protocol as p
from llmaos_agent import wirelite
from llmaos_agent.protocol import (
    CALLS,
    MAX_LINE_BYTES,
    NOTIFICATIONS,
    PROTOCOL_VERSION,
    ProtocolError,
    VersionMismatch,
)


@pytest.fixture(autouse=True, scope="module", params=["msgspec", "lite"])
def codec(request: pytest.FixtureRequest) -> Any:
    """The codec ``p`` decodes and encodes with in this run of the module's tests."""
    chosen = wirelite.MsgspecCodec() if request.param == "msgspec" else wirelite.LiteCodec()
    saved = p._codec
    p._codec = chosen
    yield chosen
    p._codec = saved


# ------------------------------------------------------------------ examples

FACTS = p.HostFacts(
    hostname="gpu-07.example",
    os="Linux",
    os_release="6.8.0-45-generic",
    arch="x86_64",
    python="3.11.9",
    user="ops",
    cores=64,
    physical_cores=32,
    mem_total=540_000_000_000,
    boot_time=1_718_000_000.25,
)
CAPS = p.Capabilities(
    affinity=True,
    cpu_num=True,
    nvml=False,
    nvml_reason="NVML unavailable: NVML Shared Library Not Found",
    docker=True,
    docker_reason=None,
    root=False,
    read_only=True,
)
HELLO = p.Hello(
    protocol=PROTOCOL_VERSION,
    agent_version="0.1.0",
    pid=4242,
    host=FACTS,
    caps=CAPS,
    interval=1.0,
    proc_interval=2.5,
)
PROC = p.Proc(
    pid=1234,
    ppid=1,
    name="vllm",
    user="ops",
    cpu=387.5,
    rss=12_884_901_888,
    nice=-5,
    affinity="0-15,32",
    core=7,
    status="running",
    create_time=1_718_000_123.45,
    gpu_mem=40_000_000_000,
    cmd="python -m vllm.entrypoints.openai.api_server --model llama",
)
PROC_NO_EXTRAS = p.Proc(
    pid=99,
    ppid=2,
    name="kworker/0:1",
    user="root",
    cpu=0.0,
    rss=0,
    nice=None,
    affinity=None,
    core=None,
    status="idle",
    create_time=0.0,
    gpu_mem=None,
    cmd="[kworker/0:1]",
)
GPU = p.GpuSample(
    index=0,
    uuid="GPU-6f2b0c1e-8d1a-4f6a-9c3e-000000000000",
    name="NVIDIA H100 80GB HBM3",
    util=0.37,
    mem_used=20_000_000_000,
    mem_total=85_520_809_984,
    temp_c=41,
    power_w=123.5,
    power_limit_w=700.0,
    procs=[
        p.GpuProc(pid=1234, used_mem=40_000_000_000, sm=0.83, mem=0.41),
        p.GpuProc(pid=77, used_mem=None),  # a device without process samples: None shares
    ],
)
GPU_BROKEN = p.GpuSample(index=1, uuid="GPU-1", name="GPU 1", error="RuntimeError: gone")
SAMPLE = p.Sample(
    t=1_718_000_200.123,
    seq=17,
    cpu=[0.0, 0.25, 1.0, 0.333],
    mem=p.Memory(total=64 << 30, used=10 << 30, available=54 << 30, swap_total=0, swap_used=0),
    load=[1.5, 0.75, 0.25],
    gpus=[GPU, GPU_BROKEN],
    procs=p.ProcDelta(full=False, upsert=[PROC, PROC_NO_EXTRAS], gone=[5, 6]),
    net=[p.NetRate("eth0", 125_000, 4_096), p.NetRate("lo", 0, 12)],
    disk=[p.DiskRate("nvme0n1", 1 << 20, 0)],
    temps=[54, 51, -5],
    temp_names=["Package id 0", "Core 0", "Tctl"],
)
SAMPLE_MINIMAL = p.Sample(
    t=1.0,
    seq=0,
    cpu=[0.5],
    mem=p.Memory(total=1, used=1, available=0, swap_total=0, swap_used=0),
)

NOTIFICATION_EXAMPLES: dict[str, list[Any]] = {
    "hello": [HELLO],
    "sample": [SAMPLE, SAMPLE_MINIMAL],
    "history": [p.History(samples=[SAMPLE_MINIMAL, SAMPLE], last=False), p.History([], True)],
    "log": [p.Log(level=level, message=f"{level} message") for level in ("debug", "error")],
    "requests.changed": [
        p.RequestDelta(full=True, upsert=[], last=True),
        p.RequestDelta(full=False, upsert=[], gone=["r1", "r2"], last=True),
    ],
    "containers.changed": [
        p.ContainerDelta(full=True, upsert=[], last=True),
        p.ContainerDelta(
            full=False,
            upsert=[
                p.Container(
                    id="ab" * 32,
                    name="web",
                    image="nginx:1.27",
                    image_id="sha256:" + "cd" * 32,
                    state="running",
                    status="Up 5 minutes (healthy)",
                    created=1_718_000_000.0,
                    health="healthy",
                    ports=["0.0.0.0:8080->80/tcp"],
                    volumes=["webdata:/data"],
                    gpus=-1,
                    project="shop",
                    service="web",
                    orchestrator="swarm",
                    cpu=1.25,
                    mem=64 << 20,
                    pids=3,
                    started=1_718_000_010.0,
                ),
                p.Container(
                    id="ef" * 32,
                    name="job",
                    image="0123456789ab",
                    image_id="sha256:01",
                    state="exited",
                    status="Exited (0) 2 hours ago",
                    created=1.0,
                ),
            ],
            gone=["12" * 32],
            last=False,
        ),
    ],
}
REQ_INFO = p.RequestInfo(
    id="r0a1b2c3d4e", name="train", argv=["python", "train.py"], shell=False, priority=5,
    cpus=2, gpus=1, share_gpu=False, mem=8 << 30, state="running", seq=3,
    submitted=1_718_000_000.0, owner="ops@console", started=1_718_000_001.0, pid=4242,
    cores=[2, 3], gpu_uuids=["GPU-1234"], nice=0, reason="least-loaded cores [2, 3]",
)  # fmt: skip
REQ_QUEUED = p.RequestInfo(
    id="r2", name="x", argv=["x"], shell=False, priority=0, cpus=1, gpus=0,
    share_gpu=False, mem=0, state="queued", seq=4, submitted=1.0,
)  # fmt: skip
CHANGE = p.Change(target="pid 7 (python)", before="nice 0", after="nice 5")
CONTAINER_CHANGE = p.Change(target="container web (abababababab)", before="running",
                            after="exited")  # fmt: skip
PROC_DETAIL = p.ProcDetail(
    pid=7,
    ppid=1,
    name="python3",
    user="ana",
    state="S",
    create_time=1_718_000_000.25,
    argv=["python3", "train.py", "--name", "a run ü"],
    argv_cut=False,
    cwd="/home/ana/runs",
    threads=12,
    open_files=None,
    nice=5,
    affinity="0-3,8",
    cgroup="0::/system.slice/docker-" + "ab" * 32 + ".scope",
    container="ab" * 32,
    rss=1 << 30,
    gpus=[p.ProcGpu(index=0, uuid="GPU-1", used_mem=4 << 30, sm=0.5, mem=None)],
    unread=[p.Unread(field="open_files", reason="permission denied")],
)
PROC_DETAIL_UNREAD = p.ProcDetail(
    pid=1, ppid=0, name="init", user=None, state="Z", create_time=0.0, argv=[], argv_cut=True,
    cwd=None, threads=None, open_files=None, nice=None, affinity=None, cgroup=None,
    container=None, rss=None,
)  # fmt: skip

CALL_EXAMPLES: dict[str, tuple[Any, Any]] = {
    "handshake": (
        p.Handshake(protocol=PROTOCOL_VERSION, client="llmaos-tui 0.1.0"),
        p.HandshakeResult(protocol=PROTOCOL_VERSION, agent_version="0.1.0"),
    ),
    "ping": (p.Empty(), p.Pong(t=1_718_000_300.5)),
    "processes": (p.Empty(), p.ProcTable(t=2.0, procs=[PROC, PROC_NO_EXTRAS])),
    "shutdown": (p.Empty(), p.Empty()),
    "requests.submit": (p.RequestSpec(argv=["sleep", "1"], priority=3, cpus=2), REQ_INFO),
    "requests.list": (p.RequestQuery(states=["queued"]), p.RequestList([REQ_QUEUED], total=1)),
    "requests.get": (p.RequestRef(id="r2"), REQ_QUEUED),
    "requests.prio": (p.Reprioritize(id="r2", priority=-4), REQ_QUEUED),
    "requests.hold": (p.RequestRef(id="r2"), REQ_QUEUED),
    "requests.release": (p.RequestRef(id="r2"), REQ_QUEUED),
    "requests.top": (p.RequestRef(id="r2"), REQ_QUEUED),
    "requests.cancel": (p.RequestRef(id="r2"), REQ_INFO),
    "requests.withdraw": (p.RequestRef(id="r2"), REQ_QUEUED),
    "requests.log": (
        p.LogQuery(id="r2", offset=10),
        p.LogChunk(id="r2", offset=10, next_offset=16, data="hello\n", running=True),
    ),
    "procs.watch": (p.ProcWatch(on=False), p.ProcWatch(on=False)),
    "proc.detail": (p.ProcDetailQuery(pid=7, create_time=1.5), PROC_DETAIL),
    "proc.renice": (p.Renice(pid=7, create_time=1.5, nice=5), CHANGE),
    "proc.affinity": (p.SetAffinity(pid=7, create_time=1.5, cores=[0, 1]), CHANGE),
    "proc.signal": (p.SendSignal(pid=7, create_time=1.5, signal="TERM"), CHANGE),
    "containers.start": (p.ContainerRef(id="web"), CONTAINER_CHANGE),
    "containers.stop": (p.ContainerRef(id="ab" * 32, timeout=3), CONTAINER_CHANGE),
    "containers.restart": (p.ContainerRef(id="web.1", timeout=0), CONTAINER_CHANGE),
    "containers.logs": (
        p.ContainerLogQuery(id="web", tail=50),
        p.ContainerLog(id="web", data="listening on :80\n", truncated=False),
    ),
}


def test_every_message_type_has_an_example() -> None:
    """A new message type must come with a round-trip example here."""
    assert set(NOTIFICATION_EXAMPLES) == set(NOTIFICATIONS)
    assert set(CALL_EXAMPLES) == set(CALLS)
    for method, examples in NOTIFICATION_EXAMPLES.items():
        assert all(type(e) is NOTIFICATIONS[method] for e in examples)
    for method, (params, result) in CALL_EXAMPLES.items():
        assert (type(params), type(result)) == CALLS[method]


def line_of(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def plain(struct: Any) -> Any:
    """A Struct as the JSON value it is on the wire."""
    return json.loads(msgspec.json.encode(struct))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("method", "params"),
    [(m, e) for m, es in NOTIFICATION_EXAMPLES.items() for e in es],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_notification_round_trip(method: str, params: Any) -> None:
    line = p.encode_notification(method, params)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one message, one line
    msg = p.decode(line, requests=False)
    assert msg == p.Notification(method, params)


@pytest.mark.parametrize("method", sorted(CALL_EXAMPLES))
@pytest.mark.parametrize("rid", [1, 2**40, "a-string-id"])
def test_call_round_trip(method: str, rid: int | str) -> None:
    params, result = CALL_EXAMPLES[method]

    req = p.decode(p.encode_request(rid, method, params), notifications=False)
    assert req == p.Request(rid, method, params)

    resp = p.decode(p.encode_result(rid, result), requests=False)
    assert isinstance(resp, p.Response)
    assert resp.id == rid and resp.error is None
    assert p.decode_result(resp, CALLS[method][1]) == result


@pytest.mark.parametrize("rid", [7, "x", None])
def test_error_round_trip(rid: int | str | None) -> None:
    msg = p.decode(p.encode_error(rid, p.METHOD_NOT_FOUND, "unknown method 'frobnicate'"))
    assert msg == p.Response(
        rid, None, p.RpcError(p.METHOD_NOT_FOUND, "unknown method 'frobnicate'")
    )
    with pytest.raises(ProtocolError, match="no result"):
        p.decode_result(msg, p.Pong)


def test_error_message_is_capped_to_what_decoding_accepts() -> None:
    msg = p.decode(p.encode_error(1, p.INTERNAL_ERROR, "x" * 100_000))
    assert isinstance(msg, p.Response) and msg.error is not None
    assert msg.error.code == p.INTERNAL_ERROR
    assert 0 < len(msg.error.message) <= 4096


@pytest.mark.parametrize("last", [True, False])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_history_from_encoded_samples(n: int, last: bool) -> None:
    samples = [p.Sample(t=float(i), seq=i, cpu=[i / 10], mem=SAMPLE_MINIMAL.mem) for i in range(n)]
    line = p.encode_history([p.encode(s) for s in samples], last=last)
    assert p.decode(line) == p.Notification("history", p.History(samples=samples, last=last))


def test_a_process_detail_with_nothing_readable_round_trips() -> None:
    """Every field the OS may keep from another user is None, and says so on the wire."""
    resp = p.decode(p.encode_result(4, PROC_DETAIL_UNREAD), requests=False)
    assert isinstance(resp, p.Response)
    assert p.decode_result(resp, p.ProcDetail) == PROC_DETAIL_UNREAD
    wire = json.loads(p.encode(PROC_DETAIL))
    assert wire["unread"] == [["open_files", "permission denied"]]
    assert wire["argv"][-1] == "a run ü" and wire["open_files"] is None


def test_procs_watch_and_detail_are_reads() -> None:
    """Allowed on a read-only agent and not audited: they change nothing on the host."""
    for method in ("procs.watch", "proc.detail"):
        spec = p.CALL_SPECS[method]
        assert spec.read_only_ok and not spec.changes and spec.needs is None


def test_sample_is_compact() -> None:
    """Defaults stay off the wire, and processes travel as arrays, not objects."""
    assert set(json.loads(p.encode(SAMPLE_MINIMAL))) == {"t", "seq", "cpu", "mem"}
    row = json.loads(p.encode(SAMPLE))["procs"]["upsert"][0]
    assert isinstance(row, list) and row[0] == PROC.pid and len(row) == len(PROC.__struct_fields__)
    wire = json.loads(p.encode(SAMPLE))
    # Network, disk and temperatures as arrays of arrays: [name, rx, tx], [label, celsius].
    assert wire["net"] == [["eth0", 125_000, 4_096], ["lo", 0, 12]]
    assert wire["disk"] == [["nvme0n1", 1 << 20, 0]]
    assert (wire["temps"], wire["temp_names"]) == ([54, 51, -5], ["Package id 0", "Core 0", "Tctl"])
    assert wire["gpus"][0]["procs"] == [[1234, 40_000_000_000, 0.83, 0.41], [77, None, None, None]]


def test_a_gpu_process_of_two_fields_reads_with_unknown_shares() -> None:
    """[pid, used_mem] (no shares) is a GpuProc whose shares are unknown."""
    params = plain(SAMPLE)
    params["gpus"][0]["procs"] = [[5, 10]]
    got = p.decode(line_of({"jsonrpc": "2.0", "method": "sample", "params": params}))
    assert isinstance(got, p.Notification)
    assert got.params.gpus[0].procs == [p.GpuProc(5, 10, None, None)]


# hypothesis: arbitrary in-bounds processes and samples round-trip

text_st = st.text(max_size=40)
proc_st = st.builds(
    p.Proc,
    pid=st.integers(0, 2**32),
    ppid=st.integers(0, 2**32),
    name=text_st,
    user=text_st,
    cpu=st.floats(min_value=0.0, max_value=1e5),
    rss=st.integers(0, 2**63),
    nice=st.none() | st.integers(-20, 19),
    affinity=st.none() | st.just("0-3,8"),
    core=st.none() | st.integers(0, 4095),
    status=text_st,
    create_time=st.floats(min_value=0, max_value=4e9),
    gpu_mem=st.none() | st.integers(0, 2**50),
    cmd=st.text(max_size=200),
)
sample_st = st.builds(
    p.Sample,
    t=st.floats(min_value=0, max_value=4e9),
    seq=st.integers(0, 2**62),
    cpu=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=64),
    mem=st.builds(p.Memory, *[st.integers(0, 2**50) for _ in range(5)]),
    load=st.none() | st.lists(st.floats(0, 1000), min_size=3, max_size=3),
    net=st.lists(
        st.builds(p.NetRate, text_st, st.integers(0, 2**50), st.integers(0, 2**50)), max_size=4
    ),
    disk=st.lists(
        st.builds(p.DiskRate, text_st, st.integers(0, 2**50), st.integers(0, 2**50)), max_size=4
    ),
    temps=st.lists(st.integers(-273, 1000), max_size=4),
    temp_names=st.lists(text_st, max_size=4),
    gpus=st.lists(
        st.builds(
            p.GpuSample,
            index=st.integers(0, p.MAX_GPUS),
            uuid=text_st,
            name=text_st,
            procs=st.lists(
                st.builds(
                    p.GpuProc,
                    pid=st.integers(0, 2**32),
                    used_mem=st.none() | st.integers(0, 2**50),
                    sm=st.none() | st.floats(0.0, 1.0),
                    mem=st.none() | st.floats(0.0, 1.0),
                ),
                max_size=3,
            ),
        ),
        max_size=2,
    ),
    procs=st.none()
    | st.builds(
        p.ProcDelta,
        full=st.booleans(),
        upsert=st.lists(proc_st, max_size=5),
        gone=st.lists(st.integers(0, 2**32), max_size=5),
    ),
)


@settings(max_examples=60, deadline=None)
@given(sample_st)
def test_any_sample_round_trips(sample: p.Sample) -> None:
    assert p.decode(p.encode_notification("sample", sample)) == p.Notification("sample", sample)


# ------------------------------------------------------------------ rejection


def refused(line: bytes, **kw: bool) -> str:
    """The ProtocolError's message for a refused line; it must be a readable sentence."""
    with pytest.raises(ProtocolError) as info:
        p.decode(line, **kw)
    text = str(info.value)
    assert text and "\n" not in text and "Traceback" not in text
    assert len(text) < 1000
    return text


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json at all",
        b'{"jsonrpc": "2.0", "method": "ping", "id": 1',
        b'{"jsonrpc": "2.0", "method": "ping", "id": 1}}',
        b"\xff\xfe{}",
        b"[1, 2, 3]",
        b"42",
        b"null",
    ],
)
def test_malformed_json_is_refused(line: bytes) -> None:
    text = refused(line)
    assert "JSON" in text


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc": "2.0", "method": "\x80", "id": 1}',
        b'{"jsonrpc": "2.0", "method": "log", "params": {"level": "info", "message": "\xc3("}}',
        b'{"jsonrpc": "2.0", "id": 1, "result": {"t": 1.0}, "error": null, "x\xff": 1}',
    ],
)
def test_invalid_utf8_inside_a_string_is_refused(line: bytes) -> None:
    assert "utf-8" in refused(line).lower()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"method": "ping", "id": 1}', "jsonrpc"),
        (b'{"jsonrpc": "1.0", "method": "ping", "id": 1}', "jsonrpc"),
        (b'{"jsonrpc": 2.0, "method": "ping", "id": 1}', "jsonrpc"),
        (b"{}", "jsonrpc"),
        (b'{"jsonrpc": "2.0", "method": 7, "id": 1}', "method"),
        (b'{"jsonrpc": "2.0", "method": "ping", "id": true}', "id"),
        (b'{"jsonrpc": "2.0", "method": "ping", "id": [1]}', "id"),
    ],
)
def test_non_json_rpc_is_refused(line: bytes, says: str) -> None:
    assert says in refused(line)


def test_unknown_envelope_field_is_refused() -> None:
    line = line_of({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}, "priority": 9})
    assert "priority" in refused(line)


def test_unknown_field_inside_hello_host_is_refused() -> None:
    params = plain(HELLO)
    params["host"]["kernel_taint"] = 0
    text = refused(line_of({"jsonrpc": "2.0", "method": "hello", "params": params}))
    assert "kernel_taint" in text and "host" in text


def test_unknown_field_inside_a_gpu_is_refused() -> None:
    params = plain(SAMPLE)
    params["gpus"][0]["fan"] = 30
    text = refused(line_of({"jsonrpc": "2.0", "method": "sample", "params": params}))
    assert "fan" in text and "gpus" in text


@pytest.mark.parametrize("delta", [-1, +1])
def test_proc_array_of_the_wrong_length_is_refused(delta: int) -> None:
    params = plain(SAMPLE)
    row = params["procs"]["upsert"][0]
    params["procs"]["upsert"][0] = row[:-1] if delta < 0 else [*row, "extra"]
    text = refused(line_of({"jsonrpc": "2.0", "method": "sample", "params": params}))
    # The message says what a process row must look like (msgspec names the path
    # only for a short row).
    assert "sample" in text and f"length {len(p.Proc.__struct_fields__)}" in text


def test_unknown_params_field_of_a_call_is_refused() -> None:
    line = line_of({"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"verbose": True}})
    text = refused(line, notifications=False)
    assert "ping" in text and "verbose" in text


def test_oversized_line_is_refused_before_parsing() -> None:
    # A valid message padded with whitespace: only its size is wrong.
    good = p.encode_notification("log", p.Log(level="info", message="hi")).rstrip(b"\n")
    at_limit = good + b" " * (MAX_LINE_BYTES - len(good))
    assert p.decode(at_limit) == p.Notification("log", p.Log("info", "hi"))
    text = refused(at_limit + b" ")
    assert str(MAX_LINE_BYTES) in text and str(MAX_LINE_BYTES + 1) in text


def sample_with(**changes: Any) -> bytes:
    params = plain(SAMPLE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = params
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return line_of({"jsonrpc": "2.0", "method": "sample", "params": params})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"cpu__1": 1.5}, "cpu"),
        ({"cpu__0": -0.01}, "cpu"),
        ({"cpu": [0.5] * (p.MAX_CORES + 1)}, "cpu"),
        ({"procs__upsert__0__5": -1}, "upsert"),  # rss
        ({"procs__upsert__0__4": -3.0}, "upsert"),  # cpu percent
        ({"procs__upsert__0__0": -7}, "upsert"),  # pid
        ({"procs__upsert__0__2": "n" * 257}, "upsert"),  # name
        ({"mem__1": -1}, "mem"),
        ({"gpus__0__util": 2.0}, "util"),
        ({"gpus__0__index": p.MAX_GPUS + 1}, "index"),
        ({"load": [1.0, 2.0]}, "load"),
        ({"seq": -1}, "seq"),
        ({"t": "yesterday"}, "t"),
        ({"net__0__0": "n" * 65}, "net"),  # interface name past IoName
        ({"net__0__1": -1}, "net"),  # a negative rate
        ({"net__0": ["eth0", 1]}, "net"),  # a row missing its tx
        ({"net": [["e", 0, 0]] * (p.MAX_IO_ROWS + 1)}, "net"),
        ({"disk__0__2": 1.5}, "disk"),  # bytes per second are whole
        ({"disk__0": ["sda", 1, 2, 3]}, "length 3"),  # msgspec names no path here
        ({"temps__1": 1001}, "temps"),
        ({"temps__1": -274}, "temps"),
        ({"temps__1": 45.5}, "temps"),  # whole degrees
        ({"temps": [40] * (p.MAX_IO_ROWS + 1)}, "temps"),
        ({"temp_names__0": "t" * 65}, "temp_names"),
        ({"gpus__0__procs__0__2": 1.01}, "procs"),  # an SM share over 1
        ({"gpus__0__procs__0__3": -0.1}, "procs"),
    ],
)
def test_values_out_of_bounds_are_refused(change: dict[str, Any], says: str) -> None:
    text = refused(sample_with(**change))
    assert "sample" in text and says in text


def test_negative_rss_in_a_process_table_result_is_refused() -> None:
    row = plain(PROC)
    row[5] = -1
    resp = p.decode(line_of({"jsonrpc": "2.0", "id": 1, "result": {"t": 1.0, "procs": [row]}}))
    assert isinstance(resp, p.Response)
    with pytest.raises(ProtocolError, match="procs"):
        p.decode_result(resp, p.ProcTable)


def hello_line(**changes: Any) -> bytes:
    params = plain(HELLO)
    params.update(changes)
    return line_of({"jsonrpc": "2.0", "method": "hello", "params": params})


def mentions(text: str, number: int) -> bool:
    return re.search(rf"(?<![\d.]){number}(?![\d.])", text) is not None


@pytest.mark.parametrize("theirs", [0, PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 41])
def test_hello_of_another_version_names_both_versions(theirs: int) -> None:
    with pytest.raises(VersionMismatch) as info:
        p.decode(hello_line(protocol=theirs))
    text = str(info.value)
    assert mentions(text, theirs) and mentions(text, PROTOCOL_VERSION)
    assert isinstance(info.value, ProtocolError)  # callers that catch ProtocolError see it


def test_hello_of_another_version_with_other_shapes_is_a_version_mismatch() -> None:
    """A newer agent's hello has new fields; the user must hear "versions", not "field"."""
    params = {"protocol": PROTOCOL_VERSION + 1, "agent": {"version": "9.0"}, "gpu_topology": []}
    line = line_of({"jsonrpc": "2.0", "method": "hello", "params": params})
    with pytest.raises(VersionMismatch) as info:
        p.decode(line)
    assert mentions(str(info.value), PROTOCOL_VERSION + 1)
    assert mentions(str(info.value), PROTOCOL_VERSION)


def test_hello_of_this_version_with_a_bad_field_is_not_a_version_mismatch() -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(hello_line(pid=-1))
    assert not isinstance(info.value, VersionMismatch)
    assert "pid" in str(info.value)


def test_requests_are_refused_where_only_notifications_are_accepted() -> None:
    line = p.encode_request(1, "ping", p.Empty())
    assert "request" in refused(line, requests=False)
    # ... and accepted where requests are.
    assert p.decode(line, notifications=False) == p.Request(1, "ping", p.Empty())


def test_notifications_are_refused_where_only_requests_are_accepted() -> None:
    line = p.encode_notification("log", p.Log(level="info", message="x"))
    assert "notification" in refused(line, notifications=False)
    assert p.decode(line, requests=False) == p.Notification("log", p.Log("info", "x"))


def test_unknown_notification_is_refused() -> None:
    assert "reboot" in refused(line_of({"jsonrpc": "2.0", "method": "reboot", "params": {}}))


def test_unknown_call_decodes_so_that_it_can_be_answered() -> None:
    """An unknown method must reach the agent with its id, to be answered METHOD_NOT_FOUND."""
    msg = p.decode(line_of({"jsonrpc": "2.0", "id": 9, "method": "frobnicate", "params": [1]}))
    assert isinstance(msg, p.Request) and msg.id == 9 and msg.method == "frobnicate"


@pytest.mark.parametrize(
    ("obj", "says"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "result": {}}, "result"),
        ({"jsonrpc": "2.0", "method": "log", "error": {"code": 1, "message": "x"}}, "error"),
        ({"jsonrpc": "2.0", "id": 1}, "result"),
        (
            {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}},
            "result",
        ),
        ({"jsonrpc": "2.0", "id": 1, "result": {}, "params": {}}, "params"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "x", "trace": ""}}, "trace"),
    ],
)
def test_inconsistent_envelopes_are_refused(obj: dict[str, Any], says: str) -> None:
    assert says in refused(line_of(obj))


def test_result_of_the_wrong_shape_is_refused() -> None:
    resp = p.decode(p.encode_result(1, p.Pong(t=1.0)))
    assert isinstance(resp, p.Response)
    with pytest.raises(ProtocolError, match="result"):
        p.decode_result(resp, p.HandshakeResult)


# fuzz: whatever arrives, decode answers with a message or a ProtocolError

json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)
VALID_LINES = [
    p.encode_notification("sample", SAMPLE),
    p.encode_notification("hello", HELLO),
    p.encode_request(5, "processes", p.Empty()),
    p.encode_result(5, CALL_EXAMPLES["processes"][1]),
    p.encode_error(None, p.PARSE_ERROR, "bad"),
]


def decodes_or_refuses(line: bytes) -> None:
    try:
        p.decode(line)
    except ProtocolError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(line: bytes) -> None:
    decodes_or_refuses(line)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["hello", "sample", "history", "log", "ping", "handshake", "zzz", None]),
    st.none() | st.integers(-3, 3) | st.text(max_size=3),
    json_st,
)
def test_arbitrary_json_rpc_never_crashes(method: str | None, rid: Any, params: Any) -> None:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "params": params}
    if method is not None:
        obj["method"] = method
    if rid is not None:
        obj["id"] = rid
    decodes_or_refuses(line_of(obj))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID_LINES), st.data())
def test_damaged_lines_never_crash(line: bytes, data: st.DataObject) -> None:
    damaged = bytearray(line)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(damaged) - 1))
        damaged[i] = data.draw(st.integers(0, 255))
    decodes_or_refuses(bytes(damaged))


def test_invalid_utf8_inside_a_result_is_refused_when_it_is_read(codec: Any) -> None:
    line = b'{"jsonrpc": "2.0", "id": 1, "result": {"agent_version": "\xff"}}'
    if codec.name == "lite":
        # The stdlib codec reads the whole line as UTF-8 first: refused already.
        assert "utf-8" in refused(line).lower()
        return
    resp = p.decode(line)
    assert isinstance(resp, p.Response)
    with pytest.raises(ProtocolError, match="result"):
        p.decode_result(resp, p.HandshakeResult)
