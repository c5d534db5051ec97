"""A real Prometheus server for the tests (Debian's ``prometheus`` package): it scrapes the
targets it is given every second, keeps its data in a temporary directory, listens on a
free loopback port, and is queried through its HTTP API with urllib.

:func:`prometheus_available` says what is missing; tests skip on it and fail under
``LLMAOS_REQUIRE_INTEGRATION=1`` (``tests.conftest.need``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

START_DEADLINE = 120.0  # seconds; Prometheus replays an empty WAL fast, but CI is busy
STOP_DEADLINE = 20.0


class PrometheusError(RuntimeError):
    """Prometheus did not come up, or its API answered with an error."""


def prometheus_available() -> str | None:
    """Why a Prometheus server cannot run here, or None when it can."""
    if shutil.which("prometheus") is None:
        return "prometheus missing (apt-get install prometheus)"
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (``host:port`` strings, path ``/metrics``) as
    job ``job`` every ``interval``; its files under ``root`` (a fresh temporary
    directory, removed on :meth:`stop`, when None)."""

    def __init__(
        self,
        targets: Sequence[str],
        root: Path | None = None,
        *,
        job: str = "llmaos",
        interval: str = "1s",
    ) -> None:
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="prom-", dir="/tmp"))
        self.targets = list(targets)
        self.job = job
        self.interval = interval
        self.port = 0
        self.startup_s = 0.0
        self.log = self.root / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> PrometheusServer:
        """Start Prometheus and wait until ``/-/ready`` says so; stopped again on failure.
        A port taken between :func:`free_port` and Prometheus's bind is tried afresh."""
        began = time.monotonic()
        try:
            self._write_config()
            for attempt in range(attempts):
                self.port = free_port()
                self._spawn()
                if self._wait_ready(began + START_DEADLINE):
                    break
                self._stop_proc()
                if attempt == attempts - 1:
                    raise PrometheusError(f"no free port for Prometheus\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL) and remove its directory if ours."""
        self._stop_proc()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _write_config(self) -> None:
        # JSON is YAML, so the config needs no YAML library.
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "scrape_interval": self.interval,
                    "scrape_timeout": self.interval,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        (self.root / "prometheus.yml").write_text(json.dumps(config, indent=1))
        (self.root / "data").mkdir(exist_ok=True)

    def _spawn(self) -> None:
        argv = [
            "prometheus",
            f"--config.file={self.root / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=info",
        ]
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self, deadline: float) -> bool:
        """True once ready; False when it exited because its port was taken."""
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                tail = self.log_tail()
                if "address already in use" in tail:
                    return False
                raise PrometheusError(f"prometheus exited ({self._proc.returncode})\n{tail}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=10) as r,
            ):
                if r.status == 200:
                    return True
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"prometheus not ready within {START_DEADLINE:.0f} s\n{self.log_tail()}"
                )
            time.sleep(0.2)  # poll interval

    def _stop_proc(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_DEADLINE)

    # ------------------------------------------------------------------ the HTTP API

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>?params``; the ``data`` of a ``success`` answer."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400/422: a bad query; the body says why
            body = json.load(e)
        if body.get("status") != "success":
            raise PrometheusError(f"{url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {labels}, "value": [t, "v"]}, ...]``."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r} gave a {data['resultType']}, not a vector")
        return list(data["result"])

    def values(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The query's samples, keyed by their sorted label pairs."""
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in self.query(expr)}

    def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns a non-empty vector (a filter such as ``up == 1``
        waits for a scrape to succeed); that vector. Fails with the targets' last errors."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                health = [
                    (t.get("scrapeUrl"), t.get("health"), t.get("lastError"))
                    for t in self.api("targets")["activeTargets"]
                ]
                raise PrometheusError(f"{expr!r} still empty after {timeout:.0f} s: {health}")
            time.sleep(0.25)  # poll interval


@contextlib.contextmanager
def prometheus(targets: Sequence[str], **kw: Any) -> Iterator[PrometheusServer]:
    """A started :class:`PrometheusServer`, stopped on leaving."""
    with PrometheusServer(targets, **kw) as server:
        yield server
