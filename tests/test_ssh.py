"""The SSH link against a real SSH server (asyncssh's, on loopback) running the real agent.

No root needed: the server runs each command with /bin/sh in a private home, so
the zipapp push, the host-key rules and reconnects are exercised end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import psutil
import pytest

from llmaos_tui.fleet import deploy, interpreter, wheels
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import HostKeyQuestion, SshLink, SshOptions
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import Backoff, HostWatcher
from tests.bare import bare_python
from tests.conftest import need
from tests.helpers import DATA, wait_for
from tests.sshserver import SshServer


async def down_with(host: HostState, text: str, timeout: float = 60.0) -> None:
    """Wait until ``host`` is down for the reason containing ``text``. On a starved machine
    an attempt may first fail for another reason (a connect that timed out); the watcher
    retries, so the reason the test is about comes next."""
    try:
        await wait_for(
            lambda: host.status is HostStatus.DOWN and text in host.reason, timeout, text
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the host is {host.status.value}: {host.reason}") from None


def link_to(
    srv: SshServer,
    python: str | None = sys.executable,
    *,
    agent: str = "push",
    wheels: str = "auto",
    deploy_agent: bool = True,
    **kw: object,
) -> SshLink:
    """A link to ``srv``; the zipapp pushed unless ``agent`` says otherwise (the test
    venv's own llmaos-agent is on the server's PATH)."""
    spec = HostSpec(
        name="h1", host="127.0.0.1", port=srv.port, user="ops", python=python,
        agent=agent, wheels=wheels,
    )  # fmt: skip
    options = SshOptions(
        known_hosts=srv.known_hosts,
        client_keys=[str(srv.client_key_path)],
        config=[],
        use_agent=False,
        connect_timeout=30.0,  # a starved machine's logins are slow, not refused
        keepalive_interval=1.0,
        keepalive_count_max=2,
        deploy=deploy_agent,
    )
    return SshLink(spec, options=options, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def watching(link: SshLink, **kw: object) -> AsyncIterator[HostState]:
    state = FleetState().add(link.name)
    fast = Backoff(first=0.2, cap=0.5)
    watcher = HostWatcher(state, link, lambda s: None, backoff=fast, **kw)  # type: ignore[arg-type]
    task = asyncio.ensure_future(watcher.run())
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_agent_is_pushed_and_streams_samples_over_ssh(server: SshServer) -> None:
    link = link_to(server)
    async with watching(link) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
        await wait_for(lambda: host.sample is not None and len(host.procs) > 3, 15, "samples")
        assert host.hello is not None and host.hello.host.cores == len(host.sample.cpu)  # type: ignore[union-attr]
    data, digest = deploy.zipapp()
    pushed = server.home / deploy.remote_path(digest)
    assert pushed.read_bytes() == data
    assert [p.name for p in pushed.parent.iterdir()] == [pushed.name]  # no .part left
    assert server.commands[-1] == deploy.posix_command(deploy.remote_path(digest), sys.executable)

    # Next time the same agent is reused, not uploaded again.
    mtime = pushed.stat().st_mtime_ns
    async with watching(link_to(server)) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up again")
    assert pushed.stat().st_mtime_ns == mtime


async def test_host_comes_back_after_the_server_drops_it(server: SshServer) -> None:
    async with watching(link_to(server)) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
        await server.stop()
        await wait_for(lambda: host.status is HostStatus.DOWN, 30, "the host down")
        assert "connect" in host.reason or "lost" in host.reason or "closed" in host.reason
        await server.start()
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up after restart")
        seen = len(host.history)
        await wait_for(lambda: len(host.history) > seen, 10, "new samples")


async def test_unknown_key_is_asked_and_written_when_trusted(server: SshServer) -> None:
    server.known_hosts.write_text("")
    questions: list[HostKeyQuestion] = []

    async def yes(q: HostKeyQuestion) -> bool:
        questions.append(q)
        return True

    async with watching(link_to(server, ask=yes)) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
    fp = server.host_key.get_fingerprint("sha256")
    assert [q.fingerprint for q in questions] == [fp]
    assert questions[0].key_type == "ssh-ed25519"
    known = asyncssh.read_known_hosts(str(server.known_hosts))
    assert known.match("127.0.0.1", "127.0.0.1", server.port)[0]


async def test_unknown_key_refused_changes_nothing(server: SshServer) -> None:
    server.known_hosts.write_text("")

    asked = 0

    async def no(q: HostKeyQuestion) -> bool:
        nonlocal asked
        asked += 1
        return False

    async with watching(link_to(server, ask=no)) as host:
        await wait_for(lambda: host.retry_held, 60, "the host down, not retried")
        assert host.status is HostStatus.DOWN
        assert "unknown host key" in host.reason and "not trusted" in host.reason
        connects = len(server.connects)
        await asyncio.sleep(1.0)  # several backoffs' worth: the operator is not asked again
        assert asked == 1 and len(server.connects) == connects
    assert server.known_hosts.read_text() == ""
    assert server.commands == []  # nothing ran on a host we did not trust


async def test_changed_key_is_refused_without_asking(server: SshServer) -> None:
    asked: list[HostKeyQuestion] = []

    async def yes(q: HostKeyQuestion) -> bool:
        asked.append(q)
        return True

    before = server.known_hosts.read_text()
    await server.replace_host_key()
    async with watching(link_to(server, ask=yes)) as host:
        await wait_for(lambda: host.retry_held, 60, "the host down, not retried")
        assert host.status is HostStatus.DOWN
        assert "HOST KEY CHANGED" in host.reason
        assert server.host_key.get_fingerprint("sha256") in host.reason
    assert asked == []
    assert server.known_hosts.read_text() == before
    assert server.commands == []


async def test_host_without_python_says_so(server: SshServer) -> None:
    async with watching(link_to(server, python="/nonexistent/python3")) as host:
        await down_with(host, "no Python 3.10+ on this host (/nonexistent/python3: not found)")
        assert "fix the python setting '/nonexistent/python3'" in host.reason


def stand_in_bin(tmp_path: Path, **scripts: str) -> Path:
    """A PATH directory with ``uname`` and ``cat`` (the system question) and ``scripts``
    (name -> shell script body): stand-ins for what a host has on its PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("uname", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


async def test_host_without_a_usable_python_says_what_it_has(
    server: SshServer, tmp_path: Path
) -> None:
    # The host's python3 is a 3.8 (a stand-in answering the probe as one does); nothing
    # else is on its PATH.
    old = {"v": [3, 8, 10], "impl": "cpython", "exe": "/usr/bin/python3.8", "os": "linux",
           "machine": "x86_64", "bits": 64, "mac": "", "libc": ["glibc", "2.31"],
           "tag": "cpython-38-linux-x86_64", "has": []}  # fmt: skip
    bin_dir = stand_in_bin(tmp_path, python3=f"echo '{json.dumps(old)}'")
    server.env["PATH"] = str(bin_dir)
    async with watching(link_to(server, python=None)) as host:
        await down_with(host, "no Python 3.10+ on this host")
    reason = host.reason
    assert "python3 is 3.8.10 (/usr/bin/python3.8), too old" in reason
    assert "python: not found" in reason and "python3.10: not found" in reason
    # The hint is this system's: the testbed machine's own /etc/os-release.
    release = await asyncio.to_thread(Path("/etc/os-release").read_text)
    system = interpreter.parse_os_release("Linux\n" + release)
    assert interpreter.install_hint(system) in reason
    assert "pip install" not in reason
    assert not (server.home / deploy.AGENT_DIR).exists()  # nothing pushed


async def test_installed_agent_of_this_protocol_is_preferred(server: SshServer) -> None:
    venv_bin = Path(sys.executable).parent
    need((venv_bin / "llmaos-agent").exists(), "no llmaos-agent script in the test venv")
    server.env["PATH"] = f"{venv_bin}:/usr/bin:/bin"
    async with watching(link_to(server, python=None, agent="auto")) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
    assert server.commands[-1] == "llmaos-agent attach"
    assert not (server.home / deploy.AGENT_DIR).exists()  # nothing pushed


async def test_installed_agent_of_another_protocol_is_passed_over(
    server: SshServer, tmp_path: Path
) -> None:
    bin_dir = stand_in_bin(tmp_path, **{"llmaos-agent": "echo 'llmaos-agent 0.0.1 protocol 99'"})
    server.env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    async with watching(link_to(server, agent="auto")) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
    digest = deploy.zipapp()[1]
    assert server.commands[-1] == deploy.posix_command(deploy.remote_path(digest), sys.executable)


async def test_old_pushed_zipapps_are_removed_and_nothing_else(server: SshServer) -> None:
    agent_dir = server.home / deploy.AGENT_DIR
    agent_dir.mkdir(parents=True)
    old = agent_dir / "llmaos-agent-00000000deadbeef.pyz"
    old.write_bytes(b"old")
    keep = agent_dir / "notes.txt"
    keep.write_text("mine")
    elsewhere = server.home / "precious"
    elsewhere.write_text("do not touch")
    link = agent_dir / "llmaos-agent-1111111111111111.pyz"
    link.symlink_to(elsewhere)  # named like ours, but a link: left, and its target too
    async with watching(link_to(server)) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
    current = deploy.remote_path(deploy.zipapp()[1]).rsplit("/", 1)[1]
    assert sorted(p.name for p in agent_dir.iterdir()) == sorted([current, keep.name, link.name])
    assert elsewhere.read_text() == "do not touch"


async def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=60, check=True
    )


async def test_forced_wheel_path_pushes_psutil_to_a_bare_python(
    server: SshServer, tmp_path: Path
) -> None:
    """``wheels = "push"`` on a Linux host: the wheel path macOS and Windows take, here."""
    bare = str(bare_python())
    cache = tmp_path / "wheels"
    link = link_to(server, python=bare, wheels="push")
    link.options.wheels = deploy.WheelSource(cache=cache)
    async with watching(link) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 120, "the bare host up")
        await wait_for(lambda: host.sample is not None, 30, "a sample")
    answer = (await run(bare, "-c", interpreter.PROBE)).stdout
    me = interpreter.parse_probe(bare, answer)
    assert "psutil" not in me.has  # bare: the psutil it gets is the pushed one
    wheel = wheels.select(cache, me.target())
    assert wheel is not None  # pip download filled the console's cache
    site = server.home / deploy.site_path(me)
    manifest = json.loads((site / deploy.SITE_MANIFEST).read_text())
    assert manifest["wheel"] == wheel.name
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((site / rel).read_bytes()).hexdigest() == digest, rel
    assert [p.name for p in site.parent.iterdir() if ".part" in p.name] == []
    # In the agent's own process, once its __main__ has run, psutil comes from there.
    pyz = server.home / deploy.remote_path(deploy.zipapp()[1])
    check = (
        "import runpy, sys\n"
        f"sys.argv = [{str(pyz)!r}, 'version']\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "import psutil\nprint(psutil.__file__, psutil.cpu_count())\n"
    )
    out = (await run(bare, "-c", check)).stdout
    where, cores = out.split()[-2:]
    assert where == str(site / "psutil" / "__init__.py") and int(cores) == os.cpu_count()

    # Next time the same wheel directory is kept, not pushed again.
    mtime = (site / deploy.SITE_MANIFEST).stat().st_mtime_ns
    async with watching(link) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 60, "the host up again")
    assert (site / deploy.SITE_MANIFEST).stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("garbage", "speaks garbage"),
        ("huge", "byte limit"),
        ("flood", "floods the link"),
        ("exit", "exited with code 7: scripted agent: giving up"),
    ],
)
async def test_hostile_agent_behind_ssh_turns_only_its_host_down(
    server: SshServer, tmp_path: Path, agent_home: Path, mode: str, reason: str
) -> None:
    good = SshServer(tmp_path / "good", env={"LLMAOS_AGENT_HOME": str(agent_home)})
    await good.start()
    good.trust()
    server.override = f"exec {sys.executable} {DATA / 'scripted_agent.py'} {mode}"
    rss = psutil.Process().memory_info().rss
    try:
        # The override answers every command, so the link runs the agent without setting
        # it up (deploy.prepare's questions would get the scripted agent too).
        bad_link = link_to(server, deploy_agent=False)
        async with watching(link_to(good)) as ok, watching(bad_link) as bad:
            await wait_for(lambda: ok.status is HostStatus.UP, 30, "the good host up")
            await down_with(bad, reason)
            seen = len(ok.history)
            await wait_for(lambda: len(ok.history) > seen + 1, 10, "the good host updating")
        # A 100 MB line or a flood is dropped as it arrives, never held.
        assert psutil.Process().memory_info().rss - rss < 60 * 2**20
    finally:
        await good.stop()


async def test_wrong_protocol_version_behind_ssh_is_refused(server: SshServer) -> None:
    server.override = f"exec {sys.executable} {DATA / 'scripted_agent.py'} ok --protocol 99"
    async with watching(link_to(server, deploy_agent=False)) as host:
        await down_with(host, "protocol 99")
