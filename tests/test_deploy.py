"""The agent zipapp and the remote command lines, for POSIX shells and cmd.exe."""

from __future__ import annotations

import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llmaos_agent import __version__
from llmaos_tui.fleet import deploy

PATH = ".cache/llmaos-agent/llmaos-agent-0123456789abcdef.pyz"


def test_zipapp_is_reproducible_and_named_by_its_hash(tmp_path: Path) -> None:
    data, digest = deploy.zipapp()
    deploy.zipapp.cache_clear()
    again, digest2 = deploy.zipapp()
    assert data == again and digest == digest2 and len(digest) == 16
    pyz = tmp_path / "a.pyz"
    pyz.write_bytes(data)
    names = zipfile.ZipFile(pyz).namelist()
    assert "__main__.py" in names and "llmaos_agent/protocol.py" in names
    assert not [n for n in names if "llmaos_tui" in n or "__pycache__" in n]


def test_zipapp_runs_the_agent(tmp_path: Path) -> None:
    pyz = tmp_path / "a.pyz"
    pyz.write_bytes(deploy.zipapp()[0])
    out = subprocess.run(
        [sys.executable, str(pyz), "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert __version__ in out.stdout


def test_zipapp_says_what_to_install_where_psutil_is_missing(tmp_path: Path) -> None:
    pyz = tmp_path / "a.pyz"
    pyz.write_bytes(deploy.zipapp()[0])
    # -S: without site-packages this interpreter has neither psutil nor msgspec.
    out = subprocess.run(
        [sys.executable, "-S", str(pyz), "attach"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert out.returncode == deploy.EXIT_MISSING_MODULE
    assert "psutil and msgspec missing" in out.stderr
    assert f"{sys.executable} -m pip install --user psutil msgspec" in out.stderr


def test_posix_command_quotes_every_word() -> None:
    assert deploy.posix_command(PATH) == f"exec python3 {PATH} attach"
    # The interpreter is a command line in shell syntax: quotes keep a spaced path whole.
    cmd = deploy.posix_command(PATH, "'/opt/my python/bin/python3' -u")
    assert shlex.split(cmd) == ["exec", "/opt/my python/bin/python3", "-u", PATH, "attach"]
    hostile = deploy.posix_command(PATH, "python3; rm -rf ~")
    assert shlex.split(hostile) == ["exec", "python3;", "rm", "-rf", "~", PATH, "attach"]
    assert "'python3;'" in hostile  # the ; is quoted: one word, not a second command


def test_posix_command_runs_in_a_real_shell(tmp_path: Path) -> None:
    pyz = tmp_path / "has space" / "a.pyz"
    pyz.parent.mkdir()
    pyz.write_bytes(deploy.zipapp()[0])
    cmd = deploy.posix_command(str(pyz), sys.executable).replace(" attach", " version")
    out = subprocess.run(
        ["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr


def test_windows_command_uses_the_launcher_without_env_prefixes() -> None:
    cmd = deploy.windows_command(PATH)
    win = PATH.replace("/", "\\")
    assert cmd == (f"where /q py & if errorlevel 1 (python {win} attach) else (py -3 {win} attach)")
    assert "=" not in cmd.split("(")[0]  # no VAR=x prefix, which cmd.exe does not know


@pytest.mark.parametrize(
    ("python", "expected"),
    [
        ("py -3.12", "py -3.12 {p} attach"),
        (
            r"C:\Program Files\Python312\python.exe",
            '"C:\\Program Files\\Python312\\python.exe" {p} attach',
        ),
        ("python", "python {p} attach"),
    ],
)
def test_windows_command_with_a_configured_interpreter(python: str, expected: str) -> None:
    win = PATH.replace("/", "\\")
    assert deploy.windows_command(PATH, python) == expected.format(p=win)


def test_attach_command_picks_by_os() -> None:
    assert deploy.attach_command(PATH, None, windows=False).startswith("exec python3 ")
    assert deploy.attach_command(PATH, None, windows=True).startswith("where /q py")


@pytest.mark.parametrize(
    ("code", "tail", "windows", "words"),
    [
        (127, "sh: 1: python3: not found", False, "no Python at 'python3'"),
        (9009, "", True, "no Python at 'py -3 / python'"),
        (3, "llmaos-agent: psutil missing on this host; install with: x", False, "psutil missing"),
        (1, "Traceback", False, "exited with code 1: Traceback"),
    ],
)
def test_exit_codes_are_explained(code: int, tail: str, windows: bool, words: str) -> None:
    assert words in deploy.explain_exit(code, tail, None, windows)
