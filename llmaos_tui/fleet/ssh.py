"""The SSH link: one asyncssh connection per host, carrying the agent's channel.

``open`` connects (at most ``limiter``'s count of connects at once, so a large fleet
does not trip sshd's MaxStartups; a host waiting on the operator's answer about its key
holds no slot), verifies the host key against known_hosts, pushes the
agent when the host has none of this protocol (:mod:`deploy`: the interpreter found as
users expect, psutil wheels where macOS and Windows need them), and runs it with
``attach`` on an exec channel (:mod:`~llmaos_tui.fleet.ssh_channel`). The watcher above
reconnects with backoff; one slow host never stalls another because each has its own
task and its own timeouts. A refused login or host key raises
:class:`~llmaos_tui.fleet.link.AuthRefused`, which the watcher does not retry until asked.

Host keys are always verified. An unknown key is put to the operator (``ask``,
the console's trust dialog) and written to known_hosts only when they trust it;
with nobody to ask it is refused. A refusal is :class:`AuthRefused`, so the watcher
holds the host down without asking again until the operator retries it. A key that
differs from the one known_hosts has for that host is refused outright, loudly: that
is what an attack looks like.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.config import SSHClientConfig

from llmaos_tui.fleet import deploy
from llmaos_tui.fleet.deploy import WheelSource
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import AuthRefused, Link, LinkDown, Transport
from llmaos_tui.fleet.ssh_channel import SshTransport
from llmaos_tui.fleet.ssh_channel import ssh_reason as _ssh_reason

__all__ = ["CIPHERS", "HostKeyQuestion", "SshLink", "SshOptions", "SshTransport", "connect"]


@dataclass(frozen=True)
class HostKeyQuestion:
    """What the operator is asked about an unknown host key."""

    name: str
    target: str
    key_type: str
    fingerprint: str
    known_hosts: str


TrustAsker = Callable[[HostKeyQuestion], Awaitable[bool]]


# Every byte a link carries is decrypted in Python's process: AES-GCM is one C call a packet
# where asyncssh's default first choice, chacha20-poly1305, is several. Measured: a move's
# copy about 12% faster; the console headless at 1,000 hosts 24.6% -> 18.9% of a core. The
# rest stay as fallbacks for servers that lack it. Offered only where the user's ssh config
# names no Ciphers for the host: theirs is a choice (a policy, a server's need), ours a default.
CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]


@dataclass
class SshOptions:
    """How to reach hosts; the defaults are what ``ssh`` itself would use."""

    known_hosts: Path = field(default_factory=lambda: Path.home() / ".ssh" / "known_hosts")
    client_keys: list[str] | None = None  # None: ssh-agent, IdentityFile, default keys
    config: list[str] | None = None  # None: ~/.ssh/config; [] ignores it
    use_agent: bool = True  # ssh-agent from SSH_AUTH_SOCK
    connect_timeout: float = 10.0
    keepalive_interval: float = 5.0
    keepalive_count_max: int = 3
    deploy: bool = True  # set the agent up (deploy.prepare); False runs the host's llmaos-agent
    wheels: WheelSource = field(default_factory=WheelSource)
    """Where psutil wheels for macOS and Windows hosts come from; one for the whole fleet,
    so hosts of one kind share one download."""


class _KeyWitness(asyncssh.SSHClient):
    """Keeps the key asyncssh could not verify, so the link can say what it was."""

    def __init__(self) -> None:
        self.unverified: tuple[str, str, int, asyncssh.SSHKey] | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.unverified = (host, addr, port, key)
        return False  # only known_hosts decides; the operator is asked outside asyncssh


class SshLink(Link):
    def __init__(
        self,
        spec: HostSpec,
        *,
        options: SshOptions | None = None,
        limiter: asyncio.Semaphore | None = None,
        ask: TrustAsker | None = None,
    ) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.options = options or SshOptions()
        self.limiter = limiter or asyncio.Semaphore(16)
        self.ask = ask
        self.conn: asyncssh.SSHClientConnection | None = None
        self.python_used: str | None = None  # the interpreter the agent runs under
        self._config_ciphers = False
        """Whether the user's ssh config sets Ciphers for this host (read at each connect)."""

    @property
    def windows(self) -> bool:
        return self.spec.os == "windows"

    @property
    def target(self) -> str:
        return self.spec.target

    async def open(self) -> Transport:
        conn = await self._connect()
        try:
            command = await self._prepare(conn) if self.options.deploy else "llmaos-agent attach"
            o = self.options
            transport = SshTransport(conn, self, (o.keepalive_interval, o.keepalive_count_max))
            await transport.start(command)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return transport

    async def _prepare(self, conn: asyncssh.SSHClientConnection) -> str:
        self.phase("deploying")
        try:
            plan = await deploy.prepare(
                conn,
                python=self.spec.python,
                windows=self.windows,
                agent=self.spec.agent,
                wheel_mode=self.spec.wheels,
                source=self.options.wheels,
            )
        except deploy.DeployError as exc:
            raise LinkDown(str(exc)) from None
        except (asyncssh.Error, OSError) as exc:
            raise LinkDown(f"cannot set up the agent: {_ssh_reason(exc)}") from exc
        self.python_used = plan.python.command if plan.python else None
        return plan.command

    def _connect_options(self) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = {
            "known_hosts": str(o.known_hosts),
            "connect_timeout": o.connect_timeout,
            "keepalive_interval": o.keepalive_interval,
            "keepalive_count_max": o.keepalive_count_max,
        }
        if o.config is not None:
            kw["config"] = o.config
        if o.client_keys is not None:
            kw["client_keys"] = o.client_keys
        if not o.use_agent:
            kw["agent_path"] = None
        s = self.spec
        if s.user:
            kw["username"] = s.user
        if s.port:
            kw["port"] = s.port
        if s.identity:
            kw["client_keys"] = [s.identity]
        if s.jump:
            kw["tunnel"] = s.jump
        if not self._config_ciphers:
            kw["encryption_algs"] = CIPHERS
        return kw

    def _read_config_ciphers(self) -> bool:
        """Whether the ssh config asyncssh will read for this host sets Ciphers: parsed as
        asyncssh parses it (the same files, host, port and user), so a ``Host`` or
        ``Match`` block that names the host counts and one for another host does not. A
        config that does not parse is asyncssh's to report at the connect."""
        o, s = self.options, self.spec
        if o.config is None:  # asyncssh's default: ~/.ssh/config when readable
            default = Path("~", ".ssh", "config").expanduser()
            paths: list[str] = [str(default)] if os.access(default, os.R_OK) else []
        else:
            paths = list(o.config)
        if not paths:
            return False
        try:
            config = SSHClientConfig.load(
                None, paths, False, False, False, getpass.getuser(),
                s.user or (), s.host, s.port or (),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, asyncssh.Error):
            return False
        return config.get("Ciphers") is not None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        _ensure_file(self.options.known_hosts)
        # Read off the loop: a config's ``Match exec`` runs a command.
        self._config_ciphers = await asyncio.get_running_loop().run_in_executor(
            None, self._read_config_ciphers
        )
        for _ in range(2):  # the second try follows the operator trusting the key
            witness = _KeyWitness()

            def factory(w: _KeyWitness = witness) -> _KeyWitness:
                return w

            try:
                # Only the connect itself holds a slot: the operator may take minutes over
                # a key, and a fleet of new hosts asking at once must not hold every slot
                # while the hosts already known wait behind them.
                async with self.limiter:
                    conn, _client = await asyncssh.create_connection(
                        factory, self.spec.host, **self._connect_options()
                    )
                self.login = conn.get_extra_info("username") or self.spec.user
                return conn
            except asyncssh.HostKeyNotVerifiable as exc:
                # Key and login refusals are AuthRefused: the watcher does not retry them
                # until asked, since each retry is one more login that will fail.
                if witness.unverified is None:
                    raise AuthRefused(f"host key not verifiable: {exc.reason}") from exc
                if not await self._trust(*witness.unverified):
                    raise AuthRefused(self._refused_reason) from exc
            except asyncssh.PermissionDenied as exc:
                raise AuthRefused(f"SSH login refused: {exc.reason}") from exc
            except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
                raise LinkDown(f"cannot connect to {self.spec.target}: {_ssh_reason(exc)}") from exc
        raise AuthRefused("the host key changed between two connects")

    async def _trust(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        kh = self.options.known_hosts
        fp = key.get_fingerprint("sha256")
        known = asyncssh.read_known_hosts(str(kh)).match(host, addr, port)[0]
        if known:
            self._refused_reason = (
                f"HOST KEY CHANGED for {host}: it now offers {key.get_algorithm()} {fp}, "
                f"which is not the key in {kh}. Refused: this may be an attack. If the "
                f"change is expected, remove the old key (ssh-keygen -R {host}) and reconnect."
            )
            return False
        refused = f"unknown host key {key.get_algorithm()} {fp} refused: not trusted"
        if self.ask is None:
            self._refused_reason = f"{refused} (trust it from the console, or add it to {kh})"
            return False
        self._refused_reason = f"{refused} at the console; nothing written to {kh}"
        question = HostKeyQuestion(self.name, self.spec.target, key.get_algorithm(), fp, str(kh))
        if not await self.ask(question):
            return False
        pattern = host if port == 22 else f"[{host}]:{port}"
        line = f"{pattern} {key.export_public_key('openssh').decode().strip()}\n"
        with kh.open("a", encoding="utf-8") as f:
            f.write(line)
        return True

    _refused_reason = "host key refused"

    def phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)


async def connect(
    spec: HostSpec,
    options: SshOptions | None = None,
    *,
    ask: TrustAsker | None = None,
    **extra: Any,
) -> asyncssh.SSHClientConnection:
    """A verified SSH connection to ``spec``, made exactly as a link makes its own.

    For operations that need their own channels beside the agent's (a container move's
    forward of the engine socket). Host keys, keys, config and jump hosts are handled as
    for :class:`SshLink`; failures raise :class:`LinkDown` with the reason. ``extra``
    asyncssh options are added for this connection only (a bulk transfer's ciphers).
    """
    link = SshLink(spec, options=options, ask=ask)
    if extra:
        base = link._connect_options
        setattr(link, "_connect_options", lambda: {**base(), **extra})  # noqa: B010
    return await link._connect()


def _ensure_file(path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
