"""Ids that become paths, directories and files another user could plant, and state files
gone bad: tried as a hostile local user would, against the real agent (its CLI, its
socket, its supervisor), a real second user (tests/users.py) and real SQLite files."""

# ruff: noqa: F811 - other_user is a fixture imported from tests/users.py, then requested
from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llmaos_agent import endpoint
from llmaos_agent.attach import NotOurDaemon, ours
from llmaos_agent.paths import UnsafeFile, UnsafePath, default_paths, inside, open_file
from llmaos_agent.protocol import INVALID_PARAMS, ProtocolError, decode
from llmaos_agent.requests.store import Store, StoreUnavailable
from llmaos_tui.ops.journal import JournalUnavailable, MoveJournal
from tests.conftest import need
from tests.test_daemon import agent, end, start_daemon
from tests.users import User, other_user  # noqa: F401 - the fixture

HOSTILE_IDS = [
    "..",
    ".",
    "../state",
    "a/b",
    "/etc",
    "x\n",
    "x\x00y",
    "-rf",
    ".hidden",
    "x" * 65,
    "",
]


class RawClient:
    """The daemon's socket with nothing of the console in between: what a hostile local
    process (of the same user) can send."""

    def __init__(self) -> None:
        self.sock = ours(endpoint.connect(default_paths()))
        self.buf = b""
        self.next_id = 0

    def call(self, method: str, params: object) -> dict[str, object]:
        self.next_id += 1
        rid = self.next_id
        line = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        self.sock.sendall(json.dumps(line).encode() + b"\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                msg = json.loads(raw)
                if msg.get("id") == rid:
                    return dict(msg)
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the daemon closed the connection"
            self.buf += chunk
        raise AssertionError(f"no answer to {method}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(agent_home: Path) -> Iterator[RawClient]:
    proc = start_daemon("--interval", "0.2")
    c = RawClient()
    try:
        yield c
    finally:
        c.close()
        end(proc)


def _naming(*words: str) -> list[int]:
    """The processes with any of ``words`` in their command line."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if any(w in line for w in words):
            found.append(p.pid)
    return found


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


# ------------------------------------------------------------------ ids that become paths


@pytest.mark.parametrize("rid", HOSTILE_IDS)
def test_a_hostile_request_id_is_refused_and_touches_nothing(
    raw: RawClient, agent_home: Path, rid: str
) -> None:
    ok = raw.call("requests.submit", {"argv": ["true"], "hold": True, "name": "mine"})
    assert "result" in ok
    before = _tree(agent_home / "state")
    for method, params in [
        ("requests.submit", {"argv": ["sleep", "60"], "id": rid, "hold": True}),
        ("requests.withdraw", {"id": rid}),
        ("requests.cancel", {"id": rid}),
        ("requests.log", {"id": rid}),
        ("requests.get", {"id": rid}),
    ]:
        answer = raw.call(method, params)
        assert answer["error"]["code"] == INVALID_PARAMS, (method, rid, answer)  # type: ignore[index]
    # The case: withdraw of ".." used to delete the whole state directory.
    assert (agent_home / "state" / "requests.sqlite").exists()
    assert _tree(agent_home / "state") >= before
    listed = raw.call("requests.list", {})
    assert [r["name"] for r in listed["result"]["requests"]] == ["mine"]  # type: ignore[index]


@pytest.mark.parametrize("rid", HOSTILE_IDS)
def test_the_console_refuses_a_hostile_id_from_an_agent(rid: str) -> None:
    info = {"id": rid, "name": "x", "argv": ["x"], "shell": False, "priority": 0, "cpus": 1,
            "gpus": 0, "share_gpu": False, "mem": 0, "state": "queued", "seq": 1,
            "submitted": 0.0}  # fmt: skip
    for params in ({"full": False, "upsert": [info]}, {"full": False, "upsert": [], "gone": [rid]}):
        line = json.dumps({"jsonrpc": "2.0", "method": "requests.changed", "params": params})
        with pytest.raises(ProtocolError):
            decode(line.encode(), notifications=True, requests=False)


@pytest.mark.parametrize("rid", HOSTILE_IDS)
def test_paths_are_built_from_ids_only_inside_their_directory(tmp_path: Path, rid: str) -> None:
    with pytest.raises(UnsafePath):
        inside(tmp_path, rid)
    journal = MoveJournal(tmp_path / "moves.sqlite")
    try:
        with pytest.raises(UnsafePath):
            journal.claim(rid)
    finally:
        journal.close()
    assert inside(tmp_path, "r0123abcd") == tmp_path / "r0123abcd"


# ---------------------------------------------------------- directories another user made


def _daemon_refused(env: dict[str, str]) -> str:
    """``llmaos-agent daemon`` with ``env``: it must refuse to start; its message."""
    r = subprocess.run(agent("daemon", "--interval", "0.2"), env=env, capture_output=True,
                       check=False, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr)
    return r.stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A shared, world-writable sticky directory like /tmp, of the test's own."""
    d = Path(tempfile.mkdtemp(prefix="llma-shared-", dir="/tmp"))
    os.chmod(d, 0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMAOS_", "XDG_"))}
    return {**env, **kw}


def test_a_home_another_user_made_in_a_shared_directory_is_refused(
    other_user: User, shared_dir: Path
) -> None:
    home = shared_dir / "home"
    assert other_user.run(["mkdir", "-p", str(home / "run"), str(home / "state")]).returncode == 0
    err = _daemon_refused(_env(LLMAOS_AGENT_HOME=str(home)))
    assert f"belongs to uid {other_user.uid}" in err
    assert sorted(p.name for p in home.rglob("*")) == ["run", "state"]  # nothing of ours in it


def test_a_symlink_another_user_planted_is_not_followed(other_user: User, shared_dir: Path) -> None:
    theirs = shared_dir / "theirs"
    other_user.run(["mkdir", "-p", str(theirs / "run"), str(theirs / "state")])
    other_user.run(["chmod", "-R", "777", str(theirs)])  # even wide open, it is not ours
    home = shared_dir / "home"
    assert other_user.run(["ln", "-s", str(theirs), str(home)]).returncode == 0
    err = _daemon_refused(_env(LLMAOS_AGENT_HOME=str(home)))
    assert "symbolic link" in err and f"uid {other_user.uid}" in err
    assert not list((theirs / "run").iterdir()) and not list((theirs / "state").iterdir())
    # One level down, too: our own home, with the runtime directory a link of theirs.
    own = shared_dir / "own"
    own.mkdir(mode=0o755)
    os.chmod(own, 0o777)  # an operator's slip: now others may plant entries in it
    other_user.run(["ln", "-s", str(theirs / "run"), str(own / "run")])
    err = _daemon_refused(_env(LLMAOS_AGENT_HOME=str(own)))
    assert "writable by others" in err
    assert not list((theirs / "run").iterdir())


def test_a_runtime_directory_of_another_user_is_refused(
    other_user: User, shared_dir: Path, tmp_path: Path
) -> None:
    xdg = shared_dir / "xdg"
    other_user.run(["mkdir", "-m", "700", str(xdg)])
    err = _daemon_refused(_env(XDG_RUNTIME_DIR=str(xdg), XDG_STATE_HOME=str(tmp_path / "s")))
    assert f"belongs to uid {other_user.uid}" in err


def test_what_exists_is_never_chmodded(shared_dir: Path) -> None:
    home = shared_dir / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    proc = start_daemon_env(_env(LLMAOS_AGENT_HOME=str(home)))
    try:
        assert (home / "run" / "agent.sock").exists()
        assert oct(home.stat().st_mode & 0o777) == oct(0o755)
        assert oct((home / "run").stat().st_mode & 0o777) == oct(0o700)  # made by us
        assert oct((home / "state").stat().st_mode & 0o777) == oct(0o700)
    finally:
        end(proc)


def start_daemon_env(env: dict[str, str]) -> subprocess.Popen[bytes]:
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return start_daemon("--interval", "0.2")
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_a_socket_served_by_another_user_is_refused(other_user: User, shared_dir: Path) -> None:
    """Root's attach (and so root's console) never talks to another user's fake agent."""
    d = shared_dir / "fake"
    other_user.run(["mkdir", "-m", "755", str(d)])
    path = d / "agent.sock"
    code = (
        "import os, socket\n"
        f"s = socket.socket(socket.AF_UNIX); s.bind({str(path)!r}); s.listen(4)\n"
        "os.chmod(s.getsockname(), 0o777); print('ready', flush=True)\n"
        "c, _ = s.accept(); print(repr(c.recv(100)), flush=True)\n"
    )
    # The test's own interpreter may sit where the other user cannot read (root's home).
    python = shutil.which("python3", path="/usr/bin:/bin")
    need(python is not None, "no system python3 for the other user to run")
    assert python is not None
    fake = other_user.popen([python, "-c", code], stdout=subprocess.PIPE)
    try:
        assert fake.stdout is not None
        assert fake.stdout.readline() == b"ready\n"
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        with pytest.raises(NotOurDaemon, match=f"uid {other_user.uid}"):
            ours(s)
        assert s.fileno() == -1  # closed: nothing was sent
        out, _ = fake.communicate(timeout=30)
        assert out.strip() == b"b''"  # the fake agent got nothing
    finally:
        fake.kill()
        fake.wait()


def test_the_supervisor_runs_no_spec_another_user_wrote(other_user: User, shared_dir: Path) -> None:
    d = shared_dir / "r0000000001"
    marker = shared_dir / "ran"
    other_user.run(["mkdir", "-m", "700", str(d)])
    spec = {"id": d.name, "attempt": 1, "argv": ["touch", str(marker)], "env": {}}
    other_user.run(["sh", "-c", f"cat > {d}/spec.json"], input=json.dumps(spec).encode())
    r = subprocess.run(
        [sys.executable, "-m", "llmaos_agent.requests.supervisor", str(d), "1"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert r.returncode == 3 and "not a private directory of ours" in r.stderr
    # A program it started (or a fork of it, not yet exec'd) would still name the spec's
    # directory or the marker; once none does, a run would have left the marker.
    deadline = time.monotonic() + 30
    while _naming(str(d), str(marker)):
        assert time.monotonic() < deadline, "a process of the refused spec lives on"
        time.sleep(0.05)  # poll interval
    assert not marker.exists()


# ------------------------------------------------------------------------ files, links


def test_the_agents_files_are_never_opened_through_a_link_or_when_not_ours(
    other_user: User, shared_dir: Path
) -> None:
    target = shared_dir / "target"
    target.write_text("root's\n")
    link = shared_dir / "audit.log"
    link.symlink_to(target)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        open_file(link, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assert target.read_text() == "root's\n"
    theirs = shared_dir / "theirs.log"
    other_user.run(["touch", str(theirs)])
    with pytest.raises(UnsafeFile, match=f"uid {other_user.uid}"):
        open_file(theirs, os.O_WRONLY | os.O_APPEND)
    wide = shared_dir / "wide.log"
    wide.write_text("")
    os.chmod(wide, 0o666)
    with pytest.raises(UnsafeFile, match="writable by others"):
        open_file(wide, os.O_WRONLY | os.O_APPEND)


# ------------------------------------------------------------------------ bad state files


def _damaged_dbs(tmp_path: Path, table_sql: str) -> Iterator[tuple[str, Path]]:
    zero = tmp_path / "zero.sqlite"
    zero.write_bytes(b"")
    yield "empty (zero bytes)", zero
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(8192))
    yield "not a SQLite database", garbage
    truncated = tmp_path / "truncated.sqlite"
    con = sqlite3.connect(truncated)
    con.execute(table_sql)
    con.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(2000)])
    con.commit()
    con.close()
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    yield "damaged", truncated


def test_a_damaged_queue_db_is_never_an_empty_queue(tmp_path: Path) -> None:
    for why, path in _damaged_dbs(tmp_path, "CREATE TABLE t (v TEXT)"):
        data = path.read_bytes()
        with pytest.raises(StoreUnavailable) as err:
            Store(path)
        assert why in str(err.value) and "To recover" in str(err.value)
        assert path.read_bytes() == data  # left as it was, so every start says the same
        assert (path.with_name(path.name + ".bad")).read_bytes() == data  # a copy aside
        with pytest.raises(StoreUnavailable):
            Store(path)  # and again on the next start: never afresh


def test_a_damaged_move_journal_is_never_an_empty_journal(tmp_path: Path) -> None:
    for why, path in _damaged_dbs(tmp_path, "CREATE TABLE t (v TEXT)"):
        data = path.read_bytes()
        with pytest.raises(JournalUnavailable, match="To recover") as err:
            MoveJournal(path)
        assert why in str(err.value)
        assert path.read_bytes() == data
    # A database that is fine but is not a journal (a wrong path given) is refused too.
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(JournalUnavailable, match="lacks the table entries"):
        MoveJournal(other)
