"""The fleet's figures for Prometheus: a prometheus_client collector over the console's
FleetState, and the HTTP server that serves it from inside the console's process.

Nothing is kept twice: :class:`FleetCollector` reads the hosts' current samples at scrape
time, one pass, and yields metric families that prometheus_client formats. The server is
prometheus_client's own (a threading WSGI server in a daemon thread), so a scrape never
waits on the event loop's turn to format text; what the scrape reads of the fleet it reads
on the loop (one call handed over with ``call_soon_threadsafe``), because the watchers
change the state there and a dict read from another thread while it changes raises.

Every label value a host can influence (GPU UUIDs, interface and disk names, the hello's
host facts, and the host names of a hosts file) goes through :func:`label`: cleaned of
control and format characters (:func:`llmaos_agent.safetext.clean`) and cut to
:data:`LABEL_MAX` characters, so a hostile host can neither break the exposition nor make
a scrape large. prometheus_client escapes backslashes, quotes and newlines itself.

Binding: loopback unless the caller says ``public=True``; :func:`parse_listen` refuses a
bad address in words, and a non-loopback one without that flag.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from llmaos_agent.protocol import AgentCost, ContainerState, RequestState
from llmaos_agent.safetext import clean
from llmaos_tui.fleet.host_io import Rates
from llmaos_tui.fleet.state import FleetState, HostState

__all__ = [
    "LABEL_MAX",
    "FleetCollector",
    "ListenError",
    "MetricsServer",
    "agent_cost",
    "label",
    "parse_listen",
    "public_warning",
    "registry_for",
    "scrape_text",
]

LABEL_MAX = 128
"""Longest label value, in characters after cleaning; a longer one is cut and ends in an
ellipsis. A GPU UUID is 40, an interface name 15, a hostname at most 64 (HOST_NAME_MAX)."""
IO_FORGET_S = 600.0
"""How long an interface or disk that moves no data is still yielded, at 0, before it counts
as gone (the wire cannot tell an idle one from a removed one): a quiet disk is a flat line
for ten minutes, then a gap; a removed one a gap after ten minutes, not a series for ever."""
SCRAPE_TIMEOUT_S = 10.0
"""How long a scrape waits for the event loop to hand over the fleet's figures; a loop
busier than that answers the scrape with an error, not with figures from a half-changed
state."""

REQUEST_STATES: tuple[str, ...] = get_args(RequestState)
CONTAINER_STATES: tuple[str, ...] = get_args(ContainerState)
_CORES = [str(i) for i in range(256)]
"""Core labels made once: 200 hosts of 64 cores ask for 12,800 a scrape."""


def label(text: object) -> str:
    """A label value from text a host reports: control and format characters shown as
    escapes, at most :data:`LABEL_MAX` characters, valid UTF-8 (a lone surrogate would make
    the whole scrape fail to encode)."""
    s = clean(text)
    if len(s) > LABEL_MAX:
        s = s[: LABEL_MAX - 1] + "…"
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            s = s.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return s


def _core(i: int) -> str:
    return _CORES[i] if i < len(_CORES) else str(i)


# --------------------------------------------------------------------------- the collector


class FleetCollector(Collector):
    """The fleet's metric families, made from ``fleet`` at each scrape.

    ``loop``: the event loop whose tasks change ``fleet``; a scrape from another thread
    reads the state there. Without one (a finished fleet, a test) it is read in the caller's
    thread.
    """

    def __init__(
        self,
        fleet: FleetState,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        timeout: float = SCRAPE_TIMEOUT_S,
        io_forget_s: float = IO_FORGET_S,
    ) -> None:
        self.fleet = fleet
        self.loop = loop
        self.timeout = timeout
        self.io_forget_s = io_forget_s

    def describe(self) -> Iterable[Metric]:
        # Names only (the registry checks them for clashes); no pass over the fleet.
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        loop = self.loop
        if loop is None or _running_in(loop):
            return self.families()
        done: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()

        def on_loop() -> None:
            if not done.set_running_or_notify_cancel():
                return  # the scrape gave up waiting
            try:
                done.set_result(self.families())
            except BaseException as exc:  # noqa: BLE001 - handed to the scrape's thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(on_loop)
        try:
            return done.result(self.timeout)
        except concurrent.futures.TimeoutError:
            done.cancel()
            raise TimeoutError(
                f"the console's event loop did not answer within {self.timeout:.0f} s"
            ) from None

    def families(self) -> list[Metric]:
        """One pass over the fleet, in this thread."""
        f = _Families()
        up_hosts = 0
        for name, h in self.fleet.hosts.items():
            host = label(name)
            up = h.up and h.sample is not None
            f.up.add_metric([host], 1.0 if up else 0.0)
            f.status.add_metric([host, h.status.value], 1.0)
            if h.hello is not None:
                facts = h.hello.host
                f.info.add_metric(
                    [host],
                    {
                        "hostname": label(facts.hostname),
                        "os": label(facts.os),
                        "os_release": label(facts.os_release),
                        "arch": label(facts.arch),
                        "agent_version": label(h.hello.agent_version),
                        "protocol": str(h.hello.protocol),
                    },
                )
            if up:
                up_hosts += 1
                self._host(f, host, h)
        if up_hosts:
            # The console's own figure (FleetState.beta: capacity-weighted, DESIGN.md).
            f.beta_fleet.add_metric([], self.fleet.beta())
        return f.all()

    def _host(self, f: _Families, host: str, h: HostState) -> None:
        s = h.sample
        assert s is not None
        add_core = f.core_load.add_metric
        for i, load in enumerate(s.cpu):
            add_core([host, _core(i)], load)
        f.cores.add_metric([host], float(len(s.cpu)))
        f.mem_used.add_metric([host], float(s.mem.used))
        f.mem_total.add_metric([host], float(s.mem.total))
        f.mem_available.add_metric([host], float(s.mem.available))
        f.swap_used.add_metric([host], float(s.mem.swap_used))
        f.swap_total.add_metric([host], float(s.mem.swap_total))
        beta_cpu = h.beta_cpu
        if beta_cpu is not None:
            f.beta_cpu.add_metric([host], beta_cpu)
        beta_gpu = h.beta_gpu
        if beta_gpu is not None:
            f.beta_gpu.add_metric([host], beta_gpu)
        for g in s.gpus:
            labels = [host, str(g.index), label(g.uuid)]
            if g.util is not None:
                f.gpu_util.add_metric(labels, g.util)
            if g.mem_used is not None:
                f.gpu_mem_used.add_metric(labels, float(g.mem_used))
            if g.mem_total is not None:
                f.gpu_mem_total.add_metric(labels, float(g.mem_total))
        self._io(f, host, h)
        _work(f, host, h)

    def _io(self, f: _Families, host: str, h: HostState) -> None:
        """The host's interfaces and disks that exist now, as well as the wire can tell.

        A sample leaves out those that moved nothing (absent is 0 B/s), so one that has
        gone looks like one that idles. The console's :class:`~llmaos_tui.fleet.host_io.HostIO`
        sees every sample (live and the history ring's) and notes the last in which each
        name moved data; a name is yielded, at 0 while absent, for :attr:`io_forget_s`
        after that (in samples at the host's interval), then no more, as a
        prometheus_client collector yields only what exists: a removed bridge, tunnel or
        disk does not stay a series for ever. Nothing is kept here between scrapes."""
        interval = h.hello.interval if h.hello is not None else 1.0
        oldest = h.io.version - max(1, round(self.io_forget_s / interval))
        _rates(h.io.net, oldest, host, f.net_rx, f.net_tx)
        _rates(h.io.disk, oldest, host, f.disk_read, f.disk_write)


def _rates(
    rates: Rates, oldest: int, host: str, first: GaugeMetricFamily, second: GaugeMetricFamily
) -> None:
    """One host's interfaces or disks that moved data after sample ``oldest``, at their
    latest rates (0 where the latest sample left one out). Two names that clean to the
    same label are one series (the first)."""
    done: set[str] = set()
    for raw, last in rates.seen.items():
        if last <= oldest:
            continue
        name = label(raw)
        if name in done:
            continue
        done.add(name)
        a, b = rates.rates.get(raw, (0, 0))
        first.add_metric([host, name], float(a))
        second.add_metric([host, name], float(b))


def _work(f: _Families, host: str, h: HostState) -> None:
    """The host's requests and containers by state (every state, 0 included, so a series
    does not vanish when its last member leaves), and the agent's own cost."""
    if h.hello is not None and h.hello.caps.queue:
        counts = dict.fromkeys(REQUEST_STATES, 0)
        for r in h.requests.values():
            counts[r.state] = counts.get(r.state, 0) + 1
        for state, n in counts.items():
            f.requests.add_metric([host, state], float(n))
    if h.docker:
        counts = dict.fromkeys(CONTAINER_STATES, 0)
        for c in h.containers.values():
            counts[c.state] = counts.get(c.state, 0) + 1
        for state, n in counts.items():
            f.containers.add_metric([host, state], float(n))
    cost = agent_cost(h)
    if cost is not None:
        f.agent_cpu.add_metric([host], cost.cpu)
        if cost.rss is not None:
            f.agent_rss.add_metric([host], float(cost.rss))


def agent_cost(h: HostState) -> AgentCost | None:
    """The host's agent daemon's own cost, whether the console has its processes on or off.

    The agent reports it itself, in one sample of ten (``Sample.agent``: CPU of
    all its threads since its last report, and RSS), and the host's state keeps the last
    report (``HostState.agent_cost``) since the sample now on hand seldom carries one. An
    older agent sends none; its daemon's row in the process table (the hello names
    its pid) says the same while that table is on. The attach bridge the console talks
    to is counted in neither."""
    if h.agent_cost is not None:
        return h.agent_cost
    if h.sample is not None and h.sample.agent is not None:
        return h.sample.agent
    me = h.procs.get(h.hello.pid) if h.hello is not None else None
    if me is not None:
        return AgentCost(cpu=me.cpu / 100.0, rss=me.rss)
    return None


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _Families:
    """The metric families of one scrape, empty until filled."""

    def __init__(self) -> None:
        h, g = ["host"], ["host", "gpu", "uuid"]
        self.up = GaugeMetricFamily(
            "llmaos_host_up", "1 while the host's agent streams samples, 0 otherwise", labels=h
        )
        self.status = GaugeMetricFamily(
            "llmaos_host_status",
            "The console's status of the host (connecting, deploying, up, stale, down): "
            "1 for the current one",
            labels=["host", "status"],
        )
        self.info = InfoMetricFamily(
            "llmaos_host", "What the host's agent says of it in its hello", labels=h
        )
        self.cores = GaugeMetricFamily("llmaos_cores", "Logical CPU cores", labels=h)
        self.core_load = GaugeMetricFamily(
            "llmaos_core_load",
            "A core's utilisation over the last sampling interval, 0..1",
            labels=["host", "core"],
        )
        self.mem_used = GaugeMetricFamily("llmaos_memory_used_bytes", "Memory in use", labels=h)
        self.mem_total = GaugeMetricFamily("llmaos_memory_total_bytes", "Memory", labels=h)
        self.mem_available = GaugeMetricFamily(
            "llmaos_memory_available_bytes", "Memory available to new work", labels=h
        )
        self.swap_used = GaugeMetricFamily("llmaos_swap_used_bytes", "Swap in use", labels=h)
        self.swap_total = GaugeMetricFamily("llmaos_swap_total_bytes", "Swap", labels=h)
        self.gpu_util = GaugeMetricFamily(
            "llmaos_gpu_utilization", "A GPU's utilisation (NVML), 0..1", labels=g
        )
        self.gpu_mem_used = GaugeMetricFamily(
            "llmaos_gpu_memory_used_bytes", "A GPU's memory in use", labels=g
        )
        self.gpu_mem_total = GaugeMetricFamily(
            "llmaos_gpu_memory_total_bytes", "A GPU's memory", labels=g
        )
        self.beta_cpu = GaugeMetricFamily(
            "llmaos_beta_cpu",
            "Imbalance of the host's cores: sum |L_i - L/n| / L, 0 balanced, 2(n-1)/n worst",
            labels=h,
        )
        self.beta_gpu = GaugeMetricFamily(
            "llmaos_beta_gpu", "Imbalance of the host's GPUs, as llmaos_beta_cpu", labels=h
        )
        self.beta_fleet = GaugeMetricFamily(
            "llmaos_beta_fleet",
            "Capacity-weighted imbalance across the hosts that report: sum_h |B_h - C_h*B/C| / B",
        )
        self.requests = GaugeMetricFamily(
            "llmaos_requests", "Requests the host's queue holds, by state", labels=["host", "state"]
        )
        self.containers = GaugeMetricFamily(
            "llmaos_containers",
            "Containers of the host's engine, by state",
            labels=["host", "state"],
        )
        self.agent_cpu = GaugeMetricFamily(
            "llmaos_agent_cpu_cores",
            "CPU the host's agent daemon used (all its threads) over its last report, in cores",
            labels=h,
        )
        self.agent_rss = GaugeMetricFamily(
            "llmaos_agent_resident_bytes", "Resident memory of the host's agent daemon", labels=h
        )
        io = ["host", "interface"]
        self.net_rx = GaugeMetricFamily(
            "llmaos_network_receive_bytes_per_second", "Received over the last interval", labels=io
        )
        self.net_tx = GaugeMetricFamily(
            "llmaos_network_transmit_bytes_per_second", "Sent over the last interval", labels=io
        )
        dk = ["host", "disk"]
        self.disk_read = GaugeMetricFamily(
            "llmaos_disk_read_bytes_per_second", "Read from a whole disk, last interval", labels=dk
        )
        self.disk_write = GaugeMetricFamily(
            "llmaos_disk_written_bytes_per_second",
            "Written to a whole disk, last interval",
            labels=dk,
        )

    def all(self) -> list[Metric]:
        return [v for v in vars(self).values() if isinstance(v, Metric)]


def registry_for(
    fleet: FleetState,
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    process: bool = True,
) -> CollectorRegistry:
    """A registry of the fleet's collector alone (not prometheus_client's global one, which
    would mix in whatever else this process registered); ``process``: also this console's
    own CPU and memory, as ``llmaos_console_process_*``."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(fleet, loop))
    if process:
        ProcessCollector(namespace="llmaos_console", registry=registry)
    return registry


def scrape_text(fleet: FleetState) -> str:
    """One scrape of ``fleet`` in the text exposition format (``snapshot --format
    prometheus``, for node_exporter's textfile collector, which refuses ``process_*``
    names of its own: none here)."""
    return generate_latest(registry_for(fleet, process=False)).decode("utf-8")


# --------------------------------------------------------------------------- the address


class ListenError(ValueError):
    """An address to serve on that will not do; the message says why, for the operator."""


@dataclass(frozen=True)
class Listen:
    host: str  # as given, brackets of an IPv6 address removed
    port: int
    loopback: bool

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str, *, public: bool = False, flag: str = "--metrics-public") -> Listen:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1) -> a :class:`Listen`.

    A host that is not loopback (``0.0.0.0``, ``::``, an interface's address or a name that
    resolves to one) is refused unless ``public`` (the command line's ``flag``, which the
    refusal names): the figures name every host and its loads, for anyone who can reach
    the port.
    """
    shown = ascii(text)
    t = text.strip()
    if not t:
        raise ListenError("no address given (try 127.0.0.1:9464)")
    if t.isdigit():
        host, port_text = "127.0.0.1", t
    elif t.startswith("["):
        host, sep, port_text = t[1:].partition("]:")
        if not sep:
            raise ListenError(f"{shown}: an IPv6 address needs a port, as [::1]:9464")
    else:
        host, sep, port_text = t.rpartition(":")
        if not sep or not host:
            raise ListenError(f"{shown}: not HOST:PORT (try 127.0.0.1:9464)")
        if ":" in host:
            raise ListenError(f"{shown}: put an IPv6 address in brackets, as [::1]:9464")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenError(f"{shown}: the port must be a number from 0 to 65535")
    port = int(port_text)
    loopback = _is_loopback(host, shown)
    if not loopback and not public:
        raise ListenError(
            f"{shown} is not a loopback address: it would serve the fleet's figures to the "
            f"network. Add {flag} to mean it, or listen on 127.0.0.1"
        )
    return Listen(host, port, loopback)


def _is_loopback(host: str, shown: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise ListenError(f"{shown}: cannot resolve {host!a} ({exc})") from None
    addrs = {ipaddress.ip_address(str(i[4][0]).partition("%")[0]) for i in infos}
    return bool(addrs) and all(a.is_loopback for a in addrs)


def public_warning(listen: Listen) -> str | None:
    """The line said at start when ``listen`` is not loopback; None when it is."""
    if listen.loopback:
        return None
    return (
        f"warning: serving metrics on {listen}, not a loopback address: anyone who can reach "
        "it reads every host's name and figures (no authentication, no TLS)"
    )


# --------------------------------------------------------------------------- the server


class MetricsServer:
    """prometheus_client's HTTP server for the fleet, started on the console's loop.

    ``start()`` binds (OSError when it cannot, e.g. the port is taken) and serves from a
    daemon thread; the fleet is read on ``loop``. ``close()`` (or ``await aclose()`` from
    the loop, which does not block it) stops serving and frees the port.
    """

    def __init__(
        self,
        fleet: FleetState,
        listen: Listen,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        process: bool = True,
    ) -> None:
        self.listen = listen
        self.registry = registry_for(fleet, loop, process=process)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the kernel's pick for 0)."""
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{Listen(self.listen.host, self.port, self.listen.loopback)}/metrics"

    def start(self) -> MetricsServer:
        self._server, self._thread = start_http_server(
            self.listen.port, addr=self.listen.host, registry=self.registry
        )
        return self

    def close(self) -> None:
        """Stop serving (waits for the serving thread's next poll, up to half a second)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
