"""A testbed of real hosts on one machine, for integration tests of the SSH (and Docker) paths.

Each host is a network namespace behind a bridge in the root namespace, with its own init
process in private UTS and mount namespaces (hostname = host name, a private tmpfs on /run),
its own OpenSSH ``sshd`` on ``ADDR:22`` and, with ``docker=True``, its own ``dockerd``. Keys and
``known_hosts`` are generated per testbed, so root's real ``~/.ssh`` is never read or written.

Usage::

    with Testbed(n=3) as tb:
        host = tb.hosts[0]
        conn = await asyncssh.connect(host.addr, username="root",
                                      client_keys=[tb.client_key],
                                      known_hosts=str(tb.known_hosts),
                                      config=[], agent_path=None)

or the ``testbed`` / ``testbed_factory`` pytest fixtures at the bottom. The facts this builds
on (cgroup remounts, the FORWARD rule, per-host /etc/docker) are in /work/shared/TESTBED.md.

Every name a testbed creates (netns, veths, bridge, state dir) starts with a short prefix
``llt`` + 4 hex digits, and a live testbed holds an ``flock`` on ``STATE_DIR/<prefix>.lock``:
leftovers of a crashed run are recognised by that prefix and an unheld lock, and cleaned before
a new testbed starts, without touching testbeds that run in parallel.

Over 700 lines on purpose: namespaces, sshd, dockerd and their teardown are one lifecycle
whose cleanup order matters; split, a fault in one part could leak another's.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from tests.conftest import need

SSHD = "/usr/sbin/sshd"
DOCKERD = "dockerd"
STATE_DIR = Path("/tmp/llmaos-testbed")
#: The random prefixes this module makes; stale resources are only cleaned under these names
#: (or under the explicit prefix a testbed is given).
RANDOM_PREFIX = re.compile(r"^llt[0-9a-f]{4}$")
#: An explicit prefix must leave room for "-v" + up to 3 digits within IFNAMSIZ-1 = 15 chars.
PREFIX_OK = re.compile(r"^[a-z][a-z0-9]{1,9}$")
STEP_TIMEOUT = 30.0

# The host's init, run as `sh -c INIT_SCRIPT testbed-init NAME CIDR DOCKER_LIB DOCKER_ETC
# [SOURCE FSTYPE MOUNTPOINT OPTIONS]...`. It is a fixed script: every variable part arrives
# as a positional argument, never spliced into shell text.
INIT_SCRIPT = r"""
set -eu
printf '%s' "$1" > /proc/sys/kernel/hostname
ip addr add "$2" dev eth0
ip link set lo up
ip link set eth0 up
lib=$3
etc=$4
shift 4
# `ip netns exec` mounted a fresh /sys, which lost /sys/fs/cgroup: dockerd needs it back.
while [ "$#" -ge 4 ]; do
    mkdir -p "$3"
    mount -t "$2" -o "$4" "$1" "$3"
    shift 4
done
# A private /run: sshd's pid file and privsep dir, docker.sock and containerd are per host.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd /run/lock
if [ -n "$lib" ]; then
    # Without its own /etc/docker every daemon would report the same ID.
    mount --bind "$lib" /var/lib/docker
    mount --bind "$etc" /etc/docker
fi
echo ready
exec sleep infinity
"""


class TestbedError(RuntimeError):
    """A step of setting up or using the testbed failed; the message carries its stderr."""


@dataclass
class TestHost:
    """One host of a testbed. ``host_pubkey`` follows ``Testbed.replace_host_key``."""

    __test__ = False  # not a test class, despite the name

    name: str
    addr: str
    port: int
    host_key_path: Path
    host_pubkey: str
    netns: str
    veth: str
    dir: Path
    pid: int = 0  # the host's init: the process whose namespaces `exec` enters
    _init: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _dockerd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def docker_socket(self) -> Path:
        """The host's docker.sock, reachable from the root namespace through /proc."""
        return Path(f"/proc/{self.pid}/root/run/docker.sock")

    @property
    def sshd_pid(self) -> int | None:
        """The listening sshd's pid, or None while it is stopped."""
        p = self._sshd
        return p.pid if p is not None and p.poll() is None else None


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = STEP_TIMEOUT,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv; on failure raise TestbedError naming the command and its stderr."""
    try:
        cp = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise TestbedError(f"{' '.join(argv)}: timed out after {timeout} s") from e
    except OSError as e:
        raise TestbedError(f"{' '.join(argv)}: {e}") from e
    if check and cp.returncode != 0:
        raise TestbedError(
            f"{' '.join(argv)}: exit {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}"
        )
    return cp


def _clear_stale_shell_locks(max_age: float = 60.0) -> None:
    """Remove a pyenv rehash lock left by a killed login shell.

    Every SSH command to a testbed host runs root's login shell, and where root's
    ``.bashrc`` runs ``pyenv init`` (as on these machines) each one takes pyenv's rehash
    lock. A test that kills sshd with its sessions can kill a shell holding it; the lock
    stays, and every later login waits 60 s for it. A lock older than a minute is stale.
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    lock = root / "shims" / ".pyenv-shim"
    with contextlib.suppress(OSError):
        if time.time() - lock.stat().st_mtime >= max_age:
            lock.unlink()


@functools.cache
def testbed_available() -> str | None:
    """None when a testbed can be built here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces, veths, iptables)"
    for tool in ("ip", "unshare", "nsenter", "ssh-keygen", "iptables"):
        if shutil.which(tool) is None:
            return f"the testbed needs `{tool}` on PATH"
    if not os.access(SSHD, os.X_OK):
        return f"the testbed needs OpenSSH's sshd at {SSHD}"
    try:
        cp = subprocess.run(
            ["unshare", "--net", "--mount", "true"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`unshare --net --mount true` failed: {e}"
    if cp.returncode != 0:
        return f"`unshare --net --mount true` failed: {cp.stderr.strip()}"
    return None


def docker_available() -> str | None:
    """None when ``Testbed(docker=True)`` can work here, else the reason it cannot."""
    reason = testbed_available()
    if reason is not None:
        return reason
    if shutil.which(DOCKERD) is None or shutil.which("docker") is None:
        return "the testbed's docker=True needs dockerd and the docker CLI (docker.io)"
    return None


# ---------------------------------------------------------------------------------------------
# Naming, locking and stale cleanup


def _lock(prefix: str) -> IO[str] | None:
    """Take the prefix's lock without waiting: the open file, or None if a live testbed has it."""
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = STATE_DIR / f"{prefix}.lock"
    while True:
        f = path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        # The holder unlinks the file before it lets go: a lock on an unlinked inode would
        # guard nothing, so only a lock on the file that is at the path now counts.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        f.close()


def _unlock(prefix: str, f: IO[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        (STATE_DIR / f"{prefix}.lock").unlink()
    f.close()


def _netns_names() -> list[str]:
    out = _run(["ip", "-j", "netns", "list"]).stdout.strip()
    return [e["name"] for e in json.loads(out)] if out else []


def _link_names() -> list[str]:
    out = _run(["ip", "-j", "link", "show"]).stdout.strip()
    return [e["ifname"] for e in json.loads(out)] if out else []


def _forward_rules() -> list[str]:
    return _run(["iptables", "-w", "-S", "FORWARD"]).stdout.splitlines()


def _kill_netns_procs(netns: str) -> None:
    """SIGKILL every process in the namespace, until none is left (sessions fork)."""
    deadline = time.monotonic() + 5
    while True:
        cp = _run(["ip", "netns", "pids", netns], check=False)
        pids = [int(p) for p in cp.stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise TestbedError(f"processes in {netns} survive SIGKILL: {pids}")
        time.sleep(0.01)  # poll interval


def _remove_resources(prefix: str) -> None:
    """Remove everything named with ``prefix-``: processes, netns, links, FORWARD rules, dir."""
    tag = f"{prefix}-"
    netns = [n for n in _netns_names() if n.startswith(tag)]
    for ns in netns:
        _kill_netns_procs(ns)
    links = [n for n in _link_names() if n.startswith(tag)]
    # Deleting a veth's root end removes its peer; the bridge goes last, once empty.
    links.sort(key=lambda n: n.endswith("-br"))
    batch = [f"link del {n}" for n in links] + [f"netns del {n}" for n in netns]
    if batch:
        # -force: go on past a line that fails (say a veth already gone with its namespace).
        _run(["ip", "-force", "-batch", "-"], input="\n".join(batch) + "\n", check=False)
    for rule in _forward_rules():
        words = rule.split()
        if words[:2] == ["-A", "FORWARD"] and f"{prefix}-br" in words:
            _run(["iptables", "-w", "-D", *words[1:]], check=False)
    shutil.rmtree(STATE_DIR / prefix, ignore_errors=True)


def clean_stale(also: str | None = None) -> list[str]:
    """Clean leftovers of crashed testbeds (random prefixes, or ``also``); return their prefixes.

    A prefix whose lock a live testbed holds is left alone, so parallel runs are safe.
    """
    found: set[str] = set()
    names = _netns_names() + _link_names()
    with contextlib.suppress(FileNotFoundError):
        names += [p.name.removesuffix(".lock") + "-" for p in STATE_DIR.iterdir()]
    for rule in _forward_rules():
        names += [w for w in rule.split() if w.endswith("-br")]
    for name in names:
        prefix = name.split("-", 1)[0]
        if "-" in name and (RANDOM_PREFIX.match(prefix) or prefix == also):
            found.add(prefix)
    cleaned = []
    for prefix in sorted(found):
        lock = _lock(prefix)
        if lock is None:
            continue  # a live testbed
        try:
            _remove_resources(prefix)
            cleaned.append(prefix)
        finally:
            _unlock(prefix, lock)
    return cleaned


def _pick_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that overlaps no address or route of the root namespace."""
    used: list[ipaddress.IPv4Network] = []
    for e in json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for a in e.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for r in json.loads(_run(["ip", "-j", "-4", "route", "show"]).stdout or "[]"):
        dst = r.get("dst", "default")
        if dst != "default":
            used.append(ipaddress.IPv4Network(dst, strict=False))
    rng = secrets.SystemRandom()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randint(1, 254)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise TestbedError("no free 10.x.y.0/24 found for the testbed bridge")


def _cgroup_mounts() -> list[str]:
    """The root namespace's mounts at and under /sys/fs/cgroup, as SOURCE FSTYPE DIR OPTS."""
    args: list[str] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target, fstype, opts = line.split()[:4]
        if target == "/sys/fs/cgroup" or target.startswith("/sys/fs/cgroup/"):
            args += [source, fstype, target, opts]
    return args


# ---------------------------------------------------------------------------------------------
# The testbed


class Testbed:
    """``n`` hosts, each a network namespace with its own sshd (and dockerd with docker=True).

    Use as a context manager, or call ``start()`` and, in a ``finally``, ``close()``.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(
        self,
        n: int = 3,
        prefix: str | None = None,
        docker: bool = False,
        names: Sequence[str] | None = None,
    ) -> None:
        if not 1 <= n <= 200:
            raise ValueError(f"n must be 1..200, not {n}")
        if prefix is not None and not PREFIX_OK.match(prefix):
            raise ValueError(f"prefix must match {PREFIX_OK.pattern}: {prefix!r}")
        if names is not None and len(names) != n:
            raise ValueError(f"{len(names)} names for {n} hosts")
        self.n = n
        self.docker = docker
        self.names = list(names) if names is not None else [f"host{i}" for i in range(1, n + 1)]
        self._want_prefix = prefix
        self.prefix = ""
        self.dir = Path()
        self.bridge = ""
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: list[TestHost] = []
        self.client_key = Path()
        self.known_hosts = Path()
        self.ssh_config = Path()  # for OpenSSH's client: `ssh -F tb.ssh_config host1`
        self._lockf: IO[str] | None = None
        self._forward_rule: list[str] | None = None
        self.up_seconds = 0.0
        self.down_seconds = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Testbed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Testbed:
        """Bring every host up (sshd answering, dockerd answering); on failure, tear down."""
        reason = testbed_available()
        if reason is not None:
            raise TestbedError(reason)
        t0 = time.monotonic()
        _clear_stale_shell_locks()
        try:
            self._claim_prefix()
            self._make_keys()
            self._make_network()
            self._start_inits()
            if self.docker:
                for h in self.hosts:
                    self._spawn_dockerd(h)
            for h in self.hosts:
                self._spawn_sshd(h)
            for h in self.hosts:
                self._wait_sshd(h)
            if self.docker:
                for h in self.hosts:
                    self._wait_dockerd(h)
        except BaseException:
            self.close()
            raise
        self.up_seconds = time.monotonic() - t0
        return self

    def close(self) -> None:
        """Tear everything down; safe to call twice, and after a failed start."""
        if self._lockf is None:
            return
        t0 = time.monotonic()
        try:
            self._stop_dockerds()
            for h in self.hosts:
                for p in (h._sshd, h._init):
                    if p is not None and p.poll() is None:
                        p.kill()
            _remove_resources(self.prefix)
            for h in self.hosts:
                for p in (h._sshd, h._init, h._dockerd):
                    if p is not None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            p.wait(timeout=5)  # reap, so no zombie of ours is left
        finally:
            _unlock(self.prefix, self._lockf)
            self._lockf = None
            self.down_seconds = time.monotonic() - t0

    # -- setup steps ----------------------------------------------------------------------

    def _claim_prefix(self) -> None:
        clean_stale(also=self._want_prefix)
        for _ in range(20):
            prefix = self._want_prefix or "llt" + secrets.token_hex(2)
            lock = _lock(prefix)
            if lock is not None:
                break
            if self._want_prefix:
                raise TestbedError(f"prefix {prefix!r} is in use by a live testbed")
        else:
            raise TestbedError("no free testbed prefix")
        self._lockf = lock
        self.prefix = prefix
        # A stale run with this very prefix (only possible with an explicit one) goes first.
        _remove_resources(prefix)
        self.dir = STATE_DIR / prefix
        self.dir.mkdir(mode=0o700)
        self.bridge = f"{prefix}-br"

    def _make_keys(self) -> None:
        """All host keys and the client key, generated in parallel (ssh-keygen is ~10 ms each)."""
        self.subnet = _pick_subnet()
        base = self.subnet.network_address
        for i, name in enumerate(self.names, start=1):
            hdir = self.dir / name
            hdir.mkdir()
            self.hosts.append(
                TestHost(
                    name=name,
                    addr=str(base + 10 + i),
                    port=22,
                    host_key_path=hdir / "ssh_host_ed25519_key",
                    host_pubkey="",
                    netns=f"{self.prefix}-n{i}",
                    veth=f"{self.prefix}-v{i}",
                    dir=hdir,
                )
            )
        self.client_key = self.dir / "id_ed25519"
        keys = [h.host_key_path for h in self.hosts] + [self.client_key]
        procs = [self._keygen(k) for k in keys]
        for k, p in zip(keys, procs, strict=True):
            _, err = p.communicate(timeout=STEP_TIMEOUT)
            if p.returncode != 0:
                raise TestbedError(f"ssh-keygen -f {k}: exit {p.returncode}: {err.strip()}")
        for h in self.hosts:
            h.host_pubkey = self._pubkey(h.host_key_path)
            self._write_sshd_config(h)
        (self.dir / "authorized_keys").write_text(self._pubkey(self.client_key) + "\n")
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(
            "".join(f"{h.addr},{h.name} {h.host_pubkey}\n" for h in self.hosts)
        )
        self.ssh_config = self.dir / "ssh_config"
        self.ssh_config.write_text(
            "".join(
                f"Host {h.name} {h.addr}\n"
                f"  HostName {h.addr}\n  Port {h.port}\n  User root\n"
                f"  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
                f"  StrictHostKeyChecking yes\n  BatchMode yes\n"
                for h in self.hosts
            )
        )

    @staticmethod
    def _keygen(path: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.parent.name, "-f", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def _pubkey(key: Path) -> str:
        # The line without its comment: "ssh-ed25519 AAAA...".
        return " ".join(Path(f"{key}.pub").read_text().split()[:2])

    def _write_sshd_config(self, h: TestHost) -> None:
        (h.dir / "sshd_config").write_text(
            f"ListenAddress {h.addr}:{h.port}\n"
            f"HostKey {h.host_key_path}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "AllowStreamLocalForwarding yes\n"
            "AllowTcpForwarding yes\n"
            "Subsystem sftp internal-sftp\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            "UseDNS no\n"
            # Tests open many connections at once (fleet scale); the default 10:30:100 drops them.
            "MaxStartups 200\n"
            "MaxSessions 100\n"
        )

    def _make_network(self) -> None:
        """Bridge, namespaces and veths in one `ip -batch` (one process, ~10 ms)."""
        assert self.subnet is not None
        gw = self.subnet.network_address + 1
        lines = [
            f"link add {self.bridge} type bridge",
            f"addr add {gw}/24 dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        for h in self.hosts:
            lines += [
                f"netns add {h.netns}",
                f"link add {h.veth} type veth peer name eth0 netns {h.netns}",
                f"link set {h.veth} master {self.bridge} up",
            ]
        _run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")
        # Once Docker has run, FORWARD's policy is DROP and bridged frames go through it.
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        _run(["iptables", "-w", "-I", *rule])
        self._forward_rule = rule

    def _start_inits(self) -> None:
        mounts = _cgroup_mounts()
        for h in self.hosts:
            lib = etc = ""
            if self.docker:
                lib, etc = str(h.dir / "docker-lib"), str(h.dir / "docker-etc")
                os.mkdir(lib, 0o710)
                os.mkdir(etc, 0o700)
                # The bind mounts need mount points; a Debian docker.io install has /etc/docker
                # but /var/lib/docker only once the system daemon ran.
                Path("/var/lib/docker").mkdir(mode=0o710, exist_ok=True)
                Path("/etc/docker").mkdir(mode=0o755, exist_ok=True)
            argv = [
                "ip", "netns", "exec", h.netns,
                "unshare", "--uts", "--mount", "--propagation", "private", "--",
                "/bin/sh", "-c", INIT_SCRIPT, "testbed-init",
                h.name, f"{h.addr}/24", lib, etc, *mounts,
            ]  # fmt: skip
            # `ip netns exec` and `unshare` (without --fork) exec, so this pid ends up as the
            # `sleep infinity` that holds the host's namespaces.
            h._init = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a ^C reaches pytest only, which tears down in order
            )
            h.pid = h._init.pid
        deadline = time.monotonic() + STEP_TIMEOUT
        for h in self.hosts:
            self._wait_ready(h, deadline)

    @staticmethod
    def _wait_ready(h: TestHost, deadline: float) -> None:
        p = h._init
        assert p is not None and p.stdout is not None and p.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(p.stdout, selectors.EVENT_READ)
            line = b""
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = p.stdout.readline()
        if line.strip() != b"ready":
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=1)
            err = p.stderr.read().decode(errors="replace").strip() if p.poll() is not None else ""
            raise TestbedError(f"init of {h.name} ({h.netns}) failed: {err or 'no ready line'}")
        # Nothing writes to these pipes any more: close our ends, so no fd leaks per host.
        p.stdout.close()
        p.stderr.close()

    def _nsenter(self, h: TestHost) -> list[str]:
        return ["nsenter", "-t", str(h.pid), "-n", "-m", "-u", "--"]

    def _spawn(self, h: TestHost, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as f:
            return subprocess.Popen(
                self._nsenter(h) + argv,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                # Its own process group: a ^C in the test run reaches pytest, which tears down
                # in order, rather than every daemon at once.
                start_new_session=True,
            )

    def _spawn_sshd(self, h: TestHost) -> None:
        log = h.dir / "sshd.log"
        # nsenter without -p execs, so the Popen's pid is the listening sshd.
        h._sshd = self._spawn(
            h, [SSHD, "-D", "-f", str(h.dir / "sshd_config"), "-E", str(log)], log
        )

    def _wait_sshd(self, h: TestHost) -> None:
        """Until ADDR:22 accepts (from the root namespace, through the bridge)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            p = h._sshd
            if p is None or p.poll() is not None:
                raise TestbedError(f"sshd of {h.name} exited: {_tail(h.dir / 'sshd.log')}")
            try:
                with socket.create_connection((h.addr, h.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TestbedError(
                        f"sshd of {h.name} not listening on {h.addr}:{h.port} after "
                        f"{STEP_TIMEOUT} s: {_tail(h.dir / 'sshd.log')}"
                    ) from None
                time.sleep(0.005)  # poll interval

    def _spawn_dockerd(self, h: TestHost) -> None:
        h._dockerd = self._spawn(h, [DOCKERD, "--shutdown-timeout", "2"], h.dir / "dockerd.log")

    def _wait_dockerd(self, h: TestHost) -> None:
        """Until GET /_ping on the host's docker.sock answers OK."""
        deadline = time.monotonic() + 60
        while True:
            p = h._dockerd
            if p is None or p.poll() is not None:
                raise TestbedError(f"dockerd of {h.name} exited: {_tail(h.dir / 'dockerd.log')}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(h.docker_socket))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                status = s.recv(4096).split(b"\r\n", 1)[0]
                if status.startswith(b"HTTP/1.") and b" 200 " in status + b" ":
                    return
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"dockerd of {h.name} not answering after 60 s: {_tail(h.dir / 'dockerd.log')}"
                )
            time.sleep(0.02)  # poll interval

    def _stop_dockerds(self) -> None:
        """SIGTERM all dockerds at once (they stop containers and containerd), then wait."""
        procs = [h._dockerd for h in self.hosts if h._dockerd is not None]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()

    # -- the API for tests ----------------------------------------------------------------

    def host(self, name: str) -> TestHost:
        """The host called ``name``."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def exec(
        self,
        host: TestHost,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the host's network, mount and UTS namespaces (no shell)."""
        return _run(self._nsenter(host) + list(argv), check=check, timeout=timeout, input=input)

    def kill_sshd(self, host: TestHost, sessions: bool = True) -> None:
        """Kill the host's sshd: the port refuses from now on.

        With ``sessions`` (the default) its open connections die too, as when a host goes
        down; without, they live on, as after a real sshd restart.
        """
        p = host._sshd
        if p is None:
            return
        children: list[psutil.Process] = []
        if sessions and p.poll() is None:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(p.pid).children(recursive=True)
        # The listener first, so it forks no new session while the others die.
        if p.poll() is None:
            p.kill()
        p.wait(timeout=5)
        for c in children:
            with contextlib.suppress(psutil.Error):
                c.kill()
        _wait_dead(children, timeout=5)
        if children:  # a killed login shell may have held pyenv's lock: do not let it linger
            _clear_stale_shell_locks(max_age=0.0)
        host._sshd = None

    def start_sshd(self, host: TestHost) -> None:
        """Start the host's sshd again (same config and host key); return once it accepts."""
        if host.sshd_pid is not None:
            raise TestbedError(f"sshd of {host.name} is already running")
        self._spawn_sshd(host)
        self._wait_sshd(host)

    def kill_dockerd(self, host: TestHost) -> None:
        """SIGKILL the host's dockerd and the containerd it runs, as a crash of the engine would.

        Containers' shims live on, as they do on a real host; the next dockerd finds them.
        """
        p = host._dockerd
        if p is None:
            return
        children: list[psutil.Process] = []
        if p.poll() is None:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(p.pid).children(recursive=False)
            p.kill()
        p.wait(timeout=5)
        for c in children:
            with contextlib.suppress(psutil.Error):
                c.kill()
        _wait_dead(children, timeout=5)
        # A killed child may stay a zombie (nobody reaps it here), and dockerd would take its
        # pid file for a live containerd and wait on it forever.
        pidfile = Path(f"/proc/{host.pid}/root/run/docker/containerd/containerd.pid")
        pidfile.unlink(missing_ok=True)
        host._dockerd = None

    def start_dockerd(self, host: TestHost) -> None:
        """Start the host's dockerd again (same data dir); return once it answers /_ping."""
        if not self.docker:
            raise TestbedError("this testbed was made without docker")
        if host._dockerd is not None and host._dockerd.poll() is None:
            raise TestbedError(f"dockerd of {host.name} is already running")
        self._spawn_dockerd(host)
        self._wait_dockerd(host)

    def replace_host_key(self, host: TestHost) -> str:
        """Give the host a new host key (known_hosts keeps the old one); return the new line."""
        running = host.sshd_pid is not None
        self.kill_sshd(host)
        for path in (host.host_key_path, Path(f"{host.host_key_path}.pub")):
            path.unlink(missing_ok=True)
        p = self._keygen(host.host_key_path)
        _, err = p.communicate(timeout=STEP_TIMEOUT)
        if p.returncode != 0:
            raise TestbedError(f"ssh-keygen -f {host.host_key_path}: {err.strip()}")
        host.host_pubkey = self._pubkey(host.host_key_path)
        if running:
            self.start_sshd(host)
        return host.host_pubkey

    def set_link(self, host: TestHost, up: bool) -> None:
        """Cut (or restore) the host's cable: packets are dropped silently, no RST, as in a
        network partition (unlike kill_sshd, whose port refuses at once)."""
        _run(["ip", "link", "set", host.veth, "up" if up else "down"])


def _wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Until each is gone or a zombie (its reaper is init, not us). psutil.wait_procs polls
    with a growing interval and costs about a second here."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        if not alive:
            return
        time.sleep(0.005)  # poll interval
    raise TestbedError(f"processes survive SIGKILL: {[p.pid for p in procs]}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError as e:
        return f"(no log: {e})"


# ---------------------------------------------------------------------------------------------
# pytest fixtures (conftest imports these; `from tests.testbed import testbed` works too)


# Each fixture is registered under its public name while its function has another, so a test
# module can import it (`from tests.testbed import testbed_fixture`) without the parameters
# that use it shadowing the import; `testbed` and `testbed_factory` are aliases for conftest.
@pytest.fixture(name="testbed")
def testbed_fixture() -> Iterator[Testbed]:
    """Three hosts without docker; skipped (failed under LLMAOS_REQUIRE_INTEGRATION=1) when a
    testbed cannot be built here."""
    reason = testbed_available()
    need(reason is None, reason or "")
    with Testbed(n=3) as tb:
        yield tb


@pytest.fixture(name="testbed_factory")
def testbed_factory_fixture() -> Iterator[Callable[..., Testbed]]:
    """``make(n=3, docker=False, names=None)``: testbeds closed after the test, in reverse."""
    made: list[Testbed] = []

    def make(**kwargs: Any) -> Testbed:
        reason = docker_available() if kwargs.get("docker") else testbed_available()
        need(reason is None, reason or "")
        tb = Testbed(**kwargs).start()
        made.append(tb)
        return tb

    try:
        yield make
    finally:
        for tb in reversed(made):
            tb.close()


testbed = testbed_fixture
testbed_factory = testbed_factory_fixture
