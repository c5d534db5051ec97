"""``llmaos-tui move`` and ``llmaos-tui containers`` as commands, on two testbed hosts.

The real command runs in a subprocess with its own HOME, whose hosts file names the two
hosts (each with its own sshd and dockerd); what it prints and its exit code are what a
user sees, and the engines are asked directly what happened.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import images
from tests.helpers import audit_of, run_tui
from tests.testbed import Testbed

pytestmark = pytest.mark.integration
PORT = 18095


def run_web(d: Any, name: str = "web") -> Any:
    web = d.containers.run(
        images.TEST_TAG,
        ["httpd", "-f", "-p", "80", "-h", "/data"],
        name=name,
        detach=True,
        volumes={f"{name}data": {"bind": "/data", "mode": "rw"}},
        ports={"80/tcp": PORT},
    )
    code, out = web.exec_run(["sh", "-c", "echo moved by the cli > /data/index.html"])
    assert code == 0, out
    return web


def names(d: Any) -> dict[str, str]:
    return {c["Names"][0].lstrip("/"): c["State"] for c in d.api.containers(all=True)}


def test_move_with_data_and_port(
    docker_pair: Testbed, engines: tuple[Any, Any], docker_home: Path
) -> None:
    d1, d2 = engines
    h1, h2 = docker_pair.hosts
    run_web(d1)
    cp = run_tui(docker_home, "move", "web", "--from", h1.name, "--to", h2.name, "--json")
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert res["outcome"] == "moved" and res["image_bytes"] > 0 and res["volume_bytes"] > 0
    assert "image: done" in cp.stderr and "verify: done" in cp.stderr  # progress lines
    assert names(d2) == {"web": "running"} and names(d1) == {}
    with urllib.request.urlopen(f"http://{h2.addr}:{PORT}/index.html", timeout=5) as r:
        assert r.read() == b"moved by the cli\n"
    assert [(e["action"], e["result"]) for e in audit_of(docker_home)] == [("container.move", "ok")]

    # The listing shows it where it now runs, from the agents.
    cp = run_tui(docker_home, "containers", "--json", "--no-local")  # the hosts file's hosts
    assert cp.returncode == 0, cp.stderr
    hosts = {h["name"]: h for h in json.loads(cp.stdout)["hosts"]}
    assert hosts[h1.name]["docker"] is True and hosts[h1.name]["containers"] == []
    (web,) = hosts[h2.name]["containers"]
    assert web["name"] == "web" and web["state"] == "running" and web["pids"] >= 1
    assert f"{PORT}->80/tcp" in web["ports"][0]


def test_dry_run_and_refusals_change_nothing(
    docker_pair: Testbed, engines: tuple[Any, Any], docker_home: Path
) -> None:
    d1, d2 = engines
    h1, h2 = docker_pair.hosts
    run_web(d1)
    before = (names(d1), names(d2))

    cp = run_tui(docker_home, "move", "web", "--from", h1.name, "--to", h2.name, "--dry-run")
    assert cp.returncode == 0, cp.stderr
    assert "dry run of web" in cp.stdout and "stop" in cp.stdout

    cp = run_tui(docker_home, "--read-only", "move", "web", "--from", h1.name, "--to", h2.name)
    assert cp.returncode == 1
    assert "read-only" in cp.stdout

    # Live mode says why it is unavailable: the testbed's engines run without experimental
    # features, and CRIU works or not as it does on this machine (same kernel).
    cp = run_tui(docker_home, "move", "web", "--from", h1.name, "--to", h2.name, "--live", "--json")
    assert cp.returncode == 1, cp.stderr
    res = json.loads(cp.stdout)
    assert res["outcome"] == "refused"
    (live,) = [r["message"] for r in res["refusals"] if r["code"] == "live-unavailable"]
    for h in (h1, h2):
        assert f"the engine on {h.name} does not run with experimental features" in live
    local = (
        subprocess.run(["criu", "check"], capture_output=True, check=False)
        if shutil.which("criu")
        else None
    )
    if local is None:
        assert f"criu is not installed on {h1.name}" in live
    elif local.returncode != 0:
        assert f"criu check fails on {h1.name}: " in live
    assert (names(d1), names(d2)) == before

    # A name clash needs a container of that name there (and so the image).
    images.copy_image(h1.docker_socket, h2.docker_socket)
    d2.containers.create(images.TEST_TAG, ["true"], name="web")
    cp = run_tui(docker_home, "move", "web", "--from", h1.name, "--to", h2.name)
    assert cp.returncode == 1
    assert "already has a container named web" in cp.stdout
    assert names(d1) == before[0] and names(d2) == {"web": "created"}

    cp = run_tui(docker_home, "move", "web", "--from", h1.name, "--to", h1.name)
    assert cp.returncode == 2
    results = [e["result"] for e in audit_of(docker_home)]
    assert any(r.startswith("refused") and "read-only" in r for r in results)
    assert any("already has a container named web" in r for r in results)
