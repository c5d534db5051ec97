"""``llmaos-tui`` as a command: ``snapshot --json``, ``-H``, hosts files and ~/.ssh/config.

Each test runs the real command in a subprocess with its own HOME, so ~/.ssh and
~/.config are the test's, never the user's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmaos_tui.fleet import wheels
from tests.bare import bare_python
from tests.helpers import RECORDING
from tests.sshserver import SshServer


async def llmaos_tui(*args: str, home: Path, timeout: float = 90) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }
    env.pop("SSH_AUTH_SOCK", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmaos_tui",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def hosts_of(stdout: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(stdout)
    return {h["name"]: h for h in doc["hosts"]}


@pytest.fixture
async def server(tmp_path: Path, agent_home: Path) -> AsyncIterator[SshServer]:
    srv = SshServer(tmp_path / "srv", env={"LLMAOS_AGENT_HOME": str(agent_home)})
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def ssh_home(tmp_path: Path, srv: SshServer, *, trust: bool = True) -> Path:
    """A HOME whose ~/.ssh/config names the server 'testbox', as a user would."""
    home = tmp_path / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    (ssh / "config").write_text(
        "Host testbox\n"
        "    HostName 127.0.0.1\n"
        f"    Port {srv.port}\n"
        "    User ops\n"
        f"    IdentityFile {srv.client_key_path}\n"
    )
    if trust:
        line = srv.host_key.export_public_key("openssh").decode().strip()
        (ssh / "known_hosts").write_text(f"[127.0.0.1]:{srv.port} {line}\n")
    cfg = home / ".config" / "llmaos-tui"
    cfg.mkdir(parents=True)
    # The interpreter that has psutil and msgspec (the testbed's "remote" Python).
    (cfg / "hosts.toml").write_text(
        f'[hosts.testbox]\nhost = "testbox"\npython = "{sys.executable}"\n'
    )
    return home


async def test_snapshot_json_of_this_machine(tmp_path: Path, agent_home: Path) -> None:
    code, out, err = await llmaos_tui("snapshot", "--json", home=tmp_path)
    assert code == 0, err
    local = hosts_of(out)["local"]
    assert local["status"] == "up"
    assert local["cores"] == os.cpu_count() == len(local["core_loads"])
    assert all(0.0 <= x <= 1.0 for x in local["core_loads"])
    assert local["process_count"] > 1 and isinstance(local["processes"], list)
    assert 0.0 <= local["beta_cpu"] <= 2.0


async def test_snapshot_json_of_a_recording(tmp_path: Path) -> None:
    code, out, err = await llmaos_tui(
        "snapshot", "--json", "--no-local", "--replay", f"rec={RECORDING}", home=tmp_path
    )
    assert code == 0, err
    rec = hosts_of(out)["rec"]
    assert rec["status"] == "up" and rec["cores"] == 2 and len(rec["gpu_loads"]) == 2


async def test_ssh_config_name_from_the_hosts_file(tmp_path: Path, server: SshServer) -> None:
    home = ssh_home(tmp_path, server)
    code, out, err = await llmaos_tui("snapshot", "--json", "--no-local", home=home)
    assert code == 0, err
    box = hosts_of(out)["testbox"]
    assert box["status"] == "up", box["reason"]
    assert box["target"] == "testbox"
    assert box["cores"] == os.cpu_count()
    assert box["process_count"] > 1


async def test_unknown_host_key_is_refused_headless(tmp_path: Path, server: SshServer) -> None:
    home = ssh_home(tmp_path, server, trust=False)
    code, out, err = await llmaos_tui("snapshot", "--json", "--no-local", home=home)
    assert code == 0, err
    box = hosts_of(out)["testbox"]
    assert box["status"] == "down"
    assert "unknown host key" in box["reason"] and "not trusted" in box["reason"]
    assert server.commands == []
    assert (home / ".ssh" / "known_hosts").read_text() == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-H", "gpu;reboot"], "gpu;reboot"),
        (["-H", "a:70000"], "70000"),
        (["--host=-oProxyCommand=x"], "ProxyCommand"),
        (["--replay", "x=a", "--replay", "x=b"], "two hosts named x"),
    ],
)
async def test_bad_targets_are_refused_before_anything_starts(
    tmp_path: Path, args: list[str], words: str
) -> None:
    code, out, err = await llmaos_tui("snapshot", "--json", "--no-local", *args, home=tmp_path)
    assert code == 2
    assert out == ""
    assert words in err


async def test_agent_wheels_fills_a_directory_for_other_platforms(tmp_path: Path) -> None:
    dest = tmp_path / "wheels"
    args = ("agent-wheels", "--platform", "win_amd64", "--platform", "macosx_11_0_arm64")
    code, out, err = await llmaos_tui(*args, "--python", "3.12", "--dir", str(dest), home=tmp_path)
    assert code == 0, err
    got = sorted(p.name for p in dest.iterdir())
    assert len(got) == 2 and all(n.startswith("psutil-") for n in got), got
    for target in ("win_amd64", "macosx_11_0_arm64"):
        t = wheels.target_of_tag(target, (3, 12))
        found = wheels.select(dest, t)
        assert found is not None and f"{t.key}: {found}" in out
        assert wheels.check_wheel(found)  # a wheel that passes the checks it will meet
    mtimes = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    code, _, err = await llmaos_tui(*args, "--python", "3.12", "--dir", str(dest), home=tmp_path)
    assert code == 0, err
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == mtimes  # kept, not fetched


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--platform", "win_amd64;rm -rf ~", "--python", "3.12"], "not a platform tag"),
        (["--platform", "sparc_v9", "--python", "3.12"], "unknown platform tag"),
        (["--platform", "win_amd64", "--python", "3.8"], "3.10 or newer"),
        (["--platform", "win_amd64", "--python", "three"], "not a Python version"),
    ],
)
async def test_agent_wheels_refuses_bad_input(tmp_path: Path, args: list[str], words: str) -> None:
    dest = tmp_path / "wheels"
    code, _, err = await llmaos_tui("agent-wheels", *args, "--dir", str(dest), home=tmp_path)
    assert code == 2 and words in err, err
    assert not dest.exists()


async def test_air_gapped_wheels_from_a_prepared_directory(
    tmp_path: Path, server: SshServer
) -> None:
    """A host that must get psutil pushed (wheels = "push" forces it on Linux), with wheels
    only from --agent-wheels DIR: down with the command that fills DIR, up once it ran."""
    home = ssh_home(tmp_path, server)
    bare = bare_python()
    (home / ".config" / "llmaos-tui" / "hosts.toml").write_text(
        f'[hosts.testbox]\nhost = "testbox"\npython = "{bare}"\nagent = "push"\nwheels = "push"\n'
    )
    offline = tmp_path / "offline"
    offline.mkdir()
    snap = ("snapshot", "--json", "--no-local", "--agent-wheels", str(offline))
    code, out, err = await llmaos_tui(*snap, home=home)
    assert code == 0, err
    box = hosts_of(out)["testbox"]
    assert box["status"] == "down" and "no psutil wheel for cp3" in box["reason"]
    command = box["reason"].split("`")[1]  # what the console says to run, where there is network
    assert command.startswith("llmaos-tui agent-wheels --platform ") and command.endswith(
        f"--dir {offline}"
    )
    code, _, err = await llmaos_tui(*command.split()[1:], home=home, timeout=300)
    assert code == 0, err
    code, out, err = await llmaos_tui(*snap, home=home)
    assert code == 0, err
    box = hosts_of(out)["testbox"]
    assert box["status"] == "up", box["reason"]
    assert box["cores"] == os.cpu_count()
    assert list(server.home.glob(".cache/llmaos-agent/site-*/psutil/__init__.py"))


async def test_agent_wheels_directory_must_exist(tmp_path: Path) -> None:
    code, _, err = await llmaos_tui(
        "snapshot", "--json", "-H", "h1", "--agent-wheels", str(tmp_path / "nope"), home=tmp_path
    )
    assert code == 2 and "no such directory" in err


# --- which hosts a command goes to ------------------------------------------------------


def links_of(tmp_path: Path, *argv: str) -> list[str]:
    """The hosts ``llmaos-tui ARGV`` would act on, with a hosts file of two hosts."""
    from llmaos_tui.cli import build_links, parse_args, scope_of

    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[hosts.a]\nhost = "10.0.0.1"\nuser = "ops"\n[hosts.b]\nhost = "10.0.0.2"\n')
    args = parse_args([*argv, "--hosts-file", str(hosts)])
    return [link.name for link in build_links(args, scope_of(args))]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        ([], ["local", "a", "b"]),  # the console: the whole fleet
        (["-H", "a"], ["local", "a", "b"]),  # -H a is the file's a, not a second host
        (["snapshot", "--json"], ["local", "a", "b"]),
        (["requests"], ["local"]),  # no -H: this machine
        (["cancel", "r1"], ["local"]),
        (["--no-local", "cancel", "r1"], ["a", "b"]),  # not this machine: the file's
        (["requests", "--no-local"], ["a", "b"]),
        (["requests", "-H", "b"], ["b"]),
        (["--no-local", "-H", "a", "snapshot", "--json"], ["a"]),
        (["-H", "a", "snapshot", "--json", "-H", "b"], ["a", "b"]),
        (["-H", "a", "plan"], ["a"]),
        (["--no-local", "containers"], ["a", "b"]),
    ],
)
def test_the_hosts_a_command_goes_to(tmp_path: Path, argv: list[str], names: list[str]) -> None:
    assert links_of(tmp_path, *argv) == names


def test_minus_h_name_takes_the_files_settings(tmp_path: Path) -> None:
    from llmaos_tui.cli import build_links, parse_args, scope_of
    from llmaos_tui.fleet.ssh import SshLink

    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[hosts.a]\nhost = "10.0.0.1"\nuser = "ops"\nport = 2201\n')
    args = parse_args(["--hosts-file", str(hosts), "-H", "a", "requests"])
    (link,) = build_links(args, scope_of(args))
    assert isinstance(link, SshLink) and link.target == "ops@10.0.0.1:2201"


def test_options_before_the_subcommand_count(tmp_path: Path) -> None:
    from llmaos_tui.cli import parse_args

    before = parse_args(["--no-local", "--known-hosts", "/k", "-H", "a", "snapshot", "--json"])
    after = parse_args(["snapshot", "--json", "--no-local", "--known-hosts", "/k", "-H", "a"])
    assert vars(before) == vars(after)
    assert before.no_local and before.hosts == ["a"] and before.known_hosts == Path("/k")
    both = parse_args(["-H", "a", "--replay", "x=f", "requests", "-H", "b", "--replay", "y=g"])
    assert both.hosts == ["a", "b"] and both.replay == ["x=f", "y=g"]


async def test_no_local_before_snapshot_leaves_this_machine_out(tmp_path: Path) -> None:
    code, out, err = await llmaos_tui(
        "--no-local", "--replay", f"rec={RECORDING}", "snapshot", "--json", home=tmp_path
    )
    assert code == 0, err
    assert list(hosts_of(out)) == ["rec"]


async def test_minus_h_picks_a_hosts_file_name(tmp_path: Path, server: SshServer) -> None:
    """``-H box`` where hosts.toml says box is ``testbox`` with its Python: connects there
    (without the file's settings "box" is no host at all)."""
    home = ssh_home(tmp_path, server)
    (home / ".config" / "llmaos-tui" / "hosts.toml").write_text(
        f'[hosts.box]\nhost = "testbox"\npython = "{sys.executable}"\n'
        '[hosts.other]\nhost = "10.255.255.1"\n'
    )
    code, out, err = await llmaos_tui("--no-local", "-H", "box", "snapshot", "--json", home=home)
    assert code == 0, err
    hosts = hosts_of(out)
    assert list(hosts) == ["box"]  # the file's other host is not asked
    assert hosts["box"]["status"] == "up", hosts["box"]["reason"]
    assert hosts["box"]["target"] == "testbox"
