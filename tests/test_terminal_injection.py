# ruff: noqa: F811 - other_user is a fixture imported from tests/users.py, then requested
"""Terminal injection (issue 11): hostile host text never reaches the operator's terminal raw.

Against the real agent daemon: another local user's processes with hostile command lines
and names (an OSC that sets the window title, a CSI that clears the screen, a C1 CSI, a
bidi override, Rich markup, a zero-width space), and requests with hostile names, argv
and output, submitted through the real ``llmaos-tui submit``. Then:

- the CLI's text output holds none of the raw characters and shows their escapes;
- ``--json`` gives back the exact original strings, in ASCII;
- in the console (Textual's Pilot), what the screen draws (the compositor's output, as
  a terminal would receive it) holds the escapes and none of the raw characters, and the
  markup shows as written.

Also (issue 11 class 7): numbers on the command line out of the wire's bounds, or not
finite, are usage errors (exit 2), never a traceback; and a host whose request queue is
unavailable says so, in the CLI and on the requests screen.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.dialogs import ChoiceScreen, ConfirmScreen
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.requests import LogScreen, RequestsScreen
from llmaos_tui.widgets.process_table import ProcessTable
from tests.helpers import wait_for
from tests.users import User, other_user  # noqa: F401 - the fixture

SIZE = (250, 50)
TUI = str(Path(sys.executable).with_name("llmaos-tui"))
AGENT = str(Path(sys.executable).with_name("llmaos-agent"))

# (raw, as the operator must see it)
OSC = ("\x1b]2;PWNED\x07", "\\e]2;PWNED\\a")
CSI = ("\x1b[2J", "\\e[2J")
C1 = ("\x9b31m", "\\x9b31m")
BIDI = ("\u202eevil", "\\u202eevil")
MARKUP = ("[red]markup[/]", "[red]markup[/]")
ZW = ("zero\u200bwidth", "zero\\u200bwidth")
LONE = ("[/x]", "[/x]")  # as markup it raises: a str DataTable cell would crash the screen
HOSTILE = (OSC, CSI, C1, BIDI, MARKUP, ZW, LONE)
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u200b")
COMM = "\x1b]2;PWN\x07"
"""The hostile process's name: an OSC, short enough for the kernel's 15-byte comm."""


# ------------------------------------------------------------------------------ helpers


def screen_output(app: LlmaosApp) -> tuple[str, str]:
    """(the text on screen, the stream a terminal would receive) for the current screen,
    as ``export_screenshot`` renders it."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True,
        color_system="truecolor", record=True, legacy_windows=False, safe_box=False,
    )  # fmt: skip
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    stream = console.file.getvalue()  # type: ignore[attr-defined]
    return console.export_text(styles=False), stream


_OURS = re.compile(r"\x1b\[[0-9;]*[mH]|\x1b\[\?[0-9;]*[hl]")
"""What the renderer itself writes: colours (SGR) and cursor positions."""


async def shows_clean(app: LlmaosApp, *shown: str, timeout: float = 20.0) -> str:
    """:func:`assert_clean_screen` once the screen shows ``shown`` (a redraw may come a
    while after the state on a busy machine): what an operator sees when they look."""
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: all(x in screen_output(app)[0] for x in shown), timeout,
                       f"{shown} on screen")  # fmt: skip
    return assert_clean_screen(app, *shown)


def assert_clean_screen(app: LlmaosApp, *shown: str) -> str:
    text, stream = screen_output(app)
    for ch in RAW:
        assert ch not in text, f"{ch!r} on screen"
    leftover = _OURS.sub("", stream)
    for ch in RAW:
        assert ch not in leftover, f"{ch!r} in the terminal stream"
    for s in shown:
        assert s in text, f"{s!r} not on screen:\n{text}"
    return text


def tui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TUI, *args], env=env or dict(os.environ), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def assert_clean_output(out: str) -> None:
    for ch in (*RAW, "\x7f"):
        assert ch not in out, f"{ch!r} in the output: {out!r}"


@pytest.fixture
def cli_env(tmp_path: Path, daemon: subprocess.Popen[bytes]) -> dict[str, str]:
    """The CLI's environment: the test daemon's home (inherited), a private audit log."""
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def hostile_procs(other_user: User) -> Iterator[subprocess.Popen[bytes]]:
    """Another user's shell, waiting, with every hostile string in its command line and an
    OSC as its process name: run through a link of that name, which the kernel takes as
    the name from the first instant (so no sampling pass sees another)."""
    where = Path(tempfile.mkdtemp(prefix="llmx-"))
    where.chmod(0o755)  # ours, just made: the other user must reach the link
    link = where / COMM
    link.symlink_to("/bin/sh")
    p = other_user.popen(
        [str(link), "-c", "sleep 900; :", *(raw for raw, _ in HOSTILE)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd="/",
    )  # fmt: skip
    try:
        yield p
    finally:
        p.kill()
        p.wait(10)
        shutil.rmtree(where, ignore_errors=True)


def _app(tmp_path: Path) -> LlmaosApp:
    return LlmaosApp([LocalLink()], cursor_blink=False, audit=AuditLog(tmp_path / "audit.jsonl"))


# ----------------------------------------------------------------- another user's process


async def test_another_users_hostile_process_on_the_host_screen(
    daemon: subprocess.Popen[bytes],
    hostile_procs: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    pid = hostile_procs.pid
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        await wait_for(
            lambda: pid in host.procs and host.procs[pid].name == COMM,
            30, "the hostile process and its name in the table",
        )  # fmt: skip
        assert isinstance(app.screen, HostScreen)
        table = app.screen.query_one(ProcessTable)
        await pilot.press("slash", *str(pid), "enter")
        await wait_for(lambda: pid in table.shown_pids, 10, "the filtered row")
        table.move_cursor(row=table.shown_pids.index(pid), animate=False)
        await pilot.pause(0.2)
        await shows_clean(app, *(shown for _, shown in HOSTILE), "\\e]2;PWN\\a")

        # Its name in the dialogs: the signal picker, then the confirmation.
        await pilot.press("k")
        await wait_for(lambda: isinstance(app.screen, ChoiceScreen), 10, "the signal picker")
        await pilot.pause(0.1)
        await shows_clean(app, f"pid {pid} (\\e]2;PWN\\a)")
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, HostScreen), 10, "back")

        # A notice naming it: cleaned, and its markup shown, not obeyed.
        app.notify(f"{OSC[0]} {MARKUP[0]} {LONE[0]}", title=CSI[0])
        await pilot.pause(0.3)
        await shows_clean(app, OSC[1], CSI[1], MARKUP[1], LONE[1])


def test_agent_cli_sample_json_is_exact_and_ascii(
    hostile_procs: subprocess.Popen[bytes],
) -> None:
    out = subprocess.run(
        [AGENT, "sample", "--json", "--interval", "0.2"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert out.stdout.isascii(), "raw non-ASCII in sample --json"
    assert_clean_output(out.stdout)
    procs = json.loads(out.stdout)["sample"]["procs"]["upsert"]
    cmds = [p for p in procs if p[0] == hostile_procs.pid]
    assert cmds, "the hostile process is not in the sample"
    cmd = next(v for v in cmds[0] if isinstance(v, str) and "sleep 900" in v)
    assert all(raw in cmd for raw, _ in HOSTILE)


# ------------------------------------------------------------------------------- requests


def _submit(env: dict[str, str], *args: str) -> dict[str, object]:
    # No cores reserved: all three run at once, whatever the machine's size.
    out = tui("submit", "--json", "--cpus", "0", *args, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.isascii()
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


@pytest.fixture
def hostile_requests(cli_env: dict[str, str], tmp_path: Path) -> dict[str, dict[str, object]]:
    """Requests with hostile names, argv and output, through ``llmaos-tui submit``."""
    named = _submit(
        cli_env, "--name", CSI[0] + BIDI[0][:1] + LONE[0], "--priority", "5",
        "--", "/bin/sh", "-c", "sleep 120; :", *(raw for raw, _ in HOSTILE),
    )  # fmt: skip
    # A program whose own name is hostile (the default request name is the program's).
    prog = tmp_path / OSC[0]
    prog.symlink_to("/bin/sleep")
    unnamed = _submit(cli_env, "--", str(prog), "120")
    noisy = _submit(
        cli_env, "--name", "noisy", "--priority", "1000", "--",
        "/bin/sh", "-c",
        "printf 'out \\033]2;PWNED\\007 \\033[2J \\302\\233x \\342\\200\\256evil\\tend\\r\\n';"
        " sleep 120; :",
    )  # fmt: skip
    return {"named": named, "unnamed": unnamed, "noisy": noisy}


NAMED_SHOWN = CSI[1] + "\\u202e" + LONE[1]


def test_cli_requests_text_is_clean_and_json_is_exact(
    cli_env: dict[str, str], hostile_requests: dict[str, dict[str, object]]
) -> None:
    named, unnamed, noisy = (hostile_requests[k] for k in ("named", "unnamed", "noisy"))
    table = tui("requests", env=cli_env)
    assert table.returncode == 0, table.stderr
    assert_clean_output(table.stdout + table.stderr)
    assert NAMED_SHOWN in table.stdout
    assert "\\e]2;PWNED\\a" in table.stdout  # the program's own name

    doc = json.loads(tui("requests", "--json", env=cli_env).stdout)
    rows = {r["id"]: r for r in doc["hosts"]["local"]}
    assert rows[named["id"]]["name"] == CSI[0] + BIDI[0][:1] + LONE[0]
    assert rows[named["id"]]["argv"] == ["/bin/sh", "-c", "sleep 120; :"] + [
        raw for raw, _ in HOSTILE
    ]
    assert OSC[0] in rows[unnamed["id"]]["name"]
    assert doc["queues"]["local"] == {"available": True, "reason": None}

    # One request's output: escaped as text, exact as JSON.
    def logged() -> str:
        return tui("log", str(noisy["id"]), "--json", env=cli_env).stdout

    end = time.monotonic() + 60
    while "evil" not in logged() and time.monotonic() < end:
        time.sleep(0.2)  # poll interval
    chunks = [json.loads(line) for line in logged().splitlines()]
    data = "".join(c["data"] for c in chunks)
    assert data == "out \x1b]2;PWNED\x07 \x1b[2J \x9bx \u202eevil\tend\r\n"
    text = tui("log", str(noisy["id"]), env=cli_env).stdout
    assert_clean_output(text)
    assert text == "out \\e]2;PWNED\\a \\e[2J \\x9bx \\u202eevil\tend\\r\n"

    # What a change prints names the request too.
    prio = tui("prio", str(named["id"]), "7", env=cli_env)
    assert prio.returncode == 0, prio.stderr
    assert_clean_output(prio.stdout + prio.stderr)


async def test_requests_screen_and_log_view_are_clean(
    cli_env: dict[str, str], hostile_requests: dict[str, dict[str, object]], tmp_path: Path
) -> None:
    ids = {str(r["id"]) for r in hostile_requests.values()}
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        await wait_for(lambda: ids <= set(host.requests), 30, "the requests in the console")
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RequestsScreen)
        await wait_for(lambda: ids <= {r.id for _, r in screen._rows}, 15, "the rows")
        await pilot.pause(0.2)
        await shows_clean(app, NAMED_SHOWN, "\\e]2;PWNED\\a")

        # The noisy request is first (running, priority 1000): its log.
        await wait_for(
            lambda: screen._rows[0][1].id == hostile_requests["noisy"]["id"], 15, "noisy first"
        )
        await pilot.press("l")
        await wait_for(lambda: isinstance(app.screen, LogScreen), 10, "the log view")

        def shown() -> bool:
            return "evil" in screen_output(app)[0]

        await wait_for(shown, 30, "the request's output on screen")
        await shows_clean(app, "\\e]2;PWNED\\a \\e[2J \\x9bx \\u202eevil")

        # Cancelling names the request in the confirmation.
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, RequestsScreen), 10, "back")
        named = str(hostile_requests["named"]["id"])
        app.screen.query_one("#requests-table").move_cursor(  # type: ignore[attr-defined]
            row=[r.id for _, r in screen._rows].index(named), animate=False
        )
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), 10, "the confirmation")
        await pilot.pause(0.1)
        await shows_clean(app, f"Cancel {named} ({NAMED_SHOWN})")
        await pilot.press("n")


# --------------------------------------------------------------- a queue that is not there


@pytest.fixture
def queueless_daemon(agent_home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real daemon whose queue DB is garbage: it serves without a queue, and says why."""
    from tests.test_daemon import end, start_daemon
    from tests.test_requests import FAST

    state = agent_home / "state"
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state / "requests.sqlite").write_bytes(b"this is not a database \x1b[2J" * 200)
    proc = start_daemon(*FAST)
    try:
        yield proc
    finally:
        end(proc)


async def test_an_unavailable_queue_is_named(
    queueless_daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    doc = json.loads(tui("requests", "--json", env=env).stdout)
    queue = doc["queues"]["local"]
    if queue["available"]:
        pytest.skip("this daemon opened the garbage DB as a queue (no queue caps yet?)")
    assert queue["reason"]
    text = tui("requests", env=env)
    assert_clean_output(text.stdout + text.stderr)
    assert "local: queue unavailable: " in text.stdout

    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        await wait_for(lambda: host.hello is not None, 30, "the hello")
        await pilot.press("r")
        await wait_for(lambda: isinstance(app.screen, RequestsScreen), 10, "the requests")
        await pilot.pause(0.2)
        await shows_clean(app, "local: queue unavailable: ")


# ---------------------------------------------------------------- numbers on the command line


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--mem", "inf", "--", "true"],
        ["submit", "--mem", "1e400", "--", "true"],
        ["submit", "--mem", "nan", "--", "true"],
        ["submit", "--mem", "-1", "--", "true"],
        ["submit", "--mem", "99999999T", "--", "true"],
        ["submit", "--cpus", "1e9", "--", "true"],
        ["submit", "--cpus", "-3", "--", "true"],
        ["submit", "--cpus", "4097", "--", "true"],
        ["submit", "--gpus", "65", "--", "true"],
        ["submit", "--priority", "1e9", "--", "true"],
        ["submit", "--priority", "1001", "--", "true"],
        ["submit", "--priority", "-1001", "--", "true"],
        ["prio", "r1", "1000000000"],
        ["snapshot", "--json", "--timeout", "nan"],
        ["containers", "--timeout", "inf"],
        ["plan", "--settle", "nan"],
        ["plan", "--period", "-1"],
        ["submit", "--mem", "\x1b[2J", "--", "true"],
    ],
)
def test_bad_numbers_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    out = tui(*args, env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "usage:" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "\x1b" not in out.stderr


def test_the_bounds_themselves_are_accepted() -> None:
    from llmaos_tui.cli import parser

    args = parser().parse_args(
        ["submit", "--mem", "8G", "--cpus", "4096", "--gpus", "64", "--priority", "-1000",
         "--", "true"]
    )  # fmt: skip
    assert (args.mem, args.cpus, args.gpus, args.priority) == (8 << 30, 4096, 64, -1000)
    assert parser().parse_args(["plan", "--settle", "0"]).settle == 0.0


@pytest.mark.parametrize(
    "args",
    [
        ["daemon", "--interval", "nan"],
        ["daemon", "--interval", "inf"],
        ["daemon", "--proc-interval", "1e400"],
        ["daemon", "--aging", "-1"],
        ["daemon", "--slots-per-core", "1e9"],
        ["daemon", "--slots-per-core", "0"],
        ["sample", "--interval", "nan"],
    ],
)
def test_agent_bad_numbers_are_usage_errors(args: list[str], agent_home: Path) -> None:
    out = subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "usage:" in out.stderr and "Traceback" not in out.stderr, out.stderr


# ------------------------------------------------------------- an agent that lies in its hello

EVIL_AGENT = r"""
import json, os, sys, threading, time
recording, protocol, evil = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
lines = [ln for ln in open(recording, "rb").read().splitlines() if ln.strip()]
hello = json.loads(lines[0])
p = hello["params"]
p["protocol"] = protocol
p["agent_version"] = evil["version"]
p["host"].update(hostname=evil["hostname"], os=evil["os"], os_release=evil["release"])
caps = p["caps"]
caps.update(docker=False, docker_reason=evil["docker"], queue=False, queue_reason=evil["queue"])
def out(b):
    sys.stdout.buffer.write(b + b"\n"); sys.stdout.buffer.flush()
def answer():
    for raw in sys.stdin.buffer:
        msg = json.loads(raw)
        if msg.get("method") == "handshake":
            out(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {
                "protocol": msg["params"]["protocol"], "agent_version": "evil"}}).encode())
    os._exit(0)
out(json.dumps(hello).encode())
threading.Thread(target=answer, daemon=True).start()
gpu = json.dumps(evil["gpu"])[1:-1].encode()
for ln in lines[1:]:
    out(ln.replace(b"NVIDIA H100 80GB HBM3", gpu))
    time.sleep(0.02)  # paced as an agent's samples come, not in one burst
time.sleep(3600)  # then stays connected, as an agent does
"""
EVIL = {
    "version": OSC[0][:-1] + "\x07v",
    "hostname": CSI[0] + "host",
    "os": BIDI[0][:5],
    "release": MARKUP[0],
    "docker": "no engine " + OSC[0],
    "queue": "corrupt " + CSI[0] + LONE[0],
    "gpu": "H100 " + C1[0],
}


async def test_an_agents_hostile_hello_and_samples_on_every_screen(tmp_path: Path) -> None:
    """Host facts, engine and queue reasons and GPU names are the agent's text as well: an
    agent that is old, broken or replaced may send anything (SECURITY-NOTES)."""
    from llmaos_agent.protocol import PROTOCOL_VERSION
    from llmaos_tui.screens.containers import ContainersScreen
    from llmaos_tui.screens.fleet import FleetScreen
    from tests.helpers import RECORDING

    script = tmp_path / "evil_agent.py"
    script.write_text(EVIL_AGENT)
    argv = [sys.executable, str(script), str(RECORDING), str(PROTOCOL_VERSION), json.dumps(EVIL)]
    app = LlmaosApp(
        [LocalLink("evil", argv), LocalLink("evil2", argv)],
        cursor_blink=False, audit=AuditLog(tmp_path / "audit.jsonl"),
    )  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["evil"]
        await wait_for(lambda: host.sample is not None and bool(host.procs), 30, "samples")
        await pilot.pause(0.3)
        assert isinstance(app.screen, FleetScreen)
        await shows_clean(app, "\\u202eev")  # the OS column (8 wide)

        app.open_host("evil")
        await wait_for(lambda: isinstance(app.screen, HostScreen), 10, "the host screen")
        await pilot.pause(0.3)
        await shows_clean(app, "\\e[2Jhost", "\\e]2;PWNED\\av", MARKUP[1], "H100 \\x9b31m")

        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ContainersScreen), 10, "containers")
        await pilot.pause(0.2)
        await shows_clean(app, "no engine \\e]2;PWNED\\a")

        await pilot.press("escape", "r")
        await wait_for(lambda: isinstance(app.screen, RequestsScreen), 10, "requests")
        await pilot.pause(0.2)
        await shows_clean(app, "evil: queue unavailable: corrupt \\e[2J[/x]")


# ------------------------------------------------------------ the review, dialogs and audit

PLAN_NAME = CSI[0] + BIDI[0][:1] + LONE[0]


def _snapshot(path: Path) -> Path:
    """A ``snapshot --json`` document with a hostile request name that the planner moves."""
    doc = {"hosts": [
        {"name": "a", "status": "up", "cores": 2, "core_loads": [1.0, 1.0], "processes": [],
         "requests": [
             {"id": "r1", "name": PLAN_NAME, "state": "queued", "cpus": 1, "gpus": 0,
              "mem": 0, "priority": 0},
             {"id": "r2", "name": OSC[0], "state": "running", "cpus": 2, "gpus": 0,
              "mem": 0, "priority": 0}]},
        {"name": "b", "status": "up", "cores": 2, "core_loads": [0.0, 0.0], "processes": [],
         "requests": []},
    ]}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def test_cli_plan_text_is_clean_and_json_is_exact(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "snap.json")
    env = {**os.environ, "HOME": str(tmp_path)}
    text = tui("plan", "--snapshot", str(snap), env=env)
    assert text.returncode == 0, text.stderr
    assert_clean_output(text.stdout)
    assert CSI[1] + "\\u202e" + LONE[1] in text.stdout
    doc = json.loads(tui("plan", "--snapshot", str(snap), "--json", env=env).stdout)
    assert [m["name"] for m in doc["moves"]] == [PLAN_NAME]


async def test_review_trust_move_and_audit_screens_are_clean(tmp_path: Path) -> None:
    from llmaos_agent.protocol import Container
    from llmaos_tui.balance import plan_from_snapshot
    from llmaos_tui.fleet.replay import ReplayLink
    from llmaos_tui.screens.audit import AuditScreen
    from llmaos_tui.screens.move import MoveScreen
    from llmaos_tui.screens.plan import PlanScreen
    from llmaos_tui.screens.trust import TrustScreen
    from tests.helpers import RECORDING

    audit = AuditLog(tmp_path / "audit.jsonl")
    audit.append(action="proc.signal", host="rec", target=f"pid 1 ({OSC[0]})",
                 before=CSI[0], after=MARKUP[0], result=f"refused: {BIDI[0]}")  # fmt: skip
    plan = plan_from_snapshot(json.loads(_snapshot(tmp_path / "s.json").read_text()), level="hosts")
    app = LlmaosApp(
        [ReplayLink(RECORDING, name="rec"), ReplayLink(RECORDING, name="rec2")],
        cursor_blink=False, audit=audit,
    )  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        app.push_screen(PlanScreen(plan, f"host {CSI[0]}", None))
        await wait_for(lambda: isinstance(app.screen, PlanScreen), 10, "the review")
        await pilot.pause(0.2)
        await shows_clean(app, CSI[1] + "\\u202e" + LONE[1], f"host {CSI[1]}")
        app.pop_screen()

        app.push_screen(TrustScreen(OSC[0], CSI[0], "ssh-ed25519", "SHA256:abc", "/kh"))
        await wait_for(lambda: isinstance(app.screen, TrustScreen), 10, "the trust dialog")
        await pilot.pause(0.2)
        await shows_clean(app, f"{OSC[1]} ({CSI[1]})", "SHA256:abc")
        app.pop_screen()

        box = Container(
            id="c" * 64, name=OSC[0] + "box", image=MARKUP[0] + ":1", image_id="sha256:x",
            state="running", status=ZW[0], created=0.0,
        )  # fmt: skip
        app.push_screen(MoveScreen(app.fleet, "rec", box))
        await wait_for(lambda: isinstance(app.screen, MoveScreen), 10, "the move dialog")
        await pilot.pause(0.2)
        await shows_clean(app, f"Move {OSC[1]}box ({MARKUP[1]}:1, running)")
        app.pop_screen()

        await pilot.press("A")
        await wait_for(lambda: isinstance(app.screen, AuditScreen), 10, "the audit log")
        await pilot.pause(0.2)
        await shows_clean(app, f"pid 1 ({OSC[1]})", CSI[1], MARKUP[1], BIDI[1])
