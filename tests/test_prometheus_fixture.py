"""The Prometheus of :mod:`tests.prometheus_server` scrapes what the exporter's tests will
serve: a live prometheus_client exposition shows ``up == 1`` and its gauge's value, and a
change to the gauge reaches Prometheus's API; a dead target shows ``up == 0``; a bad
query is refused in Prometheus's words; stopping leaves no process and no directory."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil
import pytest

from tests.conftest import need
from tests.prometheus_server import PrometheusError, PrometheusServer, prometheus_available

if TYPE_CHECKING:
    from prometheus_client import Gauge

pytestmark = pytest.mark.integration


@dataclass
class Exposition:
    """A prometheus_client registry served over HTTP from a thread on loopback."""

    target: str
    gauge: Gauge  # label ``host``


def _need_prometheus() -> None:
    why = prometheus_available()
    need(why is None, why or "")
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        need(False, "prometheus-client is not installed (pip install prometheus-client)")


def _closed_port() -> int:
    """A loopback port with nothing listening (bound and closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def exposition() -> Iterator[Exposition]:
    _need_prometheus()
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    gauge = Gauge("llmaos_fixture_load", "A test gauge", ["host"], registry=registry)
    gauge.labels(host="local").set(0.25)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield Exposition(f"127.0.0.1:{server.server_port}", gauge)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


@pytest.fixture(scope="module")
def dead_target() -> str:
    return f"127.0.0.1:{_closed_port()}"


@pytest.fixture(scope="module")
def prom(exposition: Exposition, dead_target: str) -> Iterator[PrometheusServer]:
    with PrometheusServer([exposition.target, dead_target]) as server:
        yield server


def test_a_live_exposition_is_up_with_its_gauge(
    prom: PrometheusServer, exposition: Exposition
) -> None:
    up = prom.wait_for(f'up{{instance="{exposition.target}"}} == 1')
    assert up[0]["metric"]["job"] == "llmaos"
    got = prom.wait_for('llmaos_fixture_load{host="local"}')
    assert float(got[0]["value"][1]) == 0.25
    assert got[0]["metric"]["instance"] == exposition.target


def test_a_change_reaches_prometheus_on_the_next_scrape(
    prom: PrometheusServer, exposition: Exposition
) -> None:
    exposition.gauge.labels(host="local").set(0.75)
    prom.wait_for('llmaos_fixture_load{host="local"} == 0.75')


def test_a_dead_target_is_down(prom: PrometheusServer, dead_target: str) -> None:
    prom.wait_for(f'up{{instance="{dead_target}"}} == 0')
    targets = {t["scrapeUrl"]: t for t in prom.api("targets")["activeTargets"]}
    dead = targets[f"http://{dead_target}/metrics"]
    assert dead["health"] == "down"
    assert "connection refused" in dead["lastError"]


def test_a_bad_query_is_refused_in_prometheus_words(prom: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="bad_data: invalid parameter"):
        prom.query("up{")


def test_stopping_leaves_no_process_and_no_directory() -> None:
    _need_prometheus()
    server = PrometheusServer([f"127.0.0.1:{_closed_port()}"]).start()
    assert server._proc is not None
    pid, root = server._proc.pid, server.root
    server.stop()
    assert not psutil.pid_exists(pid)
    assert not root.exists()
