"""Tests of the testbed itself: real namespaces, real sshd, real asyncssh connections.

Skipped without root and the tools (failed instead under LLMAOS_REQUIRE_INTEGRATION=1).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncssh
import psutil
import pytest

from tests.conftest import need
from tests.helpers import wait_for
from tests.testbed import (
    STATE_DIR,
    Testbed,
    TestHost,
    clean_stale,
    testbed_available,
    testbed_factory_fixture,  # noqa: F401  (fixture `testbed_factory`)
    testbed_fixture,  # noqa: F401  (fixture `testbed`)
)

pytestmark = pytest.mark.integration


async def connect(tb: Testbed, host: TestHost, **kw: object) -> asyncssh.SSHClientConnection:
    """An asyncssh connection with only the testbed's key and known_hosts (never ~/.ssh)."""
    opts: dict[str, object] = {
        "port": host.port,
        "username": "root",
        "client_keys": [str(tb.client_key)],
        "known_hosts": str(tb.known_hosts),
        "config": [],
        "agent_path": None,
    }
    opts.update(kw)
    return await asyncio.wait_for(asyncssh.connect(host.addr, **opts), timeout=10)


def leftovers(prefix: str) -> list[str]:
    """Every namespace, link and FORWARD rule still named with ``prefix-``."""
    tag = f"{prefix}-"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    rules = subprocess.run(
        ["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True, check=True
    )
    found = [w for w in netns.stdout.split() if w.startswith(tag)]
    found += [line.split()[1] for line in links.stdout.splitlines() if tag in line.split()[1]]
    found += [r for r in rules.stdout.splitlines() if tag in r]
    return found


def live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:  # gone meanwhile
        return []


def netns_pids(netns: str) -> list[int]:
    cp = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True)
    return [int(p) for p in cp.stdout.split()]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        Testbed(prefix="Bad-Prefix")
    with pytest.raises(ValueError, match="names"):
        Testbed(n=2, names=["a"])
    with pytest.raises(ValueError, match="n must be"):
        Testbed(n=0)


def test_availability_names_the_missing_part(monkeypatch: pytest.MonkeyPatch) -> None:
    testbed_available.cache_clear()
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    try:
        assert "root" in (testbed_available() or "")
    finally:
        monkeypatch.undo()
        testbed_available.cache_clear()
    testbed_available.cache_clear()
    monkeypatch.setattr("tests.testbed.SSHD", "/nonexistent/sshd")
    try:
        assert "/nonexistent/sshd" in (testbed_available() or "")
    finally:
        monkeypatch.undo()
        testbed_available.cache_clear()


async def test_three_hosts_answer_ssh_with_their_own_name(testbed: Testbed) -> None:
    tb = testbed
    assert [h.name for h in tb.hosts] == ["host1", "host2", "host3"]
    assert len({h.addr for h in tb.hosts}) == 3
    assert tb.up_seconds < 5, f"testbed took {tb.up_seconds:.2f} s to come up"

    async def hostname(h: TestHost) -> tuple[str, str]:
        async with await connect(tb, h) as conn:
            result = await conn.run("hostname", check=True)
            key = conn.get_server_host_key()
        assert key is not None
        return str(result.stdout).strip(), key.export_public_key().decode().strip()

    got = await asyncio.gather(*(hostname(h) for h in tb.hosts))
    assert [name for name, _ in got] == [h.name for h in tb.hosts]  # UTS namespace per host
    assert [key for _, key in got] == [h.host_pubkey for h in tb.hosts]  # each its own key
    assert len({h.host_pubkey for h in tb.hosts}) == 3


def test_hosts_reach_each_other_but_nothing_outside(testbed: Testbed) -> None:
    tb = testbed
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
        "    print(s.recv(64).decode(errors='replace').strip())\n"
        "except OSError as e:\n"
        "    print('error', e.errno)\n"
    )
    h1, h2 = tb.hosts[0], tb.hosts[1]
    for h in tb.hosts:
        assert tb.exec(h, ["ip", "route", "show", "default"]).stdout.strip() == ""
        assert tb.exec(h, ["cat", "/proc/sys/kernel/hostname"]).stdout.strip() == h.name
    # Across the bridge: host1 gets host2's SSH banner.
    banner = tb.exec(h1, [sys.executable, "-c", probe, h2.addr, "22"]).stdout.strip()
    assert banner.startswith("SSH-2.0-OpenSSH"), banner
    # Anything beyond the bridge: no route at all (ENETUNREACH = 101), not a timeout.
    outside = tb.exec(h1, [sys.executable, "-c", probe, "1.1.1.1", "53"]).stdout.strip()
    assert outside == "error 101", outside


async def test_kill_sshd_refuses_and_start_sshd_comes_back(testbed: Testbed) -> None:
    tb = testbed
    h = tb.hosts[1]
    conn = await connect(tb, h)
    sleeper = await conn.create_process("sleep 300")
    tb.kill_sshd(h)
    # The open connection dies with the host's sshd, as when the host goes down...
    await asyncio.wait_for(conn.wait_closed(), timeout=5)
    await asyncio.wait_for(sleeper.wait_closed(), timeout=5)
    # ...and the port refuses at once (RST, not a timeout).
    with pytest.raises(OSError) as err:
        await connect(tb, h)
    assert isinstance(err.value, ConnectionRefusedError), repr(err.value)
    # The other hosts are unaffected.
    async with await connect(tb, tb.hosts[0]) as other:
        assert (await other.run("hostname", check=True)).stdout == "host1\n"

    tb.start_sshd(h)
    async with await connect(tb, h) as conn2:  # same key: known_hosts still verifies
        assert (await conn2.run("hostname", check=True)).stdout == f"{h.name}\n"
    with pytest.raises(Exception, match="already running"):
        tb.start_sshd(h)


async def test_kill_sshd_can_keep_sessions(testbed: Testbed) -> None:
    tb = testbed
    h = tb.hosts[2]
    async with await connect(tb, h) as conn:
        tb.kill_sshd(h, sessions=False)
        # Like a real sshd restart: the listener is gone, the open session lives on.
        assert (await conn.run("hostname", check=True)).stdout == f"{h.name}\n"
        with pytest.raises(ConnectionRefusedError):
            await connect(tb, h)
    tb.start_sshd(h)


async def test_replaced_host_key_is_refused(testbed: Testbed) -> None:
    tb = testbed
    h = tb.hosts[0]
    old = h.host_pubkey
    known = tb.known_hosts.read_text()
    new = tb.replace_host_key(h)
    assert new != old and h.host_pubkey == new
    assert tb.known_hosts.read_text() == known
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await connect(tb, h)
    # It is the key that changed, not the host: without verification it still answers.
    async with await connect(tb, h, known_hosts=None) as conn:
        key = conn.get_server_host_key()
        assert key is not None and key.export_public_key().decode().strip() == new


async def test_partition_drops_silently(testbed: Testbed) -> None:
    tb = testbed
    h = tb.hosts[2]
    tb.set_link(h, up=False)
    try:
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(
                asyncssh.connect(
                    h.addr,
                    username="root",
                    client_keys=[str(tb.client_key)],
                    known_hosts=str(tb.known_hosts),
                    config=[],
                    agent_path=None,
                ),
                timeout=1,
            )
    finally:
        tb.set_link(h, up=True)
    async with await connect(tb, h) as conn:
        assert (await conn.run("hostname", check=True)).stdout == f"{h.name}\n"


def test_openssh_client_with_the_generated_config(testbed: Testbed) -> None:
    need(shutil.which("ssh") is not None, "OpenSSH's ssh client is not installed")
    tb = testbed
    h = tb.hosts[1]
    cp = subprocess.run(
        ["ssh", "-F", str(tb.ssh_config), h.name, "hostname"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == h.name


async def test_close_leaves_nothing_behind() -> None:
    reason = testbed_available()
    need(reason is None, reason or "")
    tb = Testbed(n=2).start()
    try:
        prefix, tbdir = tb.prefix, tb.dir
        assert len(leftovers(prefix)) == 2 + 2 + 1 + 1  # 2 netns, 2 veths, bridge, rule
        conn = await connect(tb, tb.hosts[0])
        await conn.create_process("sleep 300")  # a session process inside host1

        def host_pids() -> list[int]:
            return [p for h in tb.hosts for p in netns_pids(h.netns)] + [h.pid for h in tb.hosts]

        def sleeping() -> bool:
            return any("sleep" in " ".join(_cmdline(p)) for p in host_pids())

        await wait_for(sleeping, 30, "the session's sleep inside host1")
        pids = host_pids()
    finally:
        tb.close()
    assert tb.down_seconds < 10, f"teardown took {tb.down_seconds:.2f} s"
    conn.abort()
    assert leftovers(prefix) == []
    assert [p for p in pids if live(p)] == []
    assert not tbdir.exists()
    assert not (STATE_DIR / f"{prefix}.lock").exists()
    tb.close()  # twice is harmless


def test_stale_leftovers_are_cleaned_but_live_testbeds_kept(testbed: Testbed) -> None:
    crashed = Testbed(n=2).start()
    prefix = crashed.prefix
    pids = [h.pid for h in crashed.hosts]
    # Simulate a crash: the process holding the lock is gone, its namespaces are not.
    assert crashed._lockf is not None
    crashed._lockf.close()
    crashed._lockf = None
    assert leftovers(prefix)

    cleaned = clean_stale()
    for h in crashed.hosts:  # our own children, so reap them (a real crash leaves none)
        for p in (h._init, h._sshd):
            if p is not None:
                p.wait(timeout=5)
    assert prefix in cleaned
    assert testbed.prefix not in cleaned
    assert leftovers(prefix) == []
    assert [p for p in pids if live(p)] == []
    assert not (STATE_DIR / prefix).exists()
    # The live testbed (the fixture's) still works.
    assert len(leftovers(testbed.prefix)) == 3 + 3 + 1 + 1
    h = testbed.hosts[0]
    assert testbed.exec(h, ["hostname"]).stdout.strip() == h.name


def test_docker_info_inside_hosts(testbed_factory: Callable[..., Testbed]) -> None:
    tb = testbed_factory(n=2, docker=True)  # skips (or fails in CI) without docker.io
    assert tb.up_seconds < 20, f"testbed with docker took {tb.up_seconds:.2f} s to come up"
    ids = []
    for h in tb.hosts:
        cp = tb.exec(h, ["docker", "info", "--format", "{{.ID}} {{.Name}}"])
        ident, name = cp.stdout.split()
        assert name == h.name
        ids.append(ident)
        assert h.docker_socket.is_socket()  # reachable from the root namespace
    assert len(set(ids)) == 2, "every host must be its own docker daemon (own /etc/docker)"
    # Each dockerd keeps its data in the host's own bind-mounted /var/lib/docker.
    assert all((h.dir / "docker-lib" / "image").is_dir() for h in tb.hosts)
    assert not Path("/var/lib/docker/image").exists()
    tb.close()  # the factory's close afterwards is a no-op
    assert tb.down_seconds < 15, f"teardown with docker took {tb.down_seconds:.2f} s"
