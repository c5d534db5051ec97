"""Container moves between real hosts: testbed namespaces, each with its own sshd and dockerd,
the engines reached through SSH forwards of their sockets, as the console reaches them.

What a user checks after a move: the service answers on the target's address with its
data, the source is gone, the audit log says so; after a fault (the target's engine dies
mid-stream, the target container will not run, the console is killed mid-move), the
service runs on the source as before or the move is complete; a refused move changed
nothing and says why.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import SshOptions
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.container_move import MoveEngine, MoveResult, Progress, recover_all
from llmaos_tui.ops.docker_forward import Engine, local_engine, open_engine
from llmaos_tui.ops.journal import MoveJournal
from tests import images
from tests.conftest import need, need_docker_testbed
from tests.testbed import Testbed, TestHost

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
SETTLE = 1.0  # seconds the target must keep running to count as verified
STOP = 1  # busybox as PID 1 ignores SIGTERM: a short stop timeout, then SIGKILL


@pytest.fixture(scope="module")
def tb() -> Iterator[Testbed]:
    """Two hosts with sshd and dockerd for the whole module; the test image on host1 only."""
    need_docker_testbed()
    with Testbed(n=2, docker=True) as bed:
        images.import_image(bed.hosts[0].docker_socket)
        yield bed
        # Containers gone first: a dockerd stopping them waits out their stop timeouts.
        for h in bed.hosts:
            if h._dockerd is not None and h._dockerd.poll() is None:
                d = local_engine(h.name, h.docker_socket).client
                _clean(d, ())
                d.close()


@dataclass
class Env:
    tb: Testbed
    h1: TestHost
    h2: TestHost
    d1: Any  # docker clients straight on each host's socket: the test's own eyes and hands
    d2: Any
    journal: MoveJournal
    audit: AuditLog
    options: SshOptions
    tmp: Path
    opened: list[Engine]
    cleanups: list[Callable[[], object]]

    def spec(self, h: TestHost) -> HostSpec:
        return HostSpec(name=h.name, host=h.addr, user="root", port=h.port)

    def engine(self, h: TestHost) -> Engine:
        """The host's engine through its SSH connection, as the console opens it."""
        eng = open_engine(self.spec(h), self.options)
        self.opened.append(eng)
        return eng

    def mover(self, **kw: Any) -> MoveEngine:
        kw.setdefault("settle", SETTLE)
        kw.setdefault("stop_timeout", STOP)
        return MoveEngine(
            self.engine(self.h1), self.engine(self.h2), self.journal, self.audit, **kw
        )

    def state(self) -> dict[str, Any]:
        """Everything a move could change, on both hosts."""
        out: dict[str, Any] = {}
        for name, d in (("h1", self.d1), ("h2", self.d2)):
            out[name] = {
                "containers": sorted(
                    (c["Names"][0], c["Id"], c["State"]) for c in d.api.containers(all=True)
                ),
                "volumes": sorted(v["Name"] for v in d.api.volumes().get("Volumes") or []),
                "images": sorted(i["Id"] for i in d.api.images(all=True)),
            }
        return out


def _clean(d: Any, keep_images: tuple[str, ...]) -> None:
    for c in d.api.containers(all=True):
        d.api.remove_container(c["Id"], v=True, force=True)
    for v in d.api.volumes().get("Volumes") or []:
        d.api.remove_volume(v["Name"], force=True)
    for i in d.api.images():
        if not set(i.get("RepoTags") or []) & set(keep_images):
            d.api.remove_image(i["Id"], force=True)


@pytest.fixture
def env(tb: Testbed, tmp_path: Path) -> Iterator[Env]:
    h1, h2 = tb.hosts
    for h in (h1, h2):  # a test may have left a dockerd down
        if h._dockerd is None or h._dockerd.poll() is not None:
            tb.start_dockerd(h)
    d1 = local_engine(h1.name, h1.docker_socket).client
    d2 = local_engine(h2.name, h2.docker_socket).client
    _clean(d1, (images.TEST_TAG,))
    _clean(d2, ())
    opts = SshOptions(
        known_hosts=tb.known_hosts,
        client_keys=[str(tb.client_key)],
        config=[],
        use_agent=False,
        deploy=False,
    )
    e = Env(
        tb,
        h1,
        h2,
        d1,
        d2,
        MoveJournal(tmp_path / "moves.sqlite"),
        AuditLog(tmp_path / "audit.jsonl"),
        opts,
        tmp_path,
        [],
        [],
    )
    try:
        yield e
    finally:
        for undo in e.cleanups:
            undo()
        for eng in e.opened:
            eng.close()
        e.journal.close()
        d1.close()
        d2.close()


def _run(d: Any, name: str, cmd: list[str], **kw: Any) -> Any:
    return d.containers.run(images.TEST_TAG, cmd, name=name, detach=True, **kw)


def _http(addr: str, port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{addr}:{port}{path}", timeout=5) as r:
        body: bytes = r.read()
        return body


def _running(d: Any, name: str) -> bool:
    found = d.api.containers(filters={"name": f"^/{name}$"})
    return bool(found) and found[0]["State"] == "running"


def _exec(d: Any, name: str, cmd: list[str]) -> str:
    code, out = d.containers.get(name).exec_run(cmd)
    assert code == 0, out
    return str(out.decode())


# ---------------------------------------------------------------------------------------------
# Moves that work


def test_move_with_volume_and_port(env: Env) -> None:
    web = _run(
        env.d1,
        "web",
        ["httpd", "-f", "-p", "80", "-h", "/data"],
        volumes={"webdata": {"bind": "/data", "mode": "rw"}},
        ports={"80/tcp": 18081},
        environment={"GREETING": "hello"},
        labels={"app": "web"},
        restart_policy={"Name": "unless-stopped"},
    )
    _exec(env.d1, "web", ["sh", "-c", "echo hello from the volume > /data/hello.txt"])
    _exec(env.d1, "web", ["dd", "if=/dev/urandom", "of=/data/big.bin", "bs=1024", "count=2048"])
    digest = _exec(env.d1, "web", ["md5sum", "/data/big.bin"])
    assert _http(env.h1.addr, 18081, "/hello.txt") == b"hello from the volume\n"

    events: list[Progress] = []
    res = env.mover().move("web", progress=events.append)

    assert res.outcome == "moved", res.message
    assert _http(env.h2.addr, 18081, "/hello.txt") == b"hello from the volume\n"
    assert _exec(env.d2, "web", ["md5sum", "/data/big.bin"]) == digest
    moved = env.d2.containers.get("web").attrs
    assert "GREETING=hello" in moved["Config"]["Env"]
    assert moved["Config"]["Labels"] == {"app": "web"}
    assert moved["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    # The source is gone, its data with it (the target has it now).
    assert not env.d1.api.containers(all=True, filters={"name": "^/web$"})
    assert web.id not in {c["Id"] for c in env.d1.api.containers(all=True)}
    assert "webdata" not in {v["Name"] for v in env.d1.api.volumes()["Volumes"] or []}
    # The target lacked the image: it was streamed, and the volume copied, with progress.
    assert res.image_bytes > 0 and res.volume_bytes > 2 * 1024 * 1024
    assert any(e.step == "image" and e.state == "bytes" for e in events)
    assert any(e.step == "copy" and e.state == "bytes" for e in events)
    done = [e.step for e in events if e.state == "done"]
    assert done == ["image", "create", "stop", "copy", "start", "verify", "finish"]
    # The audit log and the journal have it.
    (line,) = env.audit.read()
    assert line["action"] == "container.move" and line["result"] == "ok"
    assert (line["host"], line["to_host"], line["target"]) == ("host1", "host2", "web")
    assert line["before"]["id"] == web.id and line["after"]["host"] == "host2"
    assert env.journal.unfinished() == []
    assert env.journal.get(res.move_id or "").outcome == {"outcome": "moved", "new_id": res.new_id}


def test_container_on_two_networks_arrives_on_both(env: Env) -> None:
    nets = ("front", "back")
    for d in (env.d1, env.d2):
        for n in nets:
            d.api.create_network(n, driver="bridge")
    try:
        c = env.d1.containers.create(
            images.TEST_TAG, ["sleep", "1000"], name="multi", network="front"
        )
        env.d1.api.connect_container_to_network(c.id, "back", aliases=["db-side"])
        c.start()

        res = env.mover().move("multi")

        assert res.outcome == "moved", res.message
        moved = env.d2.api.inspect_container("multi")
        assert moved["State"]["Running"]
        on = moved["NetworkSettings"]["Networks"]
        assert set(on) == set(nets)
        assert "db-side" in (on["back"]["Aliases"] or [])
        assert moved["HostConfig"]["NetworkMode"] == "front"
    finally:
        for d in (env.d1, env.d2):
            _clean(d, (images.TEST_TAG,))
            for n in nets:
                d.api.remove_network(n)


def test_image_present_is_not_streamed_and_source_kept(env: Env) -> None:
    images.copy_image(env.h1.docker_socket, env.h2.docker_socket)
    src = _run(env.d1, "worker", ["sleep", "1000"], restart_policy={"Name": "always"})
    events: list[Progress] = []

    res = env.mover().move("worker", keep_source=True, progress=events.append)

    assert res.outcome == "moved", res.message
    assert res.image_bytes == 0
    assert not any(e.step == "image" and e.state == "bytes" for e in events)
    assert any(e.step == "image" and e.state == "skip" for e in events)
    assert _running(env.d2, "worker")
    # Kept: stopped, renamed so the name is free, and no engine restart brings it back.
    kept = env.d1.api.inspect_container(src.id)
    assert not kept["State"]["Running"]
    assert kept["Name"].startswith("/worker.moved-")
    assert kept["HostConfig"]["RestartPolicy"]["Name"] == "no"


def test_commit_carries_the_containers_files(env: Env) -> None:
    _run(env.d1, "notes", ["sleep", "1000"])
    _exec(env.d1, "notes", ["sh", "-c", "echo written inside > /etc/moved-note"])

    res = env.mover().move("notes", commit=True)

    assert res.outcome == "moved", res.message
    assert _exec(env.d2, "notes", ["cat", "/etc/moved-note"]) == "written inside\n"
    # The commit's tag is not left behind on the source.
    tags = [t for i in env.d1.api.images() for t in i.get("RepoTags") or []]
    assert not [t for t in tags if t.startswith("llmaos-moved/")]


def test_dry_run_changes_nothing(env: Env) -> None:
    _run(env.d1, "calm", ["sleep", "1000"], volumes={"calmdata": {"bind": "/data"}})
    before = env.state()

    res = env.mover().move("calm", dry_run=True)

    assert res.outcome == "dry_run" and res.plan is not None
    assert res.plan.stream_image and res.plan.volumes[0]["name"] == "calmdata"
    assert env.state() == before
    assert env.journal.recent() == [] and env.audit.read() == []


# ---------------------------------------------------------------------------------------------
# Faults: after each, the source runs as before, or the move is complete and verified


def test_target_engine_killed_during_image_stream(env: Env) -> None:
    _run(env.d1, "svc", ["sleep", "1000"], volumes={"svcdata": {"bind": "/data"}})
    killed: list[int] = []

    def kill_target(p: Progress) -> None:
        if p.step == "image" and p.state == "bytes" and not killed:
            env.tb.kill_dockerd(env.h2)
            killed.append(p.bytes)

    res = env.mover().move("svc", progress=kill_target)

    assert killed, "the image was not streamed"
    assert res.outcome == "rolled_back", res.message
    assert _running(env.d1, "svc")  # never stopped: the stream comes before the stop
    # The target's engine comes back; the console's next start clears what may be left.
    env.tb.start_dockerd(env.h2)
    (again,) = recover_all(env.journal, env.audit, lambda name: env.engine(env.tb.host(name)))
    assert again.outcome == "rolled_back", again.message
    assert env.journal.unfinished() == []
    assert not env.d2.api.containers(all=True) and not env.d2.api.images()
    assert _running(env.d1, "svc")


def test_target_container_that_will_not_run_rolls_back(env: Env) -> None:
    # The same bind-mounted directory on both hosts, the flag the service needs only on one.
    for h in (env.h1, env.h2):
        env.tb.exec(h, ["mkdir", "-p", "/run/llmaos-cfg"])
    env.tb.exec(env.h1, ["touch", "/run/llmaos-cfg/ok"])
    src = _run(
        env.d1,
        "picky",
        ["sh", "-c", "test -f /cfg/ok || exit 3; exec sleep 1000"],
        volumes={"/run/llmaos-cfg": {"bind": "/cfg"}, "pickydata": {"bind": "/data"}},
    )
    before = env.state()

    res = env.mover().move("picky")

    assert res.outcome == "rolled_back"
    assert "exit code 3" in res.message
    assert _running(env.d1, "picky")
    assert env.d1.api.inspect_container("picky")["Id"] == src.id
    after = env.state()
    assert after["h2"] == before["h2"], "the target's leftovers were not removed"
    assert after["h1"]["volumes"] == before["h1"]["volumes"]
    assert env.journal.unfinished() == []
    (line,) = env.audit.read()
    assert line["result"].startswith("rolled back") and "exit code 3" in line["result"]


CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import SshOptions
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.container_move import MoveEngine
from llmaos_tui.ops.docker_forward import open_engine
from llmaos_tui.ops.journal import MoveJournal

a = json.loads(sys.argv[1])
opts = SshOptions(known_hosts=Path(a["known_hosts"]), client_keys=[a["key"]], config=[],
                  use_agent=False, deploy=False)
src, dst = open_engine(HostSpec(**a["src"]), opts), open_engine(HostSpec(**a["dst"]), opts)
# A killed console cannot remove its forwards' socket dirs: the test does.
print(json.dumps([os.path.dirname(e.local_socket) for e in (src, dst)]), flush=True)

def progress(p):
    if p.step == a["kill_at"] and p.state == "start":
        os.kill(os.getpid(), signal.SIGKILL)  # the console dies, mid-move

engine = MoveEngine(src, dst, MoveJournal(a["journal"]), AuditLog(a["audit"]),
                    settle=a["settle"], stop_timeout=a["stop"])
engine.move(a["container"], progress=progress)
sys.exit(3)
"""


@pytest.mark.parametrize(("kill_at", "end"), [("copy", "rolled_back"), ("verify", "moved")])
def test_console_killed_mid_move_is_finished_on_restart(env: Env, kill_at: str, end: str) -> None:
    _run(env.d1, "job", ["sleep", "1000"], volumes={"jobdata": {"bind": "/data"}})
    _exec(env.d1, "job", ["sh", "-c", "echo precious > /data/state"])
    spec = {"name": "", "host": "", "user": "root", "port": 22}
    args = {
        "src": {**spec, "name": env.h1.name, "host": env.h1.addr},
        "dst": {**spec, "name": env.h2.name, "host": env.h2.addr},
        "known_hosts": str(env.tb.known_hosts),
        "key": str(env.tb.client_key),
        "journal": str(env.journal.path),
        "audit": str(env.audit.path),
        "container": "job",
        "kill_at": kill_at,
        "settle": SETTLE,
        "stop": STOP,
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for d in json.loads(child.stdout.splitlines()[0]) if child.stdout else []:
        shutil.rmtree(d, ignore_errors=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    # The console died after the source stopped: the service is down on both hosts now.
    assert not _running(env.d1, "job")
    (open_move,) = env.journal.unfinished()
    assert open_move.started("stop")

    (res,) = recover_all(
        env.journal, env.audit, lambda name: env.engine(env.tb.host(name)), settle=SETTLE
    )

    assert res.outcome == end, res.message
    assert env.journal.unfinished() == []
    if end == "moved":
        assert _running(env.d2, "job")
        assert _exec(env.d2, "job", ["cat", "/data/state"]) == "precious\n"
        assert not env.d1.api.containers(all=True)
    else:
        assert _running(env.d1, "job")
        assert _exec(env.d1, "job", ["cat", "/data/state"]) == "precious\n"
        assert not env.d2.api.containers(all=True)
        assert not env.d2.api.volumes()["Volumes"]


# ---------------------------------------------------------------------------------------------
# Refusals: a clear message, and nothing changed


def _setup_name_clash(env: Env) -> dict[str, Any]:
    images.copy_image(env.h1.docker_socket, env.h2.docker_socket)
    _run(env.d2, "app", ["sleep", "1000"])
    return {}


def _setup_port_clash(env: Env) -> dict[str, Any]:
    images.copy_image(env.h1.docker_socket, env.h2.docker_socket)
    _run(env.d2, "other", ["httpd", "-f", "-p", "80"], ports={"80/tcp": 18090})
    return {"ports": {"80/tcp": 18090}}


LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 18092))
s.listen()
print("ready", flush=True)
time.sleep(120)
"""


def _setup_host_port_clash(env: Env) -> dict[str, Any]:
    # A process of host2 itself (no container) listens on the port the move would publish.
    p = subprocess.Popen(
        [*env.tb._nsenter(env.h2), sys.executable, "-c", LISTENER],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def stop() -> None:
        p.kill()
        p.wait()

    env.cleanups.append(stop)
    return {"ports": {"80/tcp": 18092}}


def _setup_bind(env: Env) -> dict[str, Any]:
    env.tb.exec(env.h1, ["mkdir", "-p", "/run/only-on-host1"])
    return {"volumes": {"/run/only-on-host1": {"bind": "/cfg"}}}


def _setup_gpu(env: Env) -> dict[str, Any]:
    import docker

    # Created, not started: this testbed has no GPU to start it with either.
    return {
        "device_requests": [docker.types.DeviceRequest(count=1, capabilities=[["gpu"]])],
        "_create_only": True,
    }


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        (_setup_name_clash, "name-clash", "host2 already has a container named app"),
        (_setup_port_clash, "port-clash", "port 18090/tcp is already published on host2 by other"),
        (
            _setup_host_port_clash,
            "port-clash",
            "port 18092/tcp is in use on host2 by a process of the host",
        ),
        (
            _setup_bind,
            "bind-mount",
            "bind mount /run/only-on-host1 (-> /cfg) does not exist on host2",
        ),
        (_setup_gpu, "gpu", "asks for GPUs (any driver, 1) and host2 has none"),
    ],
    ids=["name", "port", "host-port", "bind", "gpu"],
)
def test_refusals_change_nothing(
    env: Env, setup: Callable[[Env], dict[str, Any]], code: str, words: str
) -> None:
    kw = setup(env)
    if kw.pop("_create_only", False):
        env.d1.containers.create(images.TEST_TAG, ["sleep", "1000"], name="app", **kw)
    else:
        _run(env.d1, "app", ["sleep", "1000"], **kw)
    before = env.state()

    res = env.mover().move("app")

    assert res.outcome == "refused"
    assert [r.code for r in res.refusals] == [code], res.refusals
    assert words in res.refusals[0].message
    assert env.state() == before
    assert env.journal.recent() == []
    (line,) = env.audit.read()
    assert line["result"].startswith("refused: ") and words in line["result"]


def test_read_only_refuses(env: Env) -> None:
    _run(env.d1, "app", ["sleep", "1000"])
    before = env.state()
    mover = env.mover(read_only=True)

    assert [r.code for r in mover.precheck("app")] == ["read-only"]
    res = mover.move("app")

    assert res.outcome == "refused" and "read-only" in res.message
    assert env.state() == before and env.journal.recent() == []


def test_a_move_the_audit_log_cannot_record_is_not_begun(env: Env) -> None:
    """Audit fails closed: with the console's log full or immutable, nothing is stopped,
    copied or journaled, and the container keeps running where it was."""
    _run(env.d1, "app", ["sleep", "1000"])
    before = env.state()
    env.audit.path.write_text("")
    attr = subprocess.run(["chattr", "+i", str(env.audit.path)], capture_output=True, check=False)
    need(attr.returncode == 0, f"chattr +i is not available here: {attr.stderr!r}")
    try:
        res = env.mover().move("app")
    finally:
        subprocess.run(["chattr", "-i", str(env.audit.path)], check=False)
    assert res.outcome == "refused" and "not started" in res.message and "audit" in res.message
    assert env.state() == before and env.journal.recent() == []
    assert _running(env.d1, "app")


def test_results_are_json() -> None:
    """What ``move --json`` prints: a result that json can write."""
    res = MoveResult("refused", "x", "host1", "host2", message="m")
    assert json.loads(json.dumps(res.as_dict()))["outcome"] == "refused"


# ---------------------------------------------------------------------------------------------
# The forward itself, and the journal's hold on a running move


async def test_forward_on_the_consoles_own_loop(env: Env) -> None:
    """The console's path: its loop holds the connection, the SDK runs in a worker thread."""
    import asyncio

    from llmaos_tui.fleet.ssh import connect
    from llmaos_tui.ops.docker_forward import forward_engine

    conn = await connect(env.spec(env.h1), env.options)
    eng = await forward_engine(conn, env.h1.name, owns_conn=True)
    try:
        assert eng.remote_socket == "/var/run/docker.sock"
        assert oct(Path(eng.local_socket).parent.stat().st_mode & 0o777) == "0o700"
        assert await asyncio.to_thread(eng.client.ping)
        assert await asyncio.to_thread(eng.path_exists, "/etc/hostname")
        assert not await asyncio.to_thread(eng.path_exists, "/no/such/path")
        with pytest.raises(RuntimeError, match="off the event loop"):
            eng.path_exists("/etc")
    finally:
        await eng.aclose()
    assert not Path(eng.local_socket).parent.exists()


def test_no_engine_on_the_host_says_where_it_looked(env: Env) -> None:
    from llmaos_tui.ops.docker_forward import EngineUnavailable

    env.tb.kill_dockerd(env.h2)
    with pytest.raises(
        EngineUnavailable, match=r"no Docker engine answers: /var/run/docker\.sock"
    ) as exc_info:
        env.engine(env.h2)
    assert "/run/user/0/docker.sock" in str(exc_info.value)  # the rootless place, tried too


def test_a_move_running_elsewhere_is_not_recovered(tmp_path: Path) -> None:
    mine = MoveJournal(tmp_path / "moves.sqlite")
    other = MoveJournal(tmp_path / "moves.sqlite")  # another console on the same state dir
    move_id = mine.begin({"kind": "container.move"})
    assert other.unfinished() == []
    assert [r.move_id for r in other.unfinished(include_busy=True)] == [move_id]
    assert not other.claim(move_id)
    mine.close()  # that console ends (or dies): the move is free to recover
    assert [r.move_id for r in other.unfinished()] == [move_id]
    assert other.claim(move_id)
    other.close()
