"""The Prometheus exporter against the real thing: Debian's ``prometheus`` scrapes it every
second and the tests read what it stored through its HTTP API.

The fleet is real: this machine's agent (a daemon in this process, seeing two NVML
stand-in GPUs, reached through ``llmaos-agent attach`` as the console's local link does),
the same agent again under a hostile host name, a host over SSH whose port refuses (down),
and, where the testbed can be built, a network-namespace host with its own OpenSSH sshd
and dockerd, reached over SSH with the agent pushed. The exporter serves on a loopback
port from its own thread while the watchers run on their event loop, as in the console.

Also: addresses (loopback only unless told; bad ones refused in words), hostile labels
through prometheus_client's own parser, a scrape that cannot reach a stuck loop, the
``metrics`` command served and stopped with Ctrl-C, ``snapshot --format prometheus``
checked by ``promtool check metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from llmaos_agent.paths import AgentPaths
from llmaos_agent.protocol import (
    Capabilities,
    GpuSample,
    Hello,
    HostFacts,
    Memory,
    NetRate,
    RequestInfo,
    RequestRef,
    RequestSpec,
    Sample,
)
from llmaos_agent.safetext import clean
from llmaos_tui.exporter import (
    LABEL_MAX,
    FleetCollector,
    ListenError,
    MetricsServer,
    label,
    parse_listen,
    public_warning,
    scrape_text,
)
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.oneshot import connected
from llmaos_tui.fleet.ssh import SshLink, SshOptions
from llmaos_tui.fleet.state import FleetState, HostStatus
from llmaos_tui.fleet.watching import Watching
from tests.conftest import need, stop_daemons
from tests.nvml_standin import two_gpus
from tests.prometheus_server import PrometheusServer, free_port, prometheus_available

T = TypeVar("T")
CPUS = psutil.cpu_count() or 1
ROOT = Path(__file__).resolve().parent.parent
HOSTILE = 'evil"} 1\nllmaos_host_up{host="forged"} 1\n\x1b]0;pwned\x07\u202e' + "x" * 300
"""A host name that would inject a series, retitle a terminal and reverse text, were it
written raw; and longer than any label should be."""
HOSTILE_UUID = 'GPU-"}\n\x1b[2J\u200b' + "u" * 150
"""A GPU UUID as a broken or hostile driver might report it (within the wire's 256)."""
GPU_UTIL = (37, 100)
"""The stand-in's two GPUs' utilisation, percent (two_gpus)."""


# ------------------------------------------------------------------- addresses (no servers)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464),
        ("9464", "127.0.0.1", 9464),
        ("[::1]:0", "::1", 0),
        ("localhost:9100", "localhost", 9100),
        (" 127.0.0.2:1 ", "127.0.0.2", 1),
    ],
)
def test_loopback_addresses_are_taken(text: str, host: str, port: int) -> None:
    got = parse_listen(text)
    assert (got.host, got.port, got.loopback) == (host, port, True)
    assert public_warning(got) is None


def _an_address_of_this_machine() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    return None


@pytest.mark.parametrize("text", ["0.0.0.0:9464", "[::]:9464", "10.1.2.3:9464", "own"])
def test_a_non_loopback_address_needs_the_flag_and_is_warned_of(text: str) -> None:
    if text == "own":
        own = _an_address_of_this_machine()
        if own is None:
            pytest.skip("this machine has no non-loopback IPv4 address")
        text = f"{own}:9464"
    with pytest.raises(ListenError, match=r"not a loopback address.*--metrics-public"):
        parse_listen(text)
    with pytest.raises(ListenError, match="Add --public"):
        parse_listen(text, flag="--public")
    got = parse_listen(text, public=True)
    assert not got.loopback
    warning = public_warning(got)
    assert warning is not None and "not a loopback address" in warning and str(got) in warning


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no address"),
        ("127.0.0.1", "not HOST:PORT"),
        (":9464", "not HOST:PORT"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:65536", "port must be a number"),
        ("127.0.0.1:-1", "port must be a number"),
        ("::1:9464", "in brackets"),
        ("[::1]", "needs a port"),
        ("no-such-host.invalid:9464", "cannot resolve"),
        ("\x1b[2J:80", "cannot resolve"),
    ],
)
def test_a_bad_address_is_refused_in_words(text: str, why: str) -> None:
    with pytest.raises(ListenError, match=why) as info:
        parse_listen(text, public=True)
    assert clean(str(info.value)) == str(info.value)  # the address is echoed back safely


def test_a_taken_port_is_an_oserror_at_start() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = parse_listen(f"127.0.0.1:{s.getsockname()[1]}")
        with pytest.raises(OSError):
            MetricsServer(FleetState(), taken).start()


# ------------------------------------------------------------------- labels (no servers)


def _hello(hostname: str, pid: int = 4242) -> Hello:
    return Hello(
        protocol=6,
        agent_version="0.1.0",
        pid=pid,
        host=HostFacts(
            hostname=hostname,
            os="Linux",
            os_release="6.1",
            arch="x86_64",
            python="3.11",
            user="ops",
            cores=4,
            physical_cores=2,
            mem_total=1 << 34,
            boot_time=0.0,
        ),
        caps=Capabilities(
            affinity=True,
            cpu_num=True,
            nvml=True,
            nvml_reason=None,
            docker=False,
            docker_reason="none",
            root=False,
            read_only=False,
        ),
        interval=1.0,
        proc_interval=2.0,
    )


def _hostile_fleet() -> FleetState:
    fleet = FleetState()
    h = fleet.add(HOSTILE)
    h.on_hello(_hello(hostname='vm"}\n\x9b31m'))
    h.on_sample(
        Sample(
            t=time.time(),
            seq=1,
            cpu=[0.5, 1.0, 0.0, 0.25],
            mem=Memory(total=1 << 34, used=1 << 33, available=1 << 33, swap_total=0, swap_used=0),
            gpus=[
                GpuSample(index=0, uuid=HOSTILE_UUID, name="x", util=0.5, mem_used=1, mem_total=2)
            ],
            net=[NetRate(name='eth0"}\n\x1b', rx=10, tx=20)],
        )
    )
    h.set_status(HostStatus.UP)
    return fleet


def test_hostile_labels_are_cleaned_bounded_and_cannot_add_series() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = scrape_text(_hostile_fleet())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (up,) = families["llmaos_host_up"].samples  # no forged second series
    assert up.labels == {"host": label(HOSTILE)} and up.value == 1.0
    assert "forged" in up.labels["host"]  # kept, as visible text
    host = up.labels["host"]
    assert len(host) == LABEL_MAX and host.endswith("…")
    for f in families.values():
        for s in f.samples:
            for v in s.labels.values():
                assert len(v) <= LABEL_MAX
                assert clean(v) == v, (s.name, v)  # no control or bidi character survives
    (gpu,) = families["llmaos_gpu_utilization"].samples
    assert gpu.labels["uuid"] == label(HOSTILE_UUID) and "\\e[2J" in gpu.labels["uuid"]
    assert gpu.value == 0.5
    info = families["llmaos_host_info"].samples[0]
    assert info.labels["hostname"] == 'vm"}\\n\\x9b31m'
    assert len(families["llmaos_core_load"].samples) == 4
    (rx,) = families["llmaos_network_receive_bytes_per_second"].samples
    assert rx.labels["interface"] == 'eth0"}\\n\\e' and rx.value == 10


def test_a_lone_surrogate_cannot_break_the_scrape() -> None:
    assert label("a\ud800b").encode("utf-8") == b"a\\ud800b"


def test_a_scrape_does_not_wait_for_ever_on_a_stuck_loop() -> None:
    """The fleet is read on its loop; a loop that never turns fails the scrape (Prometheus
    then shows the target down) instead of hanging its thread, or reading a changing
    state from another thread."""
    loop = asyncio.new_event_loop()  # never run
    try:
        collector = FleetCollector(_hostile_fleet(), loop, timeout=0.2)
        with pytest.raises(TimeoutError, match="event loop did not answer"):
            collector.collect()
    finally:
        loop.close()


# ------------------------------------------------------------------- the fleet, served


class LoopThread:
    """An event loop in a thread of its own: the console's loop, while the test's thread
    plays Prometheus's side with blocking HTTP calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fleet-loop")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


STANDIN_DAEMON = """
import asyncio, os, sys
from pathlib import Path
from llmaos_agent.daemon import Daemon
from llmaos_agent.paths import AgentPaths
from tests.nvml_standin import NvmlStandIn, two_gpus

home, uuid = Path(sys.argv[1]), sys.argv[2]
devices = two_gpus({0: (os.getpid(), 18 * 1024**3)})
devices[1].uuid = uuid
paths = AgentPaths(runtime=home / "run", state=home / "state")
asyncio.run(Daemon(paths, interval=0.5, proc_interval=1.0, nvml=NvmlStandIn(devices)).run())
"""
"""This machine's agent daemon, seeing the NVML stand-in's two GPUs (the second with a
hostile UUID): the real daemon in a process of its own, as ``attach`` finds one."""


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@dataclass
class Served:
    prom: PrometheusServer
    fleet: FleetState
    loop: LoopThread
    local: LocalLink
    daemon_pid: int
    box: str | None  # the testbed host's name, when there is one
    box_why: str  # why there is none
    box_containers: int  # containers created on it (state "created")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _testbed(stack: contextlib.ExitStack) -> tuple[Any, str]:
    """A one-host testbed with its own dockerd and one created container where possible,
    else without docker, else none (and why)."""
    from tests import images
    from tests.testbed import Testbed, docker_available, testbed_available

    why = testbed_available()
    if why is not None:
        return None, why
    docker_why = docker_available() or images.busybox_available()
    tb = Testbed(n=1, docker=docker_why is None, names=["box1"]).start()
    stack.callback(tb.close)
    if docker_why is None:
        sock = tb.hosts[0].docker_socket
        images.import_image(sock)
        subprocess.run(
            [*images.docker_cli(sock), "create", "--name", "idle", images.TEST_TAG, "true"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    return tb, docker_why or ""


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    why = prometheus_available()
    need(why is None, why or "")
    with contextlib.ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="llma-", dir="/tmp"))
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        stack.callback(stop_daemons, home)  # an attach that started its own, were there one
        loop = LoopThread()
        stack.callback(loop.close)
        paths = AgentPaths(runtime=home / "run", state=home / "state")
        daemon = subprocess.Popen(
            [sys.executable, "-c", STANDIN_DAEMON, str(home), HOSTILE_UUID],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        stack.callback(_end, daemon)
        deadline = time.monotonic() + 60
        while not paths.socket.exists():  # attach would start a daemon of its own
            assert daemon.poll() is None, daemon.communicate()[1]
            assert time.monotonic() < deadline, "the daemon did not open its socket"
            time.sleep(0.05)  # poll interval

        tb, box_why = _testbed(stack)
        env = {"LLMAOS_AGENT_HOME": str(home)}
        local = LocalLink("local", env=env)
        links: list[Link] = [local, LocalLink(HOSTILE, env=env)]
        options = SshOptions(
            known_hosts=tb.known_hosts if tb else home / "known_hosts",
            client_keys=[str(tb.client_key)] if tb else [],
            config=[],
            use_agent=False,
            connect_timeout=5.0,
        )
        links.append(
            SshLink(
                HostSpec(name="gone", host="127.0.0.1", port=_closed_port(), user="root"),
                options=options,
            )
        )
        if tb is not None:
            h = tb.hosts[0]
            spec = HostSpec(name=h.name, host=h.addr, user="root", python=sys.executable)
            links.append(SshLink(spec, options=options))

        async def watch() -> Watching:
            return await Watching(links).__aenter__()

        w = loop.run(watch())
        stack.callback(lambda: loop.run(w.__aexit__(None, None, None)))
        server = MetricsServer(w.fleet, parse_listen("127.0.0.1:0"), loop.loop).start()
        stack.callback(server.close)
        prom = stack.enter_context(PrometheusServer([f"127.0.0.1:{server.port}"]))
        yield Served(
            prom=prom,
            fleet=w.fleet,
            loop=loop,
            local=local,
            daemon_pid=daemon.pid,
            box=tb.hosts[0].name if tb else None,
            box_why=box_why,
            box_containers=1 if tb is not None and not box_why else 0,
        )


def _by(prom: PrometheusServer, expr: str, key: str) -> dict[str, float]:
    return {s["metric"][key]: float(s["value"][1]) for s in prom.query(expr)}


def _wait_all(prom: PrometheusServer, expr: str, want: int, timeout: float = 90.0) -> None:
    """Until ``expr`` has ``want`` series (hosts come up at their own pace)."""
    deadline = time.monotonic() + timeout
    while len(prom.query(expr)) < want:
        assert time.monotonic() < deadline, f"{expr}: {prom.query(expr)}"
        time.sleep(0.25)  # poll interval


@pytest.mark.integration
def test_hosts_up_and_down(served: Served) -> None:
    prom = served.prom
    prom.wait_for("up == 1")
    want_up = 3 if served.box else 2
    _wait_all(prom, "llmaos_host_up == 1", want_up)
    _wait_all(prom, "llmaos_host_up == 0", 1)
    up = _by(prom, "llmaos_host_up", "host")
    assert up["local"] == 1 and up[label(HOSTILE)] == 1
    assert up["gone"] == 0  # its SSH port refuses
    status = _by(prom, "llmaos_host_status == 1", "host")
    assert set(status) == set(up)
    assert prom.query('llmaos_host_status{host="gone",status="down"}')
    if served.box:
        assert up[served.box] == 1


@pytest.mark.integration
def test_cores_and_memory_are_this_machines(served: Served) -> None:
    prom = served.prom
    prom.wait_for('llmaos_core_load{host="local"}')
    cores = prom.query('llmaos_core_load{host="local"}')
    assert sorted(int(s["metric"]["core"]) for s in cores) == list(range(CPUS))
    assert all(0.0 <= float(s["value"][1]) <= 1.0 for s in cores)
    assert len(prom.query("llmaos_core_load > 1 or llmaos_core_load < 0")) == 0
    total = _by(prom, "llmaos_memory_total_bytes", "host")
    assert total["local"] == psutil.virtual_memory().total
    used = _by(prom, "llmaos_memory_used_bytes", "host")
    assert 0 < used["local"] <= total["local"]
    assert _by(prom, "llmaos_cores", "host")["local"] == CPUS


@pytest.mark.integration
def test_gpus_from_the_nvml_stand_in(served: Served) -> None:
    prom = served.prom
    prom.wait_for('llmaos_gpu_utilization{host="local"}')
    util = {
        (s["metric"]["gpu"], s["metric"]["uuid"]): float(s["value"][1])
        for s in prom.query('llmaos_gpu_utilization{host="local"}')
    }
    devices = two_gpus()
    assert util == {
        ("0", devices[0].uuid): GPU_UTIL[0] / 100,
        ("1", label(HOSTILE_UUID)): GPU_UTIL[1] / 100,
    }
    mem = _by(prom, 'llmaos_gpu_memory_total_bytes{host="local"}', "gpu")
    assert mem == {"0": devices[0].mem_total, "1": devices[1].mem_total}
    used = _by(prom, 'llmaos_gpu_memory_used_bytes{host="local"}', "gpu")
    assert used == {"0": devices[0].mem_used, "1": devices[1].mem_used}


@pytest.mark.integration
def test_beta_per_host_and_for_the_fleet(served: Served) -> None:
    prom = served.prom
    prom.wait_for('llmaos_beta_gpu{host="local"}')
    # Two GPUs at 37 % and 100 %: |0.37 - 0.685| + |1 - 0.685| = 0.63, over 1.37.
    assert _by(prom, "llmaos_beta_gpu", "host")["local"] == pytest.approx(0.63 / 1.37)
    n = CPUS
    for b in _by(prom, "llmaos_beta_cpu", "host").values():
        assert 0.0 <= b <= 2 * (n - 1) / n + 1e-9
    # The fleet's beta from the same scrape's cores and busy cores, by DESIGN.md's formula.
    prom.wait_for("llmaos_beta_fleet")
    at = str(time.time())
    data = prom.api("query", query="llmaos_beta_fleet", time=at)["result"]
    beta = float(data[0]["value"][1])
    caps = {
        s["metric"]["host"]: float(s["value"][1])
        for s in prom.api("query", query="llmaos_cores", time=at)["result"]
    }
    busy = {
        s["metric"]["host"]: float(s["value"][1])
        for s in prom.api("query", query="sum by (host) (llmaos_core_load)", time=at)["result"]
    }
    assert set(caps) == set(busy) and len(caps) >= 2
    b_all, c_all = sum(busy.values()), sum(caps.values())
    if b_all == 0:
        assert beta == 0
    else:
        want = sum(abs(busy[h] - caps[h] * b_all / c_all) for h in caps) / b_all
        assert beta == pytest.approx(want, abs=1e-9)


@pytest.mark.integration
def test_requests_by_state(served: Served) -> None:
    prom = served.prom

    async def submit() -> RequestInfo:
        async with connected(served.local) as s:
            spec = RequestSpec(argv=["sleep", "600"], name="exporter-test", hold=True)
            info: RequestInfo = await s.call("requests.submit", spec)
            return info

    async def cancel(rid: str) -> None:
        async with connected(served.local) as s:
            await s.call("requests.cancel", RequestRef(id=rid))

    prom.wait_for('llmaos_requests{host="local",state="queued"}')
    states = _by(prom, 'llmaos_requests{host="local"}', "state")
    assert set(states) == {"queued", "running", "done", "failed", "cancelled", "held"}
    held_before = states["held"]
    info = served.loop.run(submit())
    try:
        prom.wait_for(f'llmaos_requests{{host="local",state="held"}} == {held_before + 1}')
    finally:
        served.loop.run(cancel(info.id))
    prom.wait_for(f'llmaos_requests{{host="local",state="held"}} == {held_before}')


@pytest.mark.integration
def test_the_agents_own_cost(served: Served) -> None:
    """What the wire says of the agent: its own report in its samples, or its
    daemon's row in the process table (tests/test_exporter_cost.py: with processes off)."""
    prom = served.prom
    prom.wait_for('llmaos_agent_resident_bytes{host="local"}')
    rss = _by(prom, "llmaos_agent_resident_bytes", "host")["local"]
    real = psutil.Process(served.daemon_pid).memory_info().rss
    assert real / 2 < rss < real * 2
    cpu = _by(prom, "llmaos_agent_cpu_cores", "host")["local"]
    assert 0.0 <= cpu <= CPUS


@pytest.mark.integration
def test_network_rates_name_the_loopback(served: Served) -> None:
    """Prometheus's own scrapes cross lo every second; an interface stays a series once
    seen, at 0 when it moves nothing."""
    got = served.prom.wait_for(
        'llmaos_network_receive_bytes_per_second{host="local",interface="lo"}'
    )
    assert float(got[0]["value"][1]) >= 0


@pytest.mark.integration
def test_the_hostile_host_is_one_clean_series(served: Served) -> None:
    prom = served.prom
    _wait_all(prom, "llmaos_host_up == 1", 2)
    hosts = {s["metric"]["host"] for s in prom.query("llmaos_host_up")}
    assert label(HOSTILE) in hosts and "forged" not in hosts
    for h in hosts:
        assert clean(h) == h and len(h) <= LABEL_MAX
    uuids = {s["metric"]["uuid"] for s in prom.query("llmaos_gpu_utilization")}
    assert label(HOSTILE_UUID) in uuids


@pytest.mark.integration
def test_a_testbed_host_over_ssh_with_its_containers(served: Served) -> None:
    need(served.box is not None, served.box_why)
    need(not served.box_why, served.box_why)
    prom, box = served.prom, served.box
    assert box is not None
    _wait_all(prom, f'llmaos_host_up{{host="{box}"}} == 1', 1)
    info = prom.wait_for(f'llmaos_host_info{{host="{box}"}}')
    assert info[0]["metric"]["hostname"] == box  # its own agent, in its own namespace
    cores = prom.wait_for(f'llmaos_core_load{{host="{box}"}}')
    assert len(cores) == CPUS
    assert _by(prom, "llmaos_memory_total_bytes", "host")[box] == psutil.virtual_memory().total
    prom.wait_for(f'llmaos_containers{{host="{box}",state="created"}} == 1')
    states = _by(prom, f'llmaos_containers{{host="{box}"}}', "state")
    assert states["created"] == served.box_containers and states["running"] == 0
    assert _by(prom, "llmaos_agent_resident_bytes", "host")[box] > 1e6


# ------------------------------------------------------------------- the commands


def _metrics_command() -> list[str]:
    """``llmaos-tui metrics`` once cli.py names it; until then the same functions of
    cli_metrics behind a parser of their own."""
    from llmaos_tui import cli

    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "metrics" in sub.choices:
        return [sys.executable, "-m", "llmaos_tui", "metrics"]
    shim = (
        "import argparse, asyncio, sys\n"
        "from llmaos_tui import cli_metrics\n"
        "from llmaos_tui.fleet.local import LocalLink\n"
        "p = argparse.ArgumentParser(prog='llmaos-tui')\n"
        "sub = p.add_subparsers(dest='cmd')\n"
        "cli_metrics.add_arguments(sub, lambda q: None)\n"
        "args = p.parse_args(['metrics', *sys.argv[1:]])\n"
        "sys.exit(asyncio.run(cli_metrics.run(args, [LocalLink()])))\n"
    )
    return [sys.executable, "-c", shim]


def _start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_metrics_command(), *argv],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _serving_line(proc: subprocess.Popen[str]) -> tuple[list[str], str]:
    """stderr's lines up to the one that says where it serves, and that URL."""
    assert proc.stderr is not None
    lines: list[str] = []
    while line := proc.stderr.readline():
        lines.append(line.rstrip("\n"))
        if " on http://" in line:
            return lines, line.rsplit(" on ", 1)[1].strip()
    pytest.fail(f"no serving line: {lines} (exit {proc.wait(30)})")


def _scrape(url: str, want: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=30) as r:
            body: str = r.read().decode()
        if want in body:
            return body
        assert time.monotonic() < deadline, body[:2000]
        time.sleep(0.25)  # poll interval


def _value(text: str, name: str, **labels: str) -> float:
    """A sample's value in an exposition, read by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    for f in text_string_to_metric_families(text):
        for smp in f.samples:
            if smp.name == name and smp.labels == labels:
                return float(smp.value)
    raise AssertionError(f"no {name}{labels} in the exposition")


def test_metrics_serves_until_ctrl_c(agent_home: Path) -> None:
    proc = _start(["--listen", "127.0.0.1:0"])
    try:
        lines, url = _serving_line(proc)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        assert not any("warning" in x for x in lines)
        body = _scrape(url, 'llmaos_host_up{host="local"} 1.0')
        total = _value(body, "llmaos_memory_total_bytes", host="local")
        assert total == psutil.virtual_memory().total
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):  # nobody serves there
        s.connect(("127.0.0.1", port))


def test_metrics_refuses_a_public_address_without_the_flag(agent_home: Path) -> None:
    proc = _start(["--listen", "0.0.0.0:0"])
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "not a loopback address" in err and "--public" in err


def test_metrics_on_a_public_address_says_so_at_start(agent_home: Path) -> None:
    proc = _start(["--listen", f"0.0.0.0:{free_port()}", "--public"])
    try:
        lines, _url = _serving_line(proc)
        assert any("warning: serving metrics on 0.0.0.0:" in x for x in lines), lines
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_metrics_says_why_it_cannot_listen(agent_home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = _start(["--listen", f"127.0.0.1:{s.getsockname()[1]}"])
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "cannot listen on 127.0.0.1:" in err and "in use" in err


def test_snapshot_prometheus_is_one_scrape_promtool_accepts(agent_home: Path) -> None:
    from llmaos_tui.cli_metrics import snapshot_prometheus

    text = asyncio.run(snapshot_prometheus([LocalLink()], 60.0))
    assert 'llmaos_host_up{host="local"} 1.0' in text
    total = _value(text, "llmaos_memory_total_bytes", host="local")
    assert total == psutil.virtual_memory().total
    assert text.count('llmaos_core_load{core="') == CPUS
    assert "process_" not in text  # the textfile collector refuses names of its own
    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool missing (apt-get install prometheus)")
    assert promtool is not None
    lint = subprocess.run(
        [promtool, "check", "metrics"],
        check=False,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # promtool lints names and help; any complaint is printed and fails the check.
    assert lint.returncode == 0, lint.stdout + lint.stderr


# ------------------------------------------------------------------- the Grafana dashboard

DASHBOARD = ROOT / "dashboards" / "llmaos-fleet.json"


def _exprs(dash: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            found.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return found


def _for_prometheus(expr: str) -> str:
    """Grafana's variables as Grafana would fill them in: one host, or all of them."""
    return expr.replace('host="$host"', 'host="local"').replace("$host", ".*")


def test_the_dashboard_is_grafana_json_on_a_datasource_variable() -> None:
    import re

    from llmaos_tui.exporter import _Families

    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exported = {f.name for f in _Families().all()} | {"llmaos_host_info"}
    used: set[str] = set()
    stack = list(dash["panels"])
    while stack:
        p = stack.pop()
        stack.extend(p.get("panels", []))
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            used.update(re.findall(r"llmaos_[a-z_]+", t["expr"]))
    assert used <= exported, used - exported  # no misspelt metric
    for name in ("llmaos_beta_fleet", "llmaos_core_load", "llmaos_gpu_utilization",
                 "llmaos_gpu_memory_used_bytes", "llmaos_host_up"):  # fmt: skip
        assert name in used
    kinds = {p["type"] for p in dash["panels"]}
    assert "heatmap" in kinds
    assert any(p.get("repeat") == "host" for p in dash["panels"])  # a heat map per host


@pytest.mark.integration
def test_every_dashboard_query_parses_and_has_data_in_prometheus(served: Served) -> None:
    prom = served.prom
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    prom.wait_for('llmaos_gpu_utilization{host="local"}')
    for expr in _exprs(dash):
        query = _for_prometheus(expr)
        if "llmaos_containers" in query and served.box_containers == 0:
            prom.query(query)  # parses; no host here has a Docker engine to count
            continue
        prom.wait_for(query, timeout=60)
    label_query = dash["templating"]["list"][1]["definition"]  # label_values(METRIC, LABEL)
    metric, _, name = label_query.removeprefix("label_values(").rstrip(")").partition(", ")
    hosts = prom.api(f"label/{name}/values", **{"match[]": metric})
    assert "local" in hosts and "gone" in hosts
