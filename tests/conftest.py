"""Shared fixtures: private agent homes, two Docker testbed hosts, and the rule that turns
skips into failures in CI."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis  # noqa: F401 - see below
import psutil
import pytest

# hypothesis imported here, at collection, not first by its plugin's end-of-run summary:
# pytest rewrites a plugin's modules as they are imported, and CPython 3.11.7's ast raises
# "SystemError: AST constructor recursion depth mismatch" when a finaliser (an asyncio
# subprocess transport's, after its loop closed) runs inside that parse. Seen ending runs
# of files that use no hypothesis with an error, after every test had passed.

if TYPE_CHECKING:
    from tests.sshserver import SshServer
    from tests.testbed import Testbed

REQUIRE_INTEGRATION = os.environ.get("LLMAOS_REQUIRE_INTEGRATION") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a real part (tmux, root, sshd, docker) is missing; in CI, fail instead."""
    if condition:
        return
    if REQUIRE_INTEGRATION:
        pytest.fail(f"LLMAOS_REQUIRE_INTEGRATION=1 but {reason}")
    pytest.skip(reason)


def need_docker_testbed(
    sdk_why: str = "container moves need the docker SDK (pip install 'llmaos-tui[docker]')",
) -> None:
    """What testbed hosts with their own dockerd need: root, docker.io, a static busybox for
    the test image, and the docker SDK to drive them (``need`` for each)."""
    from tests import images
    from tests.testbed import docker_available

    try:
        import docker  # noqa: F401
    except ImportError:
        need(False, sdk_why)
    reason = docker_available() or images.busybox_available()
    need(reason is None, reason or "")


@pytest.fixture
def collected_first() -> None:
    """Garbage of earlier tests collected before the test: for tests that parse source with
    ``ast``. Earlier tests leave asyncio subprocess transports whose loop has closed; their
    finaliser raises, and one run inside ``ast.parse`` makes CPython 3.11.7 fail the parse
    with "SystemError: AST constructor recursion depth mismatch" (seen in test_layering)."""
    gc.collect()


@pytest.fixture
def agent_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private LLMAOS_AGENT_HOME, short enough for a Unix socket path.

    Every daemon of that home is stopped after the test, whoever started it.
    """
    home = Path(tempfile.mkdtemp(prefix="llma-", dir="/tmp"))
    monkeypatch.setenv("LLMAOS_AGENT_HOME", str(home))
    try:
        yield home
    finally:
        stop_daemons(home)
        shutil.rmtree(home, ignore_errors=True)


def is_agent_daemon(proc: psutil.Process, home: Path | None = None) -> bool:
    """Whether ``proc`` is an ``llmaos-agent daemon`` (of ``home``, when given).

    Checked before any kill, so a pid reused by an unrelated process is left alone.
    """
    try:
        argv = proc.cmdline()
        if "daemon" not in argv[1:] or not any(_names_agent(a) for a in argv[:3]):
            return False
        if home is None:
            return True
        return proc.environ().get("LLMAOS_AGENT_HOME") == str(home)
    except (psutil.Error, OSError):
        return False


def _names_agent(arg: str) -> bool:
    base = os.path.basename(arg)
    return base in ("llmaos-agent", "llmaos_agent") or base.endswith(".pyz")


def agent_daemons(home: Path) -> list[psutil.Process]:
    """The live daemons whose LLMAOS_AGENT_HOME is ``home`` (zombies left out)."""
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.status() != psutil.STATUS_ZOMBIE and is_agent_daemon(p, home):
                found.append(p)
    return found


def lock_holder(home: Path) -> psutil.Process | None:
    """The daemon named in ``home``'s lock file, if that pid is still such a daemon."""
    try:
        pid = int((home / "run" / "daemon.lock").read_text().strip() or 0)
        proc = psutil.Process(pid) if pid > 0 else None
    except (OSError, ValueError, psutil.Error):
        return None
    return proc if proc is not None and is_agent_daemon(proc, home) else None


def stop_daemons(home: Path, timeout: float = 5.0) -> None:
    """Stop every daemon of ``home``: SIGTERM (it cleans up), then SIGKILL."""
    procs = agent_daemons(home)
    holder = lock_holder(home)
    if holder is not None and holder.pid not in {p.pid for p in procs}:
        procs.append(holder)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    alive = _wait_gone(procs, timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    _wait_gone(alive, timeout)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each has exited; a zombie counts as gone, since a daemon whose
    parent is gone waits for init to reap it. Returns those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.01)  # poll interval


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
async def server(tmp_path: Path, agent_home: Path) -> AsyncIterator[SshServer]:
    """An asyncssh server on 127.0.0.1 (no root needed) running the real agent in the
    test's private home, its host key trusted in its own known_hosts."""
    from tests.sshserver import SshServer

    srv = SshServer(tmp_path / "srv", env={"LLMAOS_AGENT_HOME": str(agent_home)})
    await srv.start()
    srv.trust()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    """A ``sleep`` child to renice, pin and signal; killed after the test."""
    p = subprocess.Popen(["sleep", "120"])
    try:
        yield psutil.Process(p.pid)
    finally:
        p.kill()
        p.wait()


@pytest.fixture
def hogs() -> Iterator[list[psutil.Process]]:
    """Two busy loops, both pinned to core 0: work for a balancer to spread.

    On a shared machine they sit in a CPU cgroup of their own with a high weight
    (:mod:`tests.cpushare`), so other jobs cannot squeeze them out of the cores they run on:
    they show up busy at once, and their load stays where they are pinned or moved. The
    tests built on them assert against the loads measured, never on an idle machine."""
    from tests.cpushare import weighted

    with weighted() as group:
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        try:
            ps = [psutil.Process(p.pid) for p in procs]
            for p in ps:
                p.cpu_affinity([0])
                if group is not None:
                    group.add(p.pid)
            yield ps
        finally:
            for child in procs:
                child.kill()
                child.wait()


@pytest.fixture
def daemon(agent_home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A fast-sampling agent daemon in the private home, with aging off; stopped after
    the test with every request it started (requests outlive daemons by design)."""
    from tests.test_daemon import end, start_daemon
    from tests.test_requests import FAST, _kill_leftovers

    proc = start_daemon(*FAST, "--aging", "3600")
    try:
        yield proc
    finally:
        end(proc)
        _kill_leftovers(agent_home)


# -------------------------------------------------------------- two hosts with Docker


@pytest.fixture(scope="module")
def docker_pair() -> Iterator[Testbed]:
    """Two testbed hosts, each with its own sshd and dockerd, for a whole test module; the
    busybox test image on the first. Skipped (failed under LLMAOS_REQUIRE_INTEGRATION=1)
    without root, docker, the docker SDK or a static busybox."""
    from tests import images
    from tests.testbed import Testbed

    need_docker_testbed()
    with Testbed(n=2, docker=True) as bed:
        images.import_image(bed.hosts[0].docker_socket)
        yield bed


@pytest.fixture
def engines(docker_pair: Testbed) -> Iterator[tuple[Any, Any]]:
    """Docker clients straight on each host's socket (the test's own eyes and hands), with
    no container or volume left from an earlier test."""
    import docker

    d1, d2 = (docker.DockerClient(base_url=f"unix://{h.docker_socket}") for h in docker_pair.hosts)
    for d in (d1, d2):
        for c in d.api.containers(all=True):
            d.api.remove_container(c["Id"], v=True, force=True)
        for v in d.api.volumes().get("Volumes") or []:
            d.api.remove_volume(v["Name"], force=True)
    try:
        yield d1, d2
    finally:
        d1.close()
        d2.close()


@pytest.fixture
def docker_home(docker_pair: Testbed, tmp_path: Path) -> Path:
    """A HOME whose hosts file names the two hosts, as an operator's would (for commands
    run with :func:`tests.helpers.run_tui`)."""
    home = tmp_path / "home"
    cfg = home / ".config" / "llmaos-tui"
    cfg.mkdir(parents=True)
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "known_hosts").write_text(docker_pair.known_hosts.read_text())
    (cfg / "hosts.toml").write_text(
        "".join(
            f'[hosts.{h.name}]\nhost = "{h.addr}"\nuser = "root"\n'
            f'identity = "{docker_pair.client_key}"\npython = "{sys.executable}"\n'
            for h in docker_pair.hosts
        )
    )
    return home
