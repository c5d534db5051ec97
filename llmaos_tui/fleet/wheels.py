"""Wheels for a host's Python: which tags it takes, where the console keeps them, and the
checks an untrusted wheel must pass before a byte of it is written to a host.

On Linux the agent needs nothing but the standard library; on macOS and Windows it needs
psutil, which a host may lack. The console then pushes a psutil wheel built for that
host's platform and Python, unpacked into the agent's cache directory there. The wheels
come from a flat directory of ``.whl`` files: the console's own cache
(:func:`default_cache`), filled with ``pip download`` for the host's tags, or a directory
the user prepared offline with ``llmaos-tui agent-wheels`` (air-gapped fleets).

A host's tags arrive from the host (:mod:`interpreter`'s probe), so they are checked
against tight patterns before they name a file or reach pip's command line; a wheel is a
zip archive from the network, so its member names, kinds, sizes and its RECORD hashes are
checked (:func:`check_wheel`) before it is unpacked anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import stat
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import platformdirs

PROJECT = "psutil"
"""What the agent needs where the standard library is not enough (macOS and Windows)."""

MAX_MEMBERS = 2000
MAX_FILE_BYTES = 32 << 20
MAX_TOTAL_BYTES = 64 << 20
"""Bounds on one wheel unpacked (psutil's is about 0.6 MB): a zip bomb stops here."""

PIP_TIMEOUT_S = 300.0

_PLATFORM_TAG = re.compile(r"[a-z0-9_]{1,64}\Z")
_MACHINES = {
    # platform.machine() spellings, by OS, to the wheel tags' spelling.
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "i386": "i686",
    "i686": "i686",
    "x86": "i686",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv7l": "armv7l",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
_WIN_MACHINES = {"x86_64": "win_amd64", "i686": "win32", "aarch64": "win_arm64"}
_WHEEL_NAME = re.compile(
    r"(?P<name>[A-Za-z0-9_.]+)-(?P<ver>[A-Za-z0-9_.!+]+)(?:-(?P<build>[0-9][A-Za-z0-9_]*))?"
    r"-(?P<py>[A-Za-z0-9_.]+)-(?P<abi>[A-Za-z0-9_.]+)-(?P<plat>[A-Za-z0-9_.]+)\.whl\Z"
)


class WheelError(ValueError):
    """A wheel or a tag the console will not use; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """What a wheel must fit: one Python on one platform, as pip's tags spell it."""

    os: str  # sys.platform: "linux", "darwin", "win32"
    python: tuple[int, int]
    implementation: str  # "cp" (CPython) or "pp" (PyPy)
    platform: str  # the most specific platform tag: manylinux_2_36_x86_64, win_amd64, ...

    @property
    def key(self) -> str:
        """``cp312-win_amd64``: names this target in messages and file names."""
        return f"{self.implementation}{self.python[0]}{self.python[1]}-{self.platform}"

    @property
    def python_text(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    def platforms(self) -> list[str]:
        """Every platform tag this target's wheels may carry, most specific first."""
        return expand_platform(self.platform)

    def abis(self) -> list[str]:
        own = [f"cp{self.python[0]}{self.python[1]}"] if self.implementation == "cp" else []
        return [*own, "abi3", "none"] if own else ["none"]

    def agent_wheels_command(self) -> str:
        """The command that fills a wheel directory for this target (to run where there is
        network, for an air-gapped fleet)."""
        return f"llmaos-tui agent-wheels --platform {self.platform} --python {self.python_text}" + (
            f" --implementation {self.implementation}" if self.implementation != "cp" else ""
        )


def target_for(
    os_name: str,
    machine: str,
    python: tuple[int, int],
    *,
    implementation: str = "cpython",
    bits: int = 64,
    mac_version: str = "",
    libc: tuple[str, str] = ("", ""),
) -> Target:
    """The target a host's probe describes (``sys.platform``, ``platform.machine()``, ...)."""
    impl = {"cpython": "cp", "pypy": "pp"}.get(implementation)
    if impl is None:
        raise WheelError(f"no wheels for the {implementation!r} implementation of Python")
    arch = _MACHINES.get(machine.lower())
    if arch is None:
        raise WheelError(f"no wheels for the machine type {machine!r}")
    if bits == 32:  # a 32-bit Python on a 64-bit machine takes 32-bit wheels
        arch = {"x86_64": "i686", "aarch64": "armv7l"}.get(arch, arch)
    if os_name == "win32":
        plat = _WIN_MACHINES.get(arch)
        if plat is None:
            raise WheelError(f"no Windows wheels for {machine!r}")
    elif os_name == "darwin":
        plat = _mac_tag(mac_version, "arm64" if arch == "aarch64" else arch)
    elif os_name.startswith("linux"):
        plat = _linux_tag(libc, arch)
    else:
        raise WheelError(f"no wheels for the platform {os_name!r}")
    return Target(os_name, python, impl, plat)


def _mac_tag(version: str, arch: str) -> str:
    m = re.fullmatch(r"([0-9]{1,2})\.([0-9]{1,2})(?:\.[0-9]+)?", version)
    if m is None:
        raise WheelError(f"unknown macOS version {version!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    return f"macosx_{major}_{0 if major >= 11 else minor}_{arch}"


def _linux_tag(libc: tuple[str, str], arch: str) -> str:
    name, version = libc
    m = re.fullmatch(r"2\.([0-9]{1,3})", version)
    if name == "glibc" and m is not None:
        return f"manylinux_2_{m.group(1)}_{arch}"
    if not name:  # platform.libc_ver() knows no musl: Alpine and the like
        return f"musllinux_1_2_{arch}"
    raise WheelError(f"unknown C library {name} {version}")


def expand_platform(tag: str) -> list[str]:
    """``tag`` and the older tags a host of that kind also takes, most specific first:
    macosx_14_0_arm64 takes 13_0 .. 11_0 and universal2; manylinux_2_36 takes 2_35 .. 2_5
    and the legacy manylinux2014/2010/1 names; Windows tags stand alone."""
    if not _PLATFORM_TAG.match(tag):
        raise WheelError(f"not a platform tag: {tag!a}")
    if m := re.fullmatch(r"macosx_([0-9]+)_([0-9]+)_([a-z0-9_]+)", tag):
        return _mac_platforms(int(m.group(1)), int(m.group(2)), m.group(3))
    if m := re.fullmatch(r"manylinux_2_([0-9]+)_([a-z0-9_]+)", tag):
        top, arch = int(m.group(1)), m.group(2)
        out = [f"manylinux_2_{k}_{arch}" for k in range(top, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return out + [f"{name}_{arch}" for k, name in legacy.items() if k <= top]
    if m := re.fullmatch(r"musllinux_1_([0-9]+)_([a-z0-9_]+)", tag):
        return [f"musllinux_1_{k}_{m.group(2)}" for k in range(int(m.group(1)), -1, -1)]
    if tag in ("win_amd64", "win32", "win_arm64"):
        return [tag]
    raise WheelError(f"unknown platform tag {tag!a} (e.g. win_amd64, macosx_11_0_arm64)")


def _mac_platforms(major: int, minor: int, arch: str) -> list[str]:
    if arch not in ("arm64", "x86_64"):
        raise WheelError(f"unknown macOS architecture {arch!r}")
    versions = [(m, 0) for m in range(major, 10, -1)] if major >= 11 else []
    if arch == "x86_64":  # Apple silicon Macs start at 11.0; Intel ones go back to 10.x
        versions += [(10, m) for m in range(minor if major == 10 else 16, 3, -1)]
    out = []
    for ma, mi in versions:
        out += [f"macosx_{ma}_{mi}_{arch}", f"macosx_{ma}_{mi}_universal2"]
        if arch == "x86_64":
            out += [f"macosx_{ma}_{mi}_intel", f"macosx_{ma}_{mi}_universal"]
    return out


# --- choosing a wheel from a directory ----------------------------------------------------


@dataclass(frozen=True)
class WheelName:
    """A wheel file name's parts (compressed tag sets split at '.')."""

    project: str
    version: str
    pythons: frozenset[str]
    abis: frozenset[str]
    platforms: frozenset[str]

    def fits(self, t: Target) -> bool:
        plats = set(t.platforms()) | {"any"}
        if not self.platforms & plats:
            return False
        major, minor = t.python
        own = f"{t.implementation}{major}{minor}"
        for py in self.pythons:
            for abi in self.abis:
                if abi == own and py == own:
                    return True
                if abi == "abi3" and t.implementation == "cp" and _cp_at_most(py, major, minor):
                    return True
                if abi == "none" and (py in (own, f"py{major}", f"py{major}{minor}")):
                    return True
        return False

    def version_key(self) -> tuple[int, ...]:
        return tuple(int(p) if p.isdigit() else -1 for p in self.version.split("."))


def _cp_at_most(py: str, major: int, minor: int) -> bool:
    m = re.fullmatch(r"cp([0-9])([0-9]{1,2})", py)
    return m is not None and int(m.group(1)) == major and int(m.group(2)) <= minor


def parse_wheel_name(filename: str) -> WheelName | None:
    m = _WHEEL_NAME.match(filename)
    if m is None:
        return None
    return WheelName(
        project=m.group("name").lower().replace("-", "_").replace(".", "_"),
        version=m.group("ver"),
        pythons=frozenset(m.group("py").split(".")),
        abis=frozenset(m.group("abi").split(".")),
        platforms=frozenset(m.group("plat").split(".")),
    )


def select(directory: Path, target: Target, project: str = PROJECT) -> Path | None:
    """The newest final release of ``project`` in ``directory`` that fits ``target``."""
    found: list[tuple[tuple[int, ...], str, Path]] = []
    if not directory.is_dir():
        return None
    for path in directory.iterdir():
        w = parse_wheel_name(path.name)
        if w is None or w.project != project or not path.is_file() or path.is_symlink():
            continue
        key = w.version_key()
        if -1 not in key and w.fits(target):
            found.append((key, path.name, path))
    return max(found)[2] if found else None


def default_cache() -> Path:
    """The console's wheel cache (``~/.cache/llmaos-tui/agent-wheels`` on Linux)."""
    return Path(platformdirs.user_cache_dir("llmaos-tui", appauthor=False)) / "agent-wheels"


def pip_download_argv(target: Target, dest: Path, project: str = PROJECT) -> list[str]:
    """``pip download`` of ``project``'s binary wheel for ``target`` into ``dest``."""
    argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps"]
    for plat in target.platforms():
        argv += ["--platform", plat]
    argv += ["--python-version", target.python_text, "--implementation", target.implementation]
    for abi in target.abis():
        argv += ["--abi", abi]
    return [*argv, "-d", str(dest), project]


async def fetch(target: Target, dest: Path, project: str = PROJECT) -> Path:
    """Fill ``dest`` with a wheel for ``target`` by ``pip download``; the wheel, or
    WheelError saying what pip said."""
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        *pip_download_argv(target, dest, project),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PIP_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise WheelError(
            f"pip download of {project} timed out after {PIP_TIMEOUT_S:.0f} s"
        ) from None
    finally:
        if proc.returncode is None:  # timed out, or the caller was cancelled: no pip left
            proc.kill()
            await proc.wait()
    found = select(dest, target, project)
    if proc.returncode != 0 or found is None:
        last = out.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise WheelError(f"pip download of {project} for {target.key} failed: {last[0][:300]}")
    return found


def target_of_tag(platform: str, python: tuple[int, int], implementation: str = "cp") -> Target:
    """The target ``llmaos-tui agent-wheels --platform P --python X.Y`` names."""
    expand_platform(platform)  # checks the tag
    if implementation not in ("cp", "pp"):
        raise WheelError(f"unknown implementation {implementation!a} (cp or pp)")
    if platform.startswith("win"):
        os_name = "win32"
    elif platform.startswith("macosx_"):
        os_name = "darwin"
    else:
        os_name = "linux"
    return Target(os_name, python, implementation, platform)


async def fill(directory: Path, targets: list[Target]) -> list[Path]:
    """A wheel for each target in ``directory`` (kept when one is there): what
    ``agent-wheels`` does, and what an air-gapped fleet copies."""
    out = []
    for t in targets:
        out.append(select(directory, t) or await fetch(t, directory))
    return out


# --- checking a wheel ---------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One regular file of a checked wheel: its '/'-separated relative path and bytes."""

    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def check_wheel(path: Path) -> list[Member]:
    """The files of the wheel at ``path``, every one checked, or WheelError.

    Refused: a name that is absolute, has a drive, a backslash, an empty, ``.`` or ``..``
    part; a symlink or any entry that is neither a file nor a directory; a name twice;
    ``.data`` trees (scripts and headers install outside the import path); more than
    MAX_MEMBERS entries or MAX_TOTAL_BYTES unpacked; a file missing from RECORD or whose
    sha256 differs from it.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WheelError(f"{path.name}: not a readable wheel: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise WheelError(f"{path.name}: more than {MAX_MEMBERS} entries")
        files = _checked_entries(path.name, infos)
        if sum(i.file_size for i in files) > MAX_TOTAL_BYTES:
            raise WheelError(f"{path.name}: unpacks to more than {MAX_TOTAL_BYTES >> 20} MiB")
        members = [Member(i.filename, _read(zf, i, path.name)) for i in files]
    _check_record(path.name, members)
    return members


def _checked_entries(wheel: str, infos: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    seen: set[str] = set()
    files = []
    for info in infos:
        name = info.filename
        kind = stat.S_IFMT(info.external_attr >> 16)
        is_dir = name.endswith("/")
        check_member_name(name.rstrip("/") if is_dir else name, wheel)
        if kind == stat.S_IFLNK:
            raise WheelError(f"{wheel}: {name!a} is a symlink")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR) or (kind == stat.S_IFDIR) != is_dir:
            raise WheelError(f"{wheel}: {name!a} is neither a plain file nor a directory")
        if name in seen:
            raise WheelError(f"{wheel}: {name!a} is in it twice")
        seen.add(name)
        if not is_dir:
            if info.file_size > MAX_FILE_BYTES:
                raise WheelError(f"{wheel}: {name!a} is over {MAX_FILE_BYTES >> 20} MiB")
            files.append(info)
    return files


def check_member_name(name: str, wheel: str = "the wheel") -> None:
    """WheelError unless ``name`` is a plain relative path that stays inside its directory."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or ":" in parts[0]
        or any(p in ("", ".", "..") for p in parts)
        or any(not c.isprintable() for c in name)
    ):
        raise WheelError(f"{wheel}: unsafe member name {name!a}")
    if parts[0].endswith(".data"):
        raise WheelError(f"{wheel}: {name!a}: .data trees are not unpacked")


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, wheel: str) -> bytes:
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)  # the header's size may lie: read one more
    # A bad CRC or stream, an unknown compression, an encrypted member: a broken wheel,
    # said as one (not a console bug).
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise WheelError(f"{wheel}: {info.filename!a} cannot be read: {exc}") from None
    if len(data) != info.file_size:
        raise WheelError(f"{wheel}: {info.filename!a} is not the size its header says")
    return data


def _check_record(wheel: str, members: list[Member]) -> None:
    records = [m for m in members if re.fullmatch(r"[^/]+\.dist-info/RECORD", m.path)]
    if len(records) != 1:
        raise WheelError(f"{wheel}: no single .dist-info/RECORD")
    listed: dict[str, str] = {}
    for line in records[0].data.decode("utf-8", errors="replace").splitlines():
        name, _, rest = line.partition(",")
        digest = rest.partition(",")[0]
        if digest.startswith("sha256="):
            listed[name] = digest.removeprefix("sha256=")
    for m in members:
        if m is records[0] or m.path.endswith((".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")):
            continue
        want = listed.get(m.path)
        got = base64.urlsafe_b64encode(hashlib.sha256(m.data).digest()).rstrip(b"=").decode()
        if want is None:
            raise WheelError(f"{wheel}: {m.path!a} is not in its RECORD with a sha256")
        if want != got:
            raise WheelError(f"{wheel}: {m.path!a} does not match the sha256 in its RECORD")
