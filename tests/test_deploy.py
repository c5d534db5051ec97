"""Deploying the agent: the zipapp, the remote command lines for POSIX shells and cmd.exe,
the interpreter probe and what is said when no Python fits, the wheel tags of Linux, macOS
and Windows hosts, and the checks an untrusted wheel must pass."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from llmaos_agent import __version__
from llmaos_agent.protocol import PROTOCOL_VERSION
from llmaos_tui.fleet import deploy, interpreter, wheels
from llmaos_tui.fleet.interpreter import Absent, Python, System
from tests.bare import bare_python

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


def test_zipapp_runs_on_a_bare_python(tmp_path: Path) -> None:
    pyz = tmp_path / "a.pyz"
    pyz.write_bytes(deploy.zipapp()[0])
    out = subprocess.run(
        [str(bare_python()), str(pyz), "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"protocol {PROTOCOL_VERSION}" in out.stdout


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
        (3, "llmaos-agent: psutil missing on this host (darwin, ...)", False, "psutil missing"),
        (1, "Traceback", False, "exited with code 1: Traceback"),
    ],
)
def test_exit_codes_are_explained(code: int, tail: str, windows: bool, words: str) -> None:
    assert words in deploy.explain_exit(code, tail, None, windows)


# --- the interpreter probe ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["venv", "bare"])
def test_probe_answers_what_this_python_is(which: str) -> None:
    python = sys.executable if which == "venv" else str(bare_python())
    # Through a real shell, as the host's login shell runs it.
    line = interpreter.command_line(python, ["-c", interpreter.PROBE], windows=False)
    out = subprocess.run(
        ["/bin/sh", "-c", line], capture_output=True, text=True, timeout=60, check=True
    )
    found = interpreter.parse_probe(python, out.stdout)
    assert found.version == tuple(sys.version_info[:3]) or which == "bare"
    assert found.usable and found.os == "linux" and found.bits == 64
    assert ("psutil" in found.has) is (which == "venv")
    assert found.needs_psutil() is False  # Linux: the standard library is enough
    # The zipapp's __main__ computes the same tag from the same expression.
    tag = eval(interpreter.SITE_TAG_EXPR, {"sys": sys, "os": os, "i": sys.implementation})
    assert which == "bare" or found.site_tag == tag
    assert found.target().platform.startswith("manylinux_2_")


def test_probe_and_verify_pass_through_cmd_exe_untouched() -> None:
    for script in (interpreter.PROBE, deploy.VERIFY):
        assert "\n" not in script and not set(script) & set('"%!&|^')
        line = interpreter.command_line("py -3", ["-c", script], windows=True)
        assert line == f'py -3 -c "{script}"'


def probe_answer(**changes: object) -> str:
    base = {"v": [3, 12, 1], "impl": "cpython", "exe": "C:\\Python312\\python.exe",
            "os": "win32", "machine": "AMD64", "bits": 64, "mac": "", "libc": ["", ""],
            "tag": "cpython-312-win32-amd64", "has": ["msgspec"]}  # fmt: skip
    return json.dumps({**base, **changes})


def test_probe_answer_is_parsed_into_a_windows_target() -> None:
    found = interpreter.parse_probe("py -3", "noise first\n" + probe_answer())
    assert found.needs_psutil() and found.version_text == "3.12.1"
    assert found.target() == wheels.Target("win32", (3, 12), "cp", "win_amd64")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("Python 3.12.1", "not the probe's JSON"),
        (probe_answer(extra=1), "other fields"),
        (probe_answer(v=["3", "12", "1"]), "three numbers"),
        (probe_answer(tag="../../etc"), "site tag"),
        (probe_answer(has=["psutil", "evil"]), "other modules"),
        (probe_answer(exe="python\x1b]0;owned\x07"), "printable"),
        (probe_answer(machine="x86 64; rm"), "platform words"),
        (probe_answer(bits=16), "pointer size"),
    ],
)
def test_probe_answers_out_of_shape_are_refused(answer: str, words: str) -> None:
    with pytest.raises(interpreter.ProbeError, match=words):
        interpreter.parse_probe("python3", answer)


def test_candidates_in_the_order_users_expect() -> None:
    assert interpreter.candidates("/opt/py/bin/python", windows=False) == ["/opt/py/bin/python"]
    assert interpreter.candidates(None, windows=True) == ["py -3", "python3", "python"]
    posix = interpreter.candidates(None, windows=False)
    assert posix[:3] == ["python3", "python", "python3.13"] and posix[-1] == "python3.10"


def old_python(command: str = "python3") -> Python:
    return interpreter.parse_probe(
        command,
        probe_answer(v=[3, 8, 10], exe="/usr/bin/python3.8", os="linux", machine="x86_64",
                     libc=["glibc", "2.31"], tag="cpython-38-linux-x86_64"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("release", "hint"),
    [
        ('ID=debian\nVERSION_ID="12"', "sudo apt install python3"),
        ("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=24.04", "sudo apt install python3"),
        ("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=20.04", "older than 3.10: upgrade it"),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.9"', "dnf install python3.11"),
        ("ID=fedora\nVERSION_ID=40", "sudo dnf install python3"),
        ('ID="opensuse-leap"\nID_LIKE="suse opensuse"', "zypper install python311"),
        ("ID=alpine", "apk add python3"),
        ("ID=arch", "pacman -S python"),
        ("ID=gentoo", "python.org"),
    ],
)
def test_no_python_on_linux_names_what_is_there_and_the_distros_install(
    release: str, hint: str
) -> None:
    system = interpreter.parse_os_release(f"Linux\n{release}\n")
    tried: list[interpreter.Found] = [old_python(), Absent("python", "not found")]
    text = interpreter.explain(tried, system, None)
    assert text.startswith("no Python 3.10+ on this host (python3 is 3.8.10 (/usr/bin/python3.8)")
    assert "python: not found" in text and hint in text
    assert "python = '/path/to/python3'" in text and "pip install" not in text


@pytest.mark.parametrize(
    ("system", "hint"),
    [
        (System("darwin"), "brew install python@3.12"),
        (System("win32"), "winget install Python.Python.3.12"),
        (interpreter.parse_os_release("Darwin\n"), "brew install"),
        (interpreter.parse_os_release(""), "python.org"),
    ],
)
def test_no_python_on_macos_and_windows_hints_their_installers(system: System, hint: str) -> None:
    text = interpreter.explain([Absent("py -3", "not found")], system, None)
    assert hint in text and "pip install" not in text


def test_a_configured_python_that_is_missing_says_fix_the_setting() -> None:
    text = interpreter.explain([Absent("/opt/x/python", "not found")], System(""), "/opt/x/python")
    assert "(/opt/x/python: not found)" in text
    assert "fix the python setting '/opt/x/python' for this host in hosts.toml" in text


# --- wheel tags ---------------------------------------------------------------------------


def test_linux_tags() -> None:
    t = wheels.target_for("linux", "x86_64", (3, 11), libc=("glibc", "2.36"))
    assert t.platform == "manylinux_2_36_x86_64" and t.key == "cp311-manylinux_2_36_x86_64"
    plats = t.platforms()
    assert plats[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in plats
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(plats)
    assert wheels.target_for("linux", "aarch64", (3, 12), libc=("", "")).platform == (
        "musllinux_1_2_aarch64"
    )
    assert t.abis() == ["cp311", "abi3", "none"]


def test_macos_tags() -> None:
    arm = wheels.target_for("darwin", "arm64", (3, 12), mac_version="14.2.1")
    assert arm.platform == "macosx_14_0_arm64"
    assert "macosx_11_0_arm64" in arm.platforms() and "macosx_14_0_universal2" in arm.platforms()
    assert not [p for p in arm.platforms() if p.startswith("macosx_10_")]  # no arm Mac on 10.x
    intel = wheels.target_for("darwin", "x86_64", (3, 10), mac_version="10.15.7")
    assert intel.platform == "macosx_10_15_x86_64"
    assert "macosx_10_9_x86_64" in intel.platforms() and "macosx_11_0_x86_64" not in (
        intel.platforms()
    )


def test_windows_tags() -> None:
    assert wheels.target_for("win32", "AMD64", (3, 12)).platform == "win_amd64"
    assert wheels.target_for("win32", "AMD64", (3, 12), bits=32).platform == "win32"
    assert wheels.target_for("win32", "ARM64", (3, 12)).platform == "win_arm64"
    assert wheels.target_for("win32", "AMD64", (3, 12)).platforms() == ["win_amd64"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("sunos5", "i86pc", (3, 11)), "machine type"),
        (("aix", "x86_64", (3, 11)), "platform 'aix'"),
        (("darwin", "arm64", (3, 11)), "macOS version"),
    ],
)
def test_hosts_without_wheels_are_named(args: tuple[str, str, tuple[int, int]], words: str) -> None:
    with pytest.raises(wheels.WheelError, match=words):
        wheels.target_for(*args)


@pytest.mark.parametrize("tag", ["win_amd64; rm -rf /", "--index-url=x", "manylinux_2_x"])
def test_agent_wheels_refuses_what_is_not_a_platform_tag(tag: str) -> None:
    with pytest.raises(wheels.WheelError):
        wheels.expand_platform(tag)


PSUTIL_LINUX = (
    "psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.manylinux_2_12_x86_64.manylinux_2_28_x86_64.whl"
)


@pytest.mark.parametrize(
    ("filename", "target", "fits"),
    [
        ("psutil-7.2.2-cp37-abi3-win_amd64.whl", ("win32", "AMD64", (3, 12)), True),
        ("psutil-7.2.2-cp37-abi3-win_amd64.whl", ("win32", "AMD64", (3, 12), 32), False),
        ("psutil-7.2.2-cp313-cp313-win_amd64.whl", ("win32", "AMD64", (3, 12)), False),
        ("psutil-7.2.2-cp36-abi3-macosx_11_0_arm64.whl", ("darwin", "arm64", (3, 12)), True),
        ("psutil-7.2.2-cp36-abi3-macosx_11_0_arm64.whl", ("darwin", "x86_64", (3, 12)), False),
        (PSUTIL_LINUX, ("linux", "x86_64", (3, 11)), True),
        ("psutil-7.2.2-py3-none-any.whl", ("darwin", "arm64", (3, 12)), True),
    ],
)
def test_wheel_names_fit_the_targets_they_were_built_for(
    filename: str, target: tuple[Any, ...], fits: bool
) -> None:
    os_name, machine, py = target[:3]
    bits = target[3] if len(target) > 3 else 64
    t = wheels.target_for(
        os_name, machine, py, bits=bits, mac_version="14.2", libc=("glibc", "2.36")
    )
    name = wheels.parse_wheel_name(filename)
    assert name is not None and name.fits(t) is fits


def test_select_takes_the_newest_fitting_release(tmp_path: Path) -> None:
    for name in ("psutil-5.9.8-cp37-abi3-win_amd64.whl", "psutil-7.2.2-cp37-abi3-win_amd64.whl",
                 "psutil-7.3.0rc1-cp37-abi3-win_amd64.whl", "psutil-9.0.0-cp37-abi3-win32.whl",
                 "other-9.0.0-cp37-abi3-win_amd64.whl", "not a wheel.txt"):  # fmt: skip
        (tmp_path / name).write_bytes(b"")
    t = wheels.target_for("win32", "AMD64", (3, 12))
    assert wheels.select(tmp_path, t) == tmp_path / "psutil-7.2.2-cp37-abi3-win_amd64.whl"
    assert wheels.select(tmp_path / "none", t) is None


def test_pip_download_argv_names_the_hosts_tags(tmp_path: Path) -> None:
    t = wheels.target_for("darwin", "arm64", (3, 12), mac_version="13.1")
    argv = wheels.pip_download_argv(t, tmp_path)
    assert argv[:5] == [sys.executable, "-m", "pip", "download", "--only-binary=:all:"]
    text = " ".join(argv)
    assert "--platform macosx_13_0_arm64 --platform macosx_13_0_universal2" in text
    assert "--python-version 3.12 --implementation cp" in text
    assert "--abi cp312 --abi abi3 --abi none" in text
    assert argv[-3:] == ["-d", str(tmp_path), "psutil"]
    assert t.agent_wheels_command() == (
        "llmaos-tui agent-wheels --platform macosx_13_0_arm64 --python 3.12"
    )


# --- untrusted wheels ---------------------------------------------------------------------


def make_wheel(
    path: Path, files: dict[str, bytes], *, record: dict[str, bytes] | None = None,
    links: tuple[str, ...] = (), extra: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    """A wheel with ``files`` and a RECORD of ``record`` (default: the same files)."""
    rows = [
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
        for n, d in (files if record is None else record).items()
    ]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        for name in extra:
            zf.writestr(name, b"x")
        zf.writestr("demo-1.0.dist-info/RECORD", "\n".join([*rows, "demo-1.0.dist-info/RECORD,,"]))
    return path


GOOD = {
    "demo/__init__.py": b"x = 1\n",
    "demo/_ext.so": b"\x7fELF",
    "demo-1.0.dist-info/WHEEL": b"w",
}


def test_a_good_wheel_gives_its_files(tmp_path: Path) -> None:
    members = wheels.check_wheel(make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", GOOD))
    assert {m.path: m.data for m in members if not m.path.endswith("RECORD")} == GOOD


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"extra": ("/etc/cron.d/x",)}, "unsafe member name"),
        ({"extra": ("demo/../../.bashrc",)}, "unsafe member name"),
        ({"extra": ("demo\\..\\x.py",)}, "unsafe member name"),
        ({"extra": ("C:/x.py",)}, "unsafe member name"),
        ({"extra": ("demo/./x.py",)}, "unsafe member name"),
        ({"links": ("demo/link.py",)}, "is a symlink"),
        ({"extra": ("demo-1.0.data/scripts/x",)}, ".data trees"),
        ({"extra": ("demo/not_in_record.py",)}, "not in its RECORD"),
        ({"record": {**GOOD, "demo/__init__.py": b"other"}}, "does not match the sha256"),
    ],
)
def test_unsafe_wheels_are_refused(tmp_path: Path, kw: dict[str, object], words: str) -> None:
    path = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", GOOD, **kw)  # type: ignore[arg-type]
    with pytest.raises(wheels.WheelError, match=words):
        wheels.check_wheel(path)


def test_a_wheel_with_a_name_twice_or_too_big_is_refused(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile warns, and writes it
        twice = make_wheel(tmp_path / "a.whl", GOOD, extra=("demo/__init__.py",))
    with pytest.raises(wheels.WheelError, match="twice"):
        wheels.check_wheel(twice)
    big = tmp_path / "b.whl"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:  # 90 MiB of zeros, 90 KB packed
        for n in range(3):
            zf.writestr(f"demo/zeros{n}.bin", bytes(30 << 20))
    assert big.stat().st_size < 1 << 20
    with pytest.raises(wheels.WheelError, match="more than 64 MiB"):
        wheels.check_wheel(big)
    (tmp_path / "c.whl").write_bytes(b"not a zip")
    with pytest.raises(wheels.WheelError, match="not a readable wheel"):
        wheels.check_wheel(tmp_path / "c.whl")


def test_a_wheel_with_a_broken_member_is_refused_as_a_broken_wheel(tmp_path: Path) -> None:
    # A member whose bytes no longer match its CRC (a bad download or a doctored cache):
    # a WheelError saying so, never a "bug" raised out of zipfile.
    path = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", GOOD)
    data = bytearray(path.read_bytes())
    at = data.find(b"x = 1\n")  # stored, not compressed: the member's bytes as written
    assert at > 0
    data[at] = ord("y")
    path.write_bytes(bytes(data))
    with pytest.raises(wheels.WheelError, match="cannot be read"):
        wheels.check_wheel(path)
