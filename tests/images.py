"""Test images without a registry: a busybox-static root filesystem, ``docker import``ed.

``rootfs_tar(path)`` writes a root filesystem holding ``/bin/busybox`` and a link per applet
(plus, with ``pad_bytes``, one incompressible file so an image can be made as large as a
benchmark needs); ``import_image(socket, tag)`` imports it into the engine behind a Unix
socket and returns the image ID. Import once per session and ``docker save`` / ``load`` the
result to other engines (:func:`copy_image`), so the image ID is the same everywhere.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

BUSYBOX = "/bin/busybox"
TEST_TAG = "llmaos-test/busybox:1"
# The applets a test container may use; `busybox --list` may name hundreds, but a link per
# applet costs nothing, so all are linked when the binary can list them.
_FALLBACK_APPLETS = ("sh", "sleep", "cat", "echo", "ls", "tar", "nc", "httpd", "true", "false")


def busybox_available() -> str | None:
    """None when a static busybox is here to build images from, else the reason."""
    if not os.access(BUSYBOX, os.X_OK):
        return f"test images need a static busybox at {BUSYBOX} (apt-get install busybox-static)"
    out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True, check=False)
    if out.returncode == 0 and "dynamically linked" in out.stdout:
        return f"{BUSYBOX} is dynamically linked; install busybox-static"
    return None


def _applets() -> list[str]:
    cp = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=False)
    names = cp.stdout.split() if cp.returncode == 0 else []
    return sorted(set(names) | set(_FALLBACK_APPLETS))


def rootfs_tar(path: Path, *, pad_bytes: int = 0) -> Path:
    """Write a busybox root filesystem tar to ``path`` (``pad_bytes`` of random data in
    /pad.bin); return ``path``."""
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "tmp", "data", "etc", "proc", "sys", "dev", "var", "var/www"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for name in _applets():
            if name == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{name}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
        if pad_bytes:
            info = tarfile.TarInfo("pad.bin")
            info.size = pad_bytes
            with open("/dev/urandom", "rb") as rnd:
                tar.addfile(info, _Limited(rnd, pad_bytes))
    return path


class _Limited(io.RawIOBase):
    """The first ``n`` bytes of a stream (tarfile reads exactly ``size`` bytes anyway)."""

    def __init__(self, f: io.BufferedReader, n: int) -> None:
        self._f, self._left = f, n

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._f.read(size)
        self._left -= len(data)
        return data


def docker_cli(socket: Path | str) -> list[str]:
    """The docker CLI aimed at one engine's socket (no contexts, no ~/.docker)."""
    return ["docker", "-H", f"unix://{socket}"]


def import_image(socket: Path | str, tag: str = TEST_TAG, *, pad_bytes: int = 0) -> str:
    """Import a busybox image into the engine at ``socket``; return its image ID."""
    with tempfile.TemporaryDirectory(prefix="llmaos-img-") as tmp:
        tar = rootfs_tar(Path(tmp) / "rootfs.tar", pad_bytes=pad_bytes)
        _docker(socket, ["import", "--change", 'CMD ["/bin/sh"]', str(tar), tag])
    return image_id(socket, tag)


def image_id(socket: Path | str, ref: str) -> str:
    return _docker(socket, ["image", "inspect", "--format", "{{.Id}}", ref]).strip()


def copy_image(src: Path | str, dst: Path | str, ref: str = TEST_TAG) -> None:
    """``docker save REF | docker load`` from one engine to another (same image ID)."""
    save = subprocess.Popen([*docker_cli(src), "save", ref], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(
            [*docker_cli(dst), "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    finally:
        if save.stdout is not None:
            save.stdout.close()
        save.wait(timeout=60)
    if save.returncode != 0 or load.returncode != 0:
        raise RuntimeError(f"docker save | load of {ref} failed: {load.stderr.strip()}")


def _docker(socket: Path | str, args: Sequence[str]) -> str:
    cp = subprocess.run(
        [*docker_cli(socket), *args], capture_output=True, text=True, check=False, timeout=300
    )
    if cp.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {cp.stderr.strip()}")
    return cp.stdout


def have_docker_cli() -> bool:
    return shutil.which("docker") is not None
