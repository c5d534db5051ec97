"""Finding a host's Python as users expect, and saying exactly what is wrong when none fits.

The candidates, in order: the host's ``python`` setting from the inventory (then only
that); on Windows the ``py -3`` launcher, then ``python3`` and ``python`` (the launcher
first because ``python`` there is often the Store's stub); elsewhere ``python3``,
``python``, then ``python3.13`` .. ``python3.10`` (a RHEL 8 host whose python3 is 3.6
may have a newer one beside it). Each is asked one fixed question, :data:`PROBE`, a
one-line stdlib program that any Python 2.7 or 3.x parses: its version, platform, machine,
C library, the tag that names its wheel directory, and whether psutil and msgspec are
there. Nothing in the command lines comes from a host: the probe is a constant and the
interpreter names are ours or the operator's; what the host answers is untrusted and
checked field by field (:func:`parse_probe`).

When no candidate is usable, :func:`explain` says what the host has (each candidate's
version and path, or that it is missing) and what would work, with an install hint for
that host's system (apt, dnf, zypper, apk, pacman, brew, winget, or python.org), never
``pip install --user`` (refused on Debian 12 and Ubuntu 24.04: externally managed).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any

import asyncssh

from llmaos_tui.fleet import wheels

MIN_VERSION = (3, 10)
PROBE_TIMEOUT_S = 20.0
MAX_ANSWER = 64 << 10

SITE_TAG_EXPR = (
    "(i.cache_tag or '')+'-'+sys.platform+'-'+(os.uname()[4] if hasattr(os,'uname')"
    " else os.environ.get('PROCESSOR_ARCHITECTURE','')).lower() if i else ''"
)
"""The name of a Python's wheel directory on a host (``site-<tag>`` beside the zipapp):
``cpython-312-darwin-arm64``. One expression, so the probe (which tells the console) and
the zipapp's ``__main__`` (which puts the directory on sys.path) compute it alike; ``i``
is ``sys.implementation``."""

PROBE = (
    "import sys,os,json,struct,platform;v=sys.version_info;"
    "i=getattr(sys,'implementation',None);"
    "u=__import__('importlib.util').util if v[0]==3 and v[1] not in (0,1,2,3) else None;"
    "print(json.dumps({'v':list(v[:3]),'impl':i.name if i else 'python2',"
    "'exe':sys.executable,'os':sys.platform,'machine':platform.machine(),"
    "'bits':struct.calcsize('P')*8,'mac':platform.mac_ver()[0],"
    "'libc':list(platform.libc_ver()),'tag':" + SITE_TAG_EXPR + ","
    "'has':[n for n in ('psutil','msgspec') if u and u.find_spec(n)]}))"
)
"""What a candidate is asked. One line and none of ``" % ! & | ^``, so cmd.exe passes it
through untouched inside the double quotes that list2cmdline puts around it."""

NOT_FOUND = (127, 9009)  # POSIX shells and cmd.exe: no such command

_TAG = re.compile(r"[a-z0-9._-]{1,64}\Z")
_WORD = re.compile(r"[A-Za-z0-9._-]{0,40}\Z")
_KEYS = {"v", "impl", "exe", "os", "machine", "bits", "mac", "libc", "tag", "has"}


class ProbeError(ValueError):
    """A candidate's answer the console cannot trust: not the probe's shape."""


@dataclass(frozen=True)
class Python:
    """A candidate that answered the probe."""

    command: str  # as it is run: "python3", "py -3", or the inventory's setting
    version: tuple[int, int, int]
    implementation: str
    executable: str
    os: str  # sys.platform
    machine: str
    bits: int
    mac: str
    libc: tuple[str, str]
    site_tag: str
    has: frozenset[str]

    @property
    def usable(self) -> bool:
        return self.version[:2] >= MIN_VERSION

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def needs_psutil(self) -> bool:
        """Whether the agent needs psutil pushed here: everywhere but Linux, when absent."""
        return not self.os.startswith("linux") and "psutil" not in self.has

    def target(self) -> wheels.Target:
        return wheels.target_for(
            self.os,
            self.machine,
            (self.version[0], self.version[1]),
            implementation=self.implementation,
            bits=self.bits,
            mac_version=self.mac,
            libc=self.libc,
        )


@dataclass(frozen=True)
class Absent:
    """A candidate that did not answer: not there, or something else went wrong."""

    command: str
    why: str


Found = Python | Absent


class NoPython(RuntimeError):
    """No usable interpreter on a host; the message says what is there and what would work."""


def candidates(configured: str | None, windows: bool) -> list[str]:
    if configured:
        return [configured]
    if windows:
        return ["py -3", "python3", "python"]
    return ["python3", "python", *(f"python3.{m}" for m in range(13, MIN_VERSION[1] - 1, -1))]


def split_windows(python: str) -> list[str]:
    """A Windows interpreter setting as argv: ``py -3.12`` is two words, a spaced path one."""
    if PureWindowsPath(python).suffix.lower() == ".exe" or ("\\" in python and " -" not in python):
        return [python]
    return python.split()


def command_line(python: str, args: Sequence[str], windows: bool) -> str:
    """``python ARGS`` for the host's shell (cmd.exe or POSIX), every word quoted."""
    if windows:
        return subprocess.list2cmdline([*split_windows(python), *args])
    return shlex.join([*shlex.split(python), *args])


def parse_probe(command: str, text: str) -> Python:
    """The probe's answer, checked: every field its type and shape, or ProbeError."""
    try:
        d = json.loads(text.strip().splitlines()[-1] if text.strip() else "")
    except ValueError:
        raise ProbeError("its answer is not the probe's JSON") from None
    if not isinstance(d, dict) or set(d) != _KEYS:
        raise ProbeError("its answer has other fields than the probe's")
    v, libc, has = d["v"], d["libc"], d["has"]
    if not (isinstance(v, list) and len(v) == 3 and all(_small_int(x) for x in v)):
        raise ProbeError("its version is not three numbers")
    if not (isinstance(libc, list) and len(libc) == 2):
        raise ProbeError("its C library is not a pair")
    if not (isinstance(has, list) and set(has) <= {"psutil", "msgspec"}):
        raise ProbeError("its module list names other modules")
    words = [d["impl"], d["os"], d["machine"], d["mac"], *libc]
    if not all(isinstance(w, str) and _WORD.match(w) for w in words):
        raise ProbeError("its platform words hold unexpected characters")
    tag, exe, bits = d["tag"], d["exe"], d["bits"]
    if not (isinstance(tag, str) and (tag == "" or _TAG.match(tag))):
        raise ProbeError("its site tag holds unexpected characters")
    if not (isinstance(exe, str) and len(exe) <= 400 and exe.isprintable()):
        raise ProbeError("its executable path is not printable text")
    if bits not in (32, 64):
        raise ProbeError("its pointer size is neither 32 nor 64 bits")
    return Python(
        command=command,
        version=(v[0], v[1], v[2]),
        implementation=d["impl"],
        executable=exe,
        os=d["os"],
        machine=d["machine"],
        bits=bits,
        mac=d["mac"],
        libc=(libc[0], libc[1]),
        site_tag=tag,
        has=frozenset(has),
    )


def _small_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1000


async def run_bounded(
    conn: asyncssh.SSHClientConnection, command: str, timeout: float = PROBE_TIMEOUT_S
) -> tuple[int | None, str, str]:
    """(exit status, stdout, stderr) of ``command``, each stream cut at MAX_ANSWER bytes:
    a host cannot make the console hold more than that for one question."""

    async def take(stream: Any) -> bytes:
        buf = bytearray()
        while len(buf) <= MAX_ANSWER and (chunk := await stream.read(8192)):
            buf += chunk
        return bytes(buf[:MAX_ANSWER])

    proc = await conn.create_process(command, encoding=None, stdin=asyncssh.DEVNULL)

    async def collect() -> tuple[bytes, bytes]:
        out, err = await asyncio.gather(take(proc.stdout), take(proc.stderr))
        await proc.wait_closed()
        return out, err

    try:
        out, err = await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        return None, "", f"no answer within {timeout:.0f} s"
    finally:
        proc.close()
    return proc.exit_status, out.decode(errors="replace"), err.decode(errors="replace")


async def probe(conn: asyncssh.SSHClientConnection, python: str, windows: bool) -> Found:
    code, out, err = await run_bounded(conn, command_line(python, ["-c", PROBE], windows))
    if code in NOT_FOUND:
        return Absent(python, "not found")
    if code != 0:
        tail = (err.strip().splitlines() or [""])[-1][:200]
        return Absent(python, f"exited with code {code}" + (f": {tail}" if tail else ""))
    try:
        return parse_probe(python, out)
    except ProbeError as exc:
        return Absent(python, str(exc))


async def find(conn: asyncssh.SSHClientConnection, configured: str | None, windows: bool) -> Python:
    """The first usable candidate, or NoPython with :func:`explain`'s words."""
    tried: list[Found] = []
    for python in candidates(configured, windows):
        found = await probe(conn, python, windows)
        if isinstance(found, Python) and found.usable:
            return found
        tried.append(found)
    system = await host_system(conn, windows, tried)
    raise NoPython(explain(tried, system, configured))


@dataclass(frozen=True)
class System:
    """What kind of system a host is, for the install hint: ``linux`` with its
    /etc/os-release ID, ID_LIKE and VERSION_ID, ``darwin``, ``win32`` or unknown (``""``)."""

    kind: str
    ids: tuple[str, ...] = ()
    version: str = ""


async def host_system(
    conn: asyncssh.SSHClientConnection, windows: bool, tried: Sequence[Found]
) -> System:
    if windows:
        return System("win32")
    answered = [t.os for t in tried if isinstance(t, Python)]
    if answered and answered[0] in ("darwin", "win32"):
        return System(answered[0])
    code, out, _ = await run_bounded(conn, "uname -s; cat /etc/os-release 2>/dev/null")
    if code is None:
        return System("")
    return parse_os_release(out)


def parse_os_release(text: str) -> System:
    """``uname -s`` then /etc/os-release, as :func:`host_system` asks for them."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "Darwin":
        return System("darwin")
    if not lines or lines[0].strip() != "Linux":
        return System("")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if sep and key in ("ID", "ID_LIKE", "VERSION_ID"):
            fields[key] = value.strip().strip("\"'")
    ids = tuple(
        w for w in f"{fields.get('ID', '')} {fields.get('ID_LIKE', '')}".split() if _WORD.match(w)
    )
    version = fields.get("VERSION_ID", "")
    return System("linux", ids, version if re.fullmatch(r"[0-9.]{1,10}", version) else "")


def install_hint(system: System) -> str:
    """How to get a Python 3.10+ on such a system, in one command where there is one."""
    if system.kind == "win32":
        return "winget install Python.Python.3.12 (or the installer from python.org)"
    if system.kind == "darwin":
        return "brew install python@3.12 (or the installer from python.org)"
    ids, major = set(system.ids), _major(system.version)
    if "ubuntu" in ids or "debian" in ids:
        old = ("ubuntu" in ids and major < 22) or ("ubuntu" not in ids and major < 12)
        if system.version and old:
            return (
                "this release's python3 is older than 3.10: upgrade it (Debian 12, Ubuntu "
                "22.04 or newer), or install Python 3.10+ from python.org"
            )
        return "sudo apt install python3"
    if "fedora" in ids and "rhel" not in ids:
        return "sudo dnf install python3"
    if ids & {"rhel", "centos", "rocky", "almalinux", "ol"}:
        return "sudo dnf install python3.11"
    if ids & {"suse", "opensuse", "sles", "opensuse-leap", "opensuse-tumbleweed"}:
        return "sudo zypper install python311"
    if "alpine" in ids:
        return "sudo apk add python3"
    if "arch" in ids:
        return "sudo pacman -S python"
    return "install Python 3.10 or newer with the system's package manager, or from python.org"


def _major(version: str) -> int:
    head = version.partition(".")[0]
    return int(head) if head.isdigit() else 0


def explain(tried: Sequence[Found], system: System, configured: str | None) -> str:
    """What the host has and what would work, for a host without a usable Python."""
    seen = []
    for t in tried:
        if isinstance(t, Python):
            seen.append(f"{t.command} is {t.version_text} ({t.executable}), too old")
        else:
            seen.append(f"{t.command}: {t.why}")
    setting = (
        f"the python setting {configured!r} for this host in hosts.toml"
        if configured
        else "python = '/path/to/python3' for this host in hosts.toml"
    )
    return (
        f"no Python {MIN_VERSION[0]}.{MIN_VERSION[1]}+ on this host ({'; '.join(seen)}). "
        f"The agent needs Python {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer and nothing else: "
        f"{install_hint(system)}; or {'fix' if configured else 'set'} {setting}"
    )
