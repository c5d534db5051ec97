"""The wire as a bare host's agent speaks it (no msgspec): the protocol built on
``llmaos_agent.wirelite``'s stand-ins writes the bytes msgspec writes, reads what msgspec
reads into equal messages, and refuses the same hostile lines.

``tests/test_protocol.py`` runs its whole suite under both codecs on msgspec's classes; here
the second copy of the protocol is the one a bare host has (stand-in Structs and the stdlib
codec together), loaded next to msgspec's in this process so the two can be compared.
"""

from __future__ import annotations

import json
import subprocess
import types
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmaos_agent import protocol as p
from llmaos_agent import wirelite
from tests.bare import agent_env, bare_python
from tests.test_protocol import CALL_EXAMPLES, NOTIFICATION_EXAMPLES, sample_st

lite = wirelite.load_lite_protocol()


def to(mod: types.ModuleType, obj: Any) -> Any:
    """``obj`` rebuilt from ``mod``'s message classes (the same names in both copies)."""
    if isinstance(obj, (msgspec.Struct, wirelite.Struct)):
        cls = getattr(mod, type(obj).__name__)
        return cls(**{f: to(mod, getattr(obj, f)) for f in obj.__struct_fields__})
    if isinstance(obj, list):
        return [to(mod, x) for x in obj]
    if isinstance(obj, (msgspec.Raw, wirelite.Raw)):
        return mod.Raw(bytes(obj))
    return obj


def test_the_lite_copy_is_built_on_the_stand_ins() -> None:
    assert p.WIRE == "msgspec" and lite.WIRE == "lite"
    assert issubclass(lite.Sample, wirelite.Struct) and issubclass(p.Sample, msgspec.Struct)
    assert lite.CALL_SPECS.keys() == p.CALL_SPECS.keys()
    for method, spec in lite.CALL_SPECS.items():
        theirs = p.CALL_SPECS[method]
        assert (spec.params.__name__, spec.changes, spec.read_only_ok, spec.needs) == (
            theirs.params.__name__, theirs.changes, theirs.read_only_ok, theirs.needs,
        )  # fmt: skip


EVERY_MESSAGE = [
    *((m, e) for m, es in NOTIFICATION_EXAMPLES.items() for e in es),
    *((m, params) for m, (params, _) in CALL_EXAMPLES.items()),
    *((m, result) for m, (_, result) in CALL_EXAMPLES.items()),
]


@pytest.mark.parametrize(("method", "msg"), EVERY_MESSAGE, ids=lambda v: type(v).__name__)
def test_lite_encoding_is_byte_for_byte_msgspecs(method: str, msg: Any) -> None:
    assert lite.encode(to(lite, msg)) == p.encode(msg)
    assert lite.encode_notification(method, to(lite, msg)) == p.encode_notification(method, msg)
    assert lite.encode_request(7, method, to(lite, msg)) == p.encode_request(7, method, msg)
    assert lite.encode_result("x", to(lite, msg)) == p.encode_result("x", msg)


@pytest.mark.parametrize(
    ("method", "params"),
    [(m, e) for m, es in NOTIFICATION_EXAMPLES.items() for e in es],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_lite_decodes_what_msgspec_encodes_and_back(method: str, params: Any) -> None:
    got = lite.decode(p.encode_notification(method, params))
    assert to(p, got) == p.Notification(method, params)
    # ... and msgspec decodes what lite encodes.
    assert p.decode(lite.encode_notification(method, got.params)) == p.Notification(method, params)


@pytest.mark.parametrize("method", sorted(CALL_EXAMPLES))
def test_calls_round_trip_across_the_two(method: str) -> None:
    params, result = CALL_EXAMPLES[method]
    req = lite.decode(p.encode_request(3, method, params), notifications=False)
    assert to(p, req) == p.Request(3, method, params)
    resp = p.decode(lite.encode_result(3, to(lite, result)))
    assert isinstance(resp, p.Response)
    assert p.decode_result(resp, p.CALLS[method][1]) == result


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_spelled_as_msgspec_spells_it(x: float) -> None:
    assert wirelite.float_json(x).encode() == msgspec.json.encode(x)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_is_escaped_as_msgspec_escapes_it(text: str) -> None:
    assert wirelite.LiteCodec().encode(text) == msgspec.json.encode(text)


@settings(max_examples=60, deadline=None)
@given(sample_st)
def test_any_sample_crosses_both_ways(sample: p.Sample) -> None:
    ours = lite.encode_notification("sample", to(lite, sample))
    assert ours == p.encode_notification("sample", sample)
    assert p.decode(ours) == p.Notification("sample", sample)
    assert to(p, lite.decode(ours)) == p.Notification("sample", sample)


def test_a_real_sample_of_this_host_is_the_same_bytes_both_ways(tmp_path: Any) -> None:
    """A sample as the agent's collectors make it here, with the network and disk rows
    that a loopback send and a written file give, temperatures (the hwmon this host has:
    maybe none) and the NVML stand-in's GPU processes with their SM and memory shares."""
    import os
    import socket

    from llmaos_agent.collect.sampler import Sampler
    from tests.nvml_standin import NvmlStandIn, two_gpus

    devices = two_gpus({0: (os.getpid(), 10**9), 1: (4242, None)})
    devices[0].proc_util = [(os.getpid(), 37, 5, 0.0)]
    sampler = Sampler(nvml=NvmlStandIn(devices), io=True)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
            rx.bind(("127.0.0.1", 0))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.sendto(b"x" * 60_000, rx.getsockname())
        path = tmp_path / "f"
        with open(path, "wb") as f:
            f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        sample = sampler.sample()
    finally:
        sampler.close()
    assert any(r.name == "lo" for r in sample.net)
    assert sample.gpus[0].procs[0].sm == 0.37 and sample.gpus[1].procs[0].sm == 0.0
    ours = lite.encode_notification("sample", to(lite, sample))
    assert ours == p.encode_notification("sample", sample)
    assert to(p, lite.decode(ours)) == p.Notification("sample", sample)


def sample_line(**fields: Any) -> bytes:
    params = {"t": 1.0, "seq": 1, "cpu": [0.5], "mem": [1, 1, 0, 0, 0], **fields}
    return json.dumps({"jsonrpc": "2.0", "method": "sample", "params": params}).encode()


@pytest.mark.parametrize("mod", [p, lite], ids=["msgspec", "lite"])
@pytest.mark.parametrize(
    "line",
    [
        sample_line(net=[["n" * 65, 0, 0]]),
        sample_line(net=[["eth0", -1, 0]]),
        sample_line(net=[["eth0", 1]]),
        sample_line(net=[["eth0", 1, 2, 3]]),
        sample_line(net=[["eth0", 1.5, 2]]),
        sample_line(net=[["eth0", True, 2]]),
        sample_line(net=[["e", 0, 0]] * (p.MAX_IO_ROWS + 1)),
        sample_line(disk=[["sda", 0, -5]]),
        sample_line(disk=[{"name": "sda", "read": 0, "write": 0}]),
        sample_line(temps=[1001]),
        sample_line(temps=[45.5]),
        sample_line(temps=[["Core 0", 45]]),
        sample_line(temp_names=["t" * 65]),
        sample_line(temp_names=[45]),
        sample_line(gpus=[{"index": 0, "uuid": "u", "name": "n", "procs": [[1, 2, 1.5, 0]]}]),
        sample_line(gpus=[{"index": 0, "uuid": "u", "name": "n", "procs": [[1, 2, 0.5, 0, 9]]}]),
    ],
    ids=lambda v: v.decode()[60:110] if isinstance(v, bytes) else None,
)
def test_both_refuse_the_same_bad_io_rows(mod: types.ModuleType, line: bytes) -> None:
    with pytest.raises(mod.ProtocolError):
        mod.decode(line)


def test_both_read_a_gpu_process_without_shares_alike() -> None:
    line = sample_line(gpus=[{"index": 0, "uuid": "u", "name": "n", "procs": [[1, 2]]}])
    ours, theirs = lite.decode(line), p.decode(line)
    assert to(p, ours) == theirs
    assert isinstance(theirs, p.Notification)
    assert theirs.params.gpus[0].procs == [p.GpuProc(1, 2, None, None)]


# ------------------------------------------------------------------ refusals


def call(method: str, params: Any, rid: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()


def raw_call(params: str) -> bytes:
    return b'{"jsonrpc":"2.0","id":1,"method":"requests.submit","params":' + params.encode() + b"}"


HOSTILE = [
    (call("requests.submit", {"argv": ["x"], "bogus": 1}), "bogus"),  # unknown field
    (call("requests.submit", {"argv": ["x"], "priority": "high"}), "priority"),  # wrong type
    (call("requests.submit", {"argv": ["x"], "priority": True}), "priority"),  # bool is no int
    (call("requests.submit", {"argv": ["x"], "priority": 1.0}), "priority"),  # float is no int
    (call("requests.submit", {"argv": ["x"], "priority": 1001}), "priority"),  # out of range
    (call("requests.submit", {"argv": ["x" * 4097]}), "argv"),  # oversized string
    (call("requests.submit", {"argv": ["x"] * (p.MAX_ARGV + 1)}), "argv"),  # oversized list
    (call("requests.submit", {"argv": []}), "argv"),  # under the minimum
    (call("requests.submit", {"cpus": 1}), "argv"),  # missing field
    (raw_call('{"argv":["x"],"mem":NaN}'), "JSON"),
    (raw_call('{"argv":["x"],"mem":Infinity}'), "JSON"),
    (raw_call('{"argv":["x"],"mem":-Infinity}'), "JSON"),
    (call("proc.renice", {"pid": 1, "create_time": "x", "nice": 0}), "create_time"),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"proc.renice","params":'
        b'{"pid":1,"create_time":1e400,"nice":0}}',
        "range",
    ),
    (raw_call('{"argv":["\\ud800"]}'), "surrogate|truncated"),  # a lone surrogate
    (raw_call('{"argv":["x"],"mem":' + "9" * 5000 + "}"), ""),  # an endless integer
    (call("requests.get", {"id": "../../etc/passwd"}), "id"),  # bad id: not SAFE_ID
    (call("requests.get", {"id": "a" * 65}), "id"),
    (call("requests.get", {"id": ""}), "id"),
    (call("requests.get", {"id": "r1\n"}), "id"),
    (call("requests.list", {"states": ["sleeping"]}), "states"),  # bad tag
    (call("containers.stop", {"id": "-rm"}), "id"),
    (call("procs.watch", {}), "on"),  # missing field
    (call("procs.watch", {"on": 1}), "on"),  # 1 is no bool
    (call("procs.watch", {"on": True, "pids": [1]}), "pids"),
    (call("proc.detail", {"pid": -1}), "pid"),
    (call("proc.detail", {"pid": 2**33}), "pid"),
    (call("proc.detail", {"pid": 1, "create_time": "now"}), "create_time"),
    (call("ping", {}, rid=True), "id"),
    (call("ping", {}, rid="x" * 65), "id"),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "",
    ),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{},"extra":1}', "extra"),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}\xff', ""),
]


@pytest.mark.parametrize("mod", [p, lite], ids=["msgspec", "lite"])
@pytest.mark.parametrize(("line", "says"), HOSTILE)
def test_both_refuse_the_same_hostile_lines(mod: types.ModuleType, line: bytes, says: str) -> None:
    with pytest.raises(mod.ProtocolError) as info:
        mod.decode(line, notifications=False)
    text = str(info.value)
    assert text and "\n" not in text and len(text) < 1000
    if says:
        assert any(word in text for word in says.split("|")), text


def detail_result(**changes: Any) -> bytes:
    """A ``proc.detail`` answer as JSON, with ``changes`` to its fields."""
    from tests.test_protocol import PROC_DETAIL

    result = {**json.loads(p.encode(PROC_DETAIL)), **changes}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()


@pytest.mark.parametrize("mod", [p, lite], ids=["msgspec", "lite"])
@pytest.mark.parametrize(
    "line",
    [
        detail_result(argv=["x" * (p.MAX_CMDLINE + 1)]),
        detail_result(argv=["x"] * (p.MAX_CMDLINE + 1)),
        detail_result(cwd="/" * 4097),
        detail_result(threads=-1),
        detail_result(open_files=1.5),
        detail_result(unread=[["cwd", "no"]] * 33),
        detail_result(unread=[{"field": "cwd", "reason": "no"}]),  # arrays, not objects
        detail_result(gpus=[{"index": 0, "uuid": "u", "used_mem": 1, "sm": 1.5}]),
        detail_result(container="c" * 257),
        detail_result(extra=1),
    ],
    ids=lambda v: v.decode()[-60:] if isinstance(v, bytes) else None,
)
def test_both_refuse_the_same_bad_process_details(mod: types.ModuleType, line: bytes) -> None:
    resp = mod.decode(line, requests=False)
    with pytest.raises(mod.ProtocolError):
        mod.decode_result(resp, mod.ProcDetail)


def test_a_detail_with_nothing_readable_is_the_same_bytes_both_ways() -> None:
    from tests.test_protocol import PROC_DETAIL_UNREAD

    ours = lite.encode_result(1, to(lite, PROC_DETAIL_UNREAD))
    assert ours == p.encode_result(1, PROC_DETAIL_UNREAD)
    resp = lite.decode(ours, requests=False)
    assert to(p, lite.decode_result(resp, lite.ProcDetail)) == PROC_DETAIL_UNREAD


# ------------------------------------------------------------- the stand-ins


def test_stand_in_structs_behave_as_msgspecs() -> None:
    ref = lite.RequestRef(id="r1")
    assert ref == lite.RequestRef("r1") and ref != lite.ProcTarget(pid=1, create_time=0.0)
    assert hash(ref) == hash(lite.RequestRef(id="r1"))
    assert repr(ref) == repr(p.RequestRef(id="r1"))
    with pytest.raises(AttributeError):
        ref.id = "r2"
    with pytest.raises(TypeError, match="id"):
        lite.RequestRef()
    with pytest.raises(TypeError, match="bogus"):
        lite.RequestRef(id="r1", bogus=1)
    moved = lite.replace(lite.RequestSpec(argv=["x"]), priority=5)
    assert (moved.argv, moved.priority, moved.gpus) == (["x"], 5, 0)
    a, b = lite.RequestSpec(argv=["x"]), lite.RequestSpec(argv=["y"])
    assert a.__struct_fields__ == p.RequestSpec.__struct_fields__
    d1, d2 = lite.RequestDelta(full=True, upsert=[]), lite.RequestDelta(full=True, upsert=[])
    assert d1.gone == [] and d1.gone is not d2.gone  # a factory's default, one per instance
    assert a != b
    with pytest.raises(TypeError):
        hash(lite._Envelope(jsonrpc="2.0"))  # not frozen: unhashable, as in msgspec


def test_a_bare_interpreter_speaks_the_lite_wire() -> None:
    """The system python3 with nothing installed decodes strictly and answers in kind."""
    script = (
        "import sys, llmaos_agent.protocol as p\n"
        "assert p.WIRE == 'lite' and 'msgspec' not in sys.modules, p.WIRE\n"
        "m = p.decode(sys.stdin.buffer.readline(), notifications=False)\n"
        "assert m.params.argv == ['sleep', '1'] and m.params.priority == 3, m\n"
        "try:\n"
        '    p.decode(b\'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":1}}\')\n'
        "except p.BadParams as exc:\n"
        "    print('refused:', exc)\n"
        "sys.stdout.buffer.write(p.encode_result(m.id, p.Pong(t=1.5)))\n"
    )
    line = p.encode_request(9, "requests.submit", p.RequestSpec(argv=["sleep", "1"], priority=3))
    done = subprocess.run(
        [str(bare_python()), "-c", script],
        input=line,
        capture_output=True,
        env=agent_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    refusal, answer = done.stdout.split(b"\n", 1)
    assert b"refused:" in refusal and b"x" in refusal
    assert answer == p.encode_result(9, p.Pong(t=1.5))
