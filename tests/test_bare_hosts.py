"""Issue 13's done-when: hosts whose only Python is a bare one come up and take work.

Two OpenSSH testbed hosts (network namespaces, real sshd) whose ``python`` in the hosts
file is a bare venv made from the system python3 (no pip, no psutil, no msgspec:
:func:`tests.bare.bare_python`). The console pushes the zipapp and nothing else (Linux
needs nothing but the standard library); ``llmaos-tui snapshot --json`` shows both up
with all their cores, and a request submitted to one runs to completion there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bare import bare_python
from tests.helpers import run_tui
from tests.testbed import Testbed, testbed_factory_fixture  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def bare_home(tmp_path: Path, tb: Testbed) -> Path:
    """A console HOME whose hosts file gives every host the bare Python and the testbed's
    key; the zipapp always pushed (agent = "push"), so no llmaos-agent of this machine's
    PATH is taken instead."""
    home = tmp_path / "home"
    cfg = home / ".config" / "llmaos-tui"
    cfg.mkdir(parents=True)
    (cfg / "hosts.toml").write_text(
        "[defaults]\n"
        'user = "root"\n'
        f'python = "{bare_python()}"\n'
        f'identity = "{tb.client_key}"\n'
        'agent = "push"\n'
    )
    return home


def tui(home: Path, tb: Testbed, *args: str) -> Any:
    # The console's options right after the subcommand: what follows submit's -- is its command.
    out = run_tui(home, args[0], "--no-local", "--known-hosts", str(tb.known_hosts), *args[1:])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if "--json" in args else out.stdout


def test_two_bare_hosts_come_up_and_run_a_request(tmp_path: Path, testbed_factory: Any) -> None:
    tb: Testbed = testbed_factory(n=2)
    home = bare_home(tmp_path, tb)
    targets = [a for h in tb.hosts for a in ("-H", h.addr)]

    t0 = time.monotonic()
    snap = tui(home, tb, "snapshot", "--json", "--timeout", "120", *targets)
    took = time.monotonic() - t0
    hosts = {h["name"]: h for h in snap["hosts"]}
    for h in tb.hosts:
        got = hosts[h.addr]
        assert got["status"] == "up", got["reason"]
        assert got["hostname"] == h.name  # its own agent, in its own namespace
        assert got["cores"] == os.cpu_count() == len(got["core_loads"])
        assert got["process_count"] > 1
    print(f"two bare hosts up in {took:.1f} s (snapshot, zipapp pushed)")

    one = tb.hosts[0].addr
    req = tui(home, tb, "submit", "--json", "-H", one, "--name", "bare-job",
              "--", "sh", "-c", "echo ran-on-$(hostname)")  # fmt: skip
    rid = req["id"]
    log = tui(home, tb, "log", "-f", rid, "-H", one)
    assert f"ran-on-{tb.hosts[0].name}" in log
    listed = tui(home, tb, "requests", "--json", "--all", "-H", one)
    mine = [r for r in listed["hosts"][one] if r["id"] == rid]
    assert mine and mine[0]["state"] == "done" and mine[0]["exit_code"] == 0, mine
