"""The inventory: which hosts the console watches, and how to reach each one.

Hosts come from two places, merged into one list of :class:`HostSpec`:

- ``-H`` targets on the command line, ``[user@]host[:port]``, where ``host`` may hold
  ranges (``gpu[1-8]``, ``n[01-16]``, ``rack[1,3][1-4]``) and IPv6 literals go in
  brackets (``[::1]:2222``, ``alice@[fe80::1%eth0]``);
- the hosts file, ``hosts.toml`` in the console's config directory
  (:func:`default_hosts_path`, by platformdirs; ``--hosts-file`` names another).

The hosts file::

    [defaults]            # optional; applies to every host, -H targets included
    user = "ops"
    python = "python3"

    [groups.gpu]          # a group: its settings apply to its hosts
    hosts = ["gpu[1-4]", "alice@10.0.0.7:2222"]
    python = "/opt/py311/bin/python"
    jump = "bastion"

    [hosts.win1]          # one host by name, with its own settings
    host = "10.0.0.9"     # optional: the name itself is the host when left out
    user = "admin"
    os = "windows"
    group = "gpu"         # optional: join a group (so does being named in its hosts)

    [slurm.hpc]           # a Slurm cluster whose jobs the console shows and acts on
    host = "login1"       # a host of this file whose shell has squeue/sbatch/scontrol,
                          # or "local" for this machine

Settings, in every table: ``user``, ``port``, ``python`` (the remote interpreter
command, e.g. ``"py -3"``), ``jump`` (ProxyJump style ``[user@]host[:port]``, hops
separated by commas), ``identity`` (an IdentityFile path; ``~`` expands) and ``os``
(``"posix"`` or ``"windows"``: how remote commands are built). Precedence, highest
first: the host's own table, the user and port written in a target
(``alice@gpu1:2222``), its group, ``[defaults]``; what none sets stays ``None`` so
``~/.ssh/config`` and ssh-agent decide, exactly as for ``ssh``. A name from
``~/.ssh/config`` is kept as it is (asyncssh reads that file itself and resolves the
alias); resolving it here would bypass its HostName, User, Port and ProxyJump.

Unknown keys and wrong types are errors that name the file, the line where it can be
found, the table and the key: a typo must not silently connect as the wrong user.
Host names and users are restricted to characters that cannot reach a shell or become
an ssh option. A ``-H`` name that the file has picks the file's host (``-H gpu2``
connects as the file says); display names are otherwise unique across ``-H`` and the
file. The local machine is not part of the inventory; the CLI adds it unless
``--no-local``.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import platformdirs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_EXPANSION = 10_000
"""Names one pattern may expand to: ``h[1-100000000]`` is a typo, not a fleet."""

OS_KINDS = ("posix", "windows")
AGENT_MODES = ("auto", "push", "installed")
"""``agent``: the host's own llmaos-agent when it speaks our protocol, else the pushed
zipapp (auto); always the zipapp (push); only the host's own (installed)."""
WHEEL_MODES = ("auto", "push", "never")
"""``wheels``: psutil pushed where the agent needs it and the host lacks it, macOS and
Windows (auto); pushed to the host whatever it is, Linux too (push: tests the path, or
gives a Linux agent psutil's collectors); never."""

_HOST_CHARS = re.compile(r"[A-Za-z0-9._-]+\Z")
_USER_CHARS = re.compile(r"[A-Za-z0-9._-]+\Z")
_RANGE_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_MAX_DIGITS = 9  # beyond this a range cannot fit MAX_EXPANSION anyway; keeps int() cheap
_MAX_HOST_LEN = 255


class InventoryError(ValueError):
    """A target or hosts file the console cannot use; the message says where and why."""


@dataclass(frozen=True)
class HostSpec:
    """One host of the fleet and how to reach it."""

    name: str  # display name, unique in the fleet
    host: str  # what to connect to: hostname, IP or ssh-config alias
    user: str | None = None  # None: ssh config / local user decides
    port: int | None = None  # None: ssh config / 22
    python: str | None = None  # remote interpreter command; None = auto
    jump: str | None = None  # ProxyJump-style "user@host:port" (or alias)
    identity: str | None = None  # IdentityFile path; None = ssh config/agent
    group: str = ""
    os: str = "posix"  # "posix" or "windows": how remote commands are built
    agent: str = "auto"  # "auto", "push" or "installed": see fleet.deploy.prepare
    wheels: str = "auto"  # "auto", "push" or "never": psutil wheels, see fleet.deploy.prepare

    @property
    def target(self) -> str:
        """``alice@10.0.0.7:2222`` style, for display."""
        return _format_target(self.user, self.host, self.port)


def _format_target(user: str | None, host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address needs its brackets
    return f"{user + '@' if user else ''}{shown}{f':{port}' if port else ''}"


# --- ranges -----------------------------------------------------------------------------


def expand(pattern: str) -> list[str]:
    """Expand ``gpu[2-4]`` to ``gpu2 gpu3 gpu4``.

    ``n[01-03]`` keeps the zero padding, ``a[1,3,5-6]`` takes lists, several brackets
    give every combination. A bracket holding ``:`` is an IPv6 literal, kept as is.
    """
    try:
        return _expand(pattern)
    except InventoryError as exc:
        raise InventoryError(f"{pattern!r}: {exc}") from None


def _expand(pattern: str) -> list[str]:
    if not pattern:
        raise InventoryError("empty host name")
    pieces: list[list[str]] = []
    count = 1
    # re.split with a group alternates literal text (even indices) and brackets (odd).
    for i, token in enumerate(re.split(r"(\[[^\[\]]*\])", pattern)):
        if i % 2 == 0:
            if "[" in token or "]" in token:
                raise InventoryError("unbalanced '[' or ']'")
            if token:
                pieces.append([token])
            continue
        body = token[1:-1]
        if ":" in body:
            pieces.append([token])
            continue
        values = _range_values(body)
        count *= len(values)
        if count > MAX_EXPANSION:
            raise InventoryError(f"expands to more than {MAX_EXPANSION:,} names")
        pieces.append(values)
    names = ["".join(p) for p in itertools.product(*pieces)]
    if len(set(names)) != len(names):
        # Two combinations can meet, as in a[1,11][1,11] -> a111 twice.
        twice = next(n for n in names if names.count(n) > 1)
        raise InventoryError(f"names {twice} twice")
    return names


def _range_values(body: str) -> list[str]:
    hint = "write [1-4], [01-16] or [1,3,5-7]"
    if not body:
        raise InventoryError(f"empty brackets []; {hint}")
    values: list[str] = []
    for item in body.split(","):
        m = _RANGE_ITEM.match(item)
        if not m:
            raise InventoryError(f"[{body}] is not a range; {hint}")
        lo_text, hi_text = m.group(1), m.group(2) or m.group(1)
        if max(len(lo_text), len(hi_text)) > _MAX_DIGITS:
            raise InventoryError(f"number in [{body}] too long")
        lo, hi = int(lo_text), int(hi_text)
        if lo > hi:
            raise InventoryError(
                f"range {lo_text}-{hi_text} is reversed; write {hi_text}-{lo_text}"
            )
        if len(values) + hi - lo + 1 > MAX_EXPANSION:
            raise InventoryError(f"[{body}] holds more than {MAX_EXPANSION:,} names")
        padded = any(len(t) > 1 and t.startswith("0") for t in (lo_text, hi_text))
        width = max(len(lo_text), len(hi_text)) if padded else 0
        values += [str(n).zfill(width) for n in range(lo, hi + 1)]
    return values


# --- targets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """A parsed ``[user@]host[:port]``, host still a pattern; user and port as written."""

    user: str | None
    host: str
    port: int | None
    ipv6: bool


def parse_target(
    text: str,
    *,
    user: str | None = None,
    port: int | None = None,
    python: str | None = None,
    jump: str | None = None,
    identity: str | None = None,
    group: str = "",
    os: str = "posix",
    agent: str = "auto",
    wheels: str = "auto",
) -> list[HostSpec]:
    """The hosts ``[user@]host[:port]`` names, ranges expanded.

    The keyword arguments are defaults; a user or port written in ``text`` wins. The
    name of each host is its host, with ``:port`` when the target gives one, so the
    same address on two ports makes two hosts.
    """
    try:
        t = _split_target(text)
        hosts = [t.host] if t.ipv6 else _expand(t.host)
        for h in hosts:
            _check_host(h)
    except InventoryError as exc:
        raise InventoryError(f"{text!r}: {exc}") from None
    return [
        HostSpec(
            name=_name_of(h, t.port),
            host=h,
            user=t.user or user,
            port=t.port or port,
            python=python,
            jump=jump,
            identity=identity,
            group=group,
            os=os,
            agent=agent,
            wheels=wheels,
        )
        for h in hosts
    ]


def _name_of(host: str, port: int | None) -> str:
    return _format_target(None, host, port) if port else host


def _split_target(text: str) -> _Target:
    if not text or not text.strip():
        raise InventoryError("empty host target")
    if any(c.isspace() for c in text):
        raise InventoryError("whitespace in a host target")
    user: str | None = None
    rest = text
    if "@" in text:
        user, _, rest = text.partition("@")
        _check_user(user)
    if rest.startswith("[") and ":" in rest[: rest.find("]") + 1]:
        close = rest.find("]")
        addr, after = rest[1:close], rest[close + 1 :]
        if after and not after.startswith(":"):
            raise InventoryError(f"unexpected {after!r} after [{addr}]")
        _check_ipv6(addr)
        return _Target(user, addr, _parse_port(after[1:]) if after else None, True)
    if rest.count(":") >= 2 and "[" not in rest:
        # Bare IPv6 as ssh takes it: with two colons or more there is no port to split.
        _check_ipv6(rest)
        return _Target(user, rest, None, True)
    host, colon, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    return _Target(user, host, _parse_port(port_text) if colon else None, False)


def _parse_port(text: str) -> int:
    if not _PORT.match(text):
        raise InventoryError(f"port {text!r} is not a number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise InventoryError(f"port {port} is out of range 1-65535")
    return port


def _check_host(host: str) -> None:
    if not host:
        raise InventoryError("empty host name")
    if ":" in host:  # only IPv6 addresses get here with colons
        _check_ipv6(host)
        return
    if host.startswith("-"):
        # Never let a host name become an option of ssh or of a ProxyCommand.
        raise InventoryError(f"host {host!r} starts with '-'")
    if len(host) > _MAX_HOST_LEN or not _HOST_CHARS.match(host):
        raise InventoryError(
            f"host {host!r}: a host name holds only letters, digits, '-', '.' and '_'"
        )


def _check_user(user: str) -> None:
    if not user:
        raise InventoryError("empty user before '@'")
    if user.startswith("-"):
        raise InventoryError(f"user {user!r} starts with '-'")
    if not _USER_CHARS.match(user):
        raise InventoryError(f"user {user!r}: a user holds only letters, digits, '-', '.' and '_'")


def _check_ipv6(addr: str) -> None:
    address, _, zone = addr.partition("%")
    # ipaddress accepts any zone text at all, so the zone gets the host-name rule.
    if "%" in addr and not _HOST_CHARS.match(zone):
        raise InventoryError(f"bad zone in IPv6 address {addr!r}")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise InventoryError(f"{addr!r} is not an IPv6 address") from None


# --- the hosts file ---------------------------------------------------------------------


def default_hosts_path() -> Path:
    """``hosts.toml`` in the console's config directory (``~/.config/llmaos-tui`` on Linux)."""
    return Path(platformdirs.user_config_dir("llmaos-tui", appauthor=False)) / "hosts.toml"


_SETTING_KEYS = ("user", "port", "python", "jump", "identity", "os", "agent", "wheels")
_GROUP_KEYS = ("hosts", *_SETTING_KEYS)
_HOST_KEYS = ("host", "group", *_SETTING_KEYS)
_SLURM_KEYS = ("host",)
_TOP_KEYS = ("defaults", "groups", "hosts", "slurm")
LOCAL = "local"
"""A Slurm cluster's ``host`` for this machine (the console's name for it)."""


@dataclass(frozen=True)
class SlurmSpec:
    """A ``[slurm.NAME]`` table: the cluster's name and where its commands run (the name
    of a host of the file, or :data:`LOCAL`)."""

    name: str
    host: str

    @property
    def local(self) -> bool:
        return self.host == LOCAL


def load_slurm_clusters(path: Path) -> tuple[list[SlurmSpec], dict[str, HostSpec]]:
    """The Slurm clusters a hosts file names, and its hosts by name (the login hosts are
    among them); a missing file names none."""
    if not path.exists():
        return [], {}
    f, data = _load_toml(path)
    _defaults, entries = _read_hosts_file(path)
    hosts = {spec.name: spec for spec, _source in entries}
    return _slurm_tables(f, data, hosts), hosts


def _slurm_tables(f: _File, data: dict[str, Any], hosts: dict[str, HostSpec]) -> list[SlurmSpec]:
    out = []
    for name, raw in _table(f, (), "slurm", data.get("slurm", {})).items():
        where = ("slurm", name)
        tbl = _table(f, ("slurm",), name, raw)
        for key in tbl:
            if key not in _SLURM_KEYS:
                allowed = ", ".join(_SLURM_KEYS)
                raise f.error(where, key, f"unknown key {key!r} (allowed: {allowed})")
        # The cluster's name ends up in job ids (slurm:NAME:JOBID): no ':' and bounded.
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", name):
            raise f.error(
                where, None, "a cluster name holds letters, digits, -, . and _ (at most 64)"
            )
        if "host" not in tbl:
            raise f.error(where, None, 'no host: set host = "NAME" (a host of this file) '
                          'or host = "local"')  # fmt: skip
        host = tbl["host"]
        if not isinstance(host, str):
            raise f.error(where, "host", f"must be a string, not {_kind(host)}")
        if host != LOCAL and host not in hosts:
            known = ", ".join(sorted(hosts)[:10]) or "none"
            raise f.error(
                where, "host",
                f"no host {host[:100]!r} in this file (its hosts: {known}); "
                'or host = "local" for this machine',
            )  # fmt: skip
        out.append(SlurmSpec(name=name, host=host))
    return out


def load_hosts_file(path: Path) -> list[HostSpec]:
    """The hosts a hosts file lists; a missing file lists none."""
    _defaults, entries = _read_hosts_file(path)
    return _unique(entries)


def build_inventory(
    targets: Sequence[str],
    hosts_file: Path | None,
    *,
    use_default_file: bool = True,
    named_only: bool = False,
) -> list[HostSpec]:
    """The ``-H`` targets, then the hosts file's other hosts; names must be unique.

    A target that names a host of the file picks that host, with its settings (a user
    written in the target, ``-H root@gpu1``, replaces the file's); a range picks each
    name the file has and makes a new host of the others. With ``named_only`` the
    result is the targets' hosts alone (a subcommand's ``-H``), else the file's hosts
    follow them. ``hosts_file`` names a file that must exist; without it the default
    file is read when ``use_default_file`` and present. The file's ``[defaults]``
    apply to the new hosts of ``-H`` too.
    """
    path = hosts_file
    if path is not None and not path.is_file():
        raise InventoryError(f"{path}: no such hosts file")
    if path is None and use_default_file:
        path = default_hosts_path()
    defaults, file_entries = _read_hosts_file(path) if path is not None else ({}, [])
    in_file = {spec.name: spec for spec, _source in file_entries}
    picked: set[str] = set()
    entries: list[tuple[HostSpec, str]] = []
    for text in targets:
        try:
            specs = parse_target(text, **defaults)
            written = _split_target(text).user
        except InventoryError as exc:
            raise InventoryError(f"-H {exc}") from None
        for spec in specs:
            known = in_file.get(spec.name) if spec.name not in picked else None
            if known is not None:
                picked.add(spec.name)
            chosen = spec if known is None else known
            if known is not None and written is not None:
                chosen = replace(known, user=written)
            entries.append((chosen, f"-H {text!r}"))
    if not named_only:
        entries += [(s, source) for s, source in file_entries if s.name not in picked]
    return _unique(entries)


def _unique(entries: list[tuple[HostSpec, str]]) -> list[HostSpec]:
    seen: dict[str, str] = {}
    for spec, source in entries:
        if spec.name in seen:
            raise InventoryError(
                f"two hosts named {spec.name!r}: from {seen[spec.name]} and from {source}"
            )
        seen[spec.name] = source
    return [spec for spec, _source in entries]


class _File:
    """A hosts file being read: its path and lines, to say where a mistake is."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def error(self, table: tuple[str, ...], key: str | None, what: str) -> InventoryError:
        return InventoryError(f"{self.where(table, key)}: {what}")

    def where(self, table: tuple[str, ...], key: str | None = None) -> str:
        line = self._line_of(table, key)
        place = f"{self.path}, line {line}" if line else str(self.path)
        label = "[" + ".".join(_toml_key(p) for p in table) + "]" if table else "top level"
        return f"{place}, {label}" + (f" {key}" if key else "")

    def _line_of(self, table: tuple[str, ...], key: str | None) -> int | None:
        # Best effort: tomllib reports no positions for its values, so find the
        # table's header, then the key under it; inline tables fall back to the parent.
        start = 0
        if table:
            header = re.compile(
                r"\s*\[\s*" + r"\s*\.\s*".join(_key_pattern(p) for p in table) + r"\s*\]"
            )
            found = [i for i, line in enumerate(self.lines) if header.match(line)]
            if not found:
                return self._line_of(table[:-1], table[-1]) if len(table) > 1 else None
            start = found[0] + 1
        if key is None:
            return start or None
        assign = re.compile(r"\s*" + _key_pattern(key) + r"\s*=")
        for i in range(start, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                break
            if assign.match(self.lines[i]):
                return i + 1
        return start or None


def _key_pattern(key: str) -> str:
    k = re.escape(key)
    return f"(?:{k}|\"{k}\"|'{k}')"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def _read_hosts_file(path: Path) -> tuple[dict[str, Any], list[tuple[HostSpec, str]]]:
    """The file's ``[defaults]``, and its hosts each with where it came from."""
    if not path.exists():
        return {}, []
    f, data = _load_toml(path)
    defaults, groups, tables = _top_tables(f, data)
    order, members = _group_order(f, defaults, groups, tables)
    entries: list[tuple[HostSpec, str]] = []
    for item, source in order:
        if isinstance(item, HostSpec):
            entries.append((item, source))
            continue
        spec = _from_table(f, item, tables[item], defaults, groups, members.get(item))
        entries.append((spec, f.where(("hosts", item))))
    # Checked whenever the file is read: a typo in a cluster's table fails the console
    # too, not only the request commands.
    _slurm_tables(f, data, {spec.name: spec for spec, _source in entries})
    return defaults, entries


def _load_toml(path: Path) -> tuple[_File, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{path}: not valid TOML: {exc}") from None
    return _File(path, text), data


_Tables = dict[str, dict[str, Any]]
# Host tables that a group lists, by name: the group they join, and the entry (its user
# and port) that lists them, with where that entry is.
_Members = dict[str, tuple[str, _Target, str]]


def _top_tables(f: _File, data: dict[str, Any]) -> tuple[dict[str, Any], _Tables, _Tables]:
    """``[defaults]``, ``[groups.*]`` and ``[hosts.*]``, each key checked."""
    for key in data:
        if key not in _TOP_KEYS:
            raise f.error((), key, f"unknown table {key!r} (allowed: {', '.join(_TOP_KEYS)})")
    defaults = _settings(
        f, ("defaults",), _table(f, (), "defaults", data.get("defaults", {})), _SETTING_KEYS
    )
    groups = {
        name: _settings(f, ("groups", name), _table(f, ("groups",), name, tbl), _GROUP_KEYS)
        for name, tbl in _table(f, (), "groups", data.get("groups", {})).items()
    }
    tables = {
        name: _settings(f, ("hosts", name), _table(f, ("hosts",), name, tbl), _HOST_KEYS)
        for name, tbl in _table(f, (), "hosts", data.get("hosts", {})).items()
    }
    for name in groups:
        if not _HOST_CHARS.match(name):
            raise f.error(("groups", name), None, "a group name holds letters, digits, -, . and _")
    for name, tbl in tables.items():
        _check_table(f, name, tbl, groups)
    return defaults, groups, tables


def _group_order(
    f: _File, defaults: dict[str, Any], groups: _Tables, tables: _Tables
) -> tuple[list[tuple[HostSpec | str, str]], _Members]:
    """The hosts in file order: each entry a spec, or the name of a host table that a group
    lists, which takes its place in the order once all groups are known (tables that no
    group lists come last)."""
    order: list[tuple[HostSpec | str, str]] = []
    members: _Members = {}
    for gname, group in groups.items():
        settings = {k: v for k, v in group.items() if k != "hosts"}
        for i, entry in enumerate(group.get("hosts", [])):
            source = f"{f.where(('groups', gname), 'hosts')} entry {entry!r}"
            t, hosts = _group_entry(f, gname, i, entry)
            for h in hosts:
                name = _name_of(h, t.port)
                if name not in tables:
                    layers = {**defaults, **settings, **_explicit(t)}
                    order.append((HostSpec(name=name, host=h, group=gname, **layers), source))
                    continue
                if name in members:
                    raise f.error(
                        ("groups", gname),
                        "hosts",
                        f"host {name!r} is listed again (first: {members[name][2]})",
                    )
                members[name] = (gname, _Target(t.user, h, t.port, t.ipv6), source)
                order.append((name, source))
    order += [(name, "") for name in tables if name not in members]
    return order, members


def _group_entry(f: _File, gname: str, i: int, entry: str) -> tuple[_Target, list[str]]:
    try:
        t = _split_target(entry)
        hosts = [t.host] if t.ipv6 else _expand(t.host)
        for h in hosts:
            _check_host(h)
    except InventoryError as exc:
        raise f.error(("groups", gname), "hosts", f"entry {i + 1} {entry!r}: {exc}") from None
    return t, hosts


def _explicit(t: _Target) -> dict[str, Any]:
    return {k: v for k, v in (("user", t.user), ("port", t.port)) if v is not None}


def _check_table(f: _File, name: str, tbl: dict[str, Any], groups: dict[str, Any]) -> None:
    where = ("hosts", name)
    if not name or any(c.isspace() or not c.isprintable() for c in name) or name[0] == "-":
        raise f.error(
            where, None, "a host name must be printable, without spaces, not start with '-'"
        )
    if "host" not in tbl:
        try:
            _check_host(name)
        except InventoryError as exc:
            raise f.error(where, None, f'{exc}; set host = "..." for it') from None
    if "group" in tbl and tbl["group"] not in groups:
        raise f.error(where, "group", f"no group {tbl['group']!r} (no [groups.{tbl['group']}])")


def _from_table(
    f: _File,
    name: str,
    tbl: dict[str, Any],
    defaults: dict[str, Any],
    groups: dict[str, dict[str, Any]],
    member: tuple[str, _Target, str] | None,
) -> HostSpec:
    gname = tbl.get("group", "")
    if member is not None:
        if gname and gname != member[0]:
            raise f.error(
                ("hosts", name),
                "group",
                f"says group {gname!r}, but {member[2]} puts it in group {member[0]!r}",
            )
        gname = member[0]
    group = {k: v for k, v in groups.get(gname, {}).items() if k != "hosts"}
    entry = _explicit(member[1]) if member else {}
    own = {k: v for k, v in tbl.items() if k not in ("host", "group")}
    host = tbl.get("host") or name
    layers = {**defaults, **group, **entry, **own}
    return HostSpec(name=name, host=host, group=gname, **layers)


def _table(f: _File, parent: tuple[str, ...], key: str, value: Any) -> dict[str, Any]:
    """``value``, found at ``parent.key``, if it is a table."""
    if not isinstance(value, dict):
        raise f.error(parent, key, f"must be a table, not {_kind(value)}")
    return value


def _settings(
    f: _File, table: tuple[str, ...], raw: dict[str, Any], allowed: tuple[str, ...]
) -> dict[str, Any]:
    """The keys of one table, checked for name, type and value."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise f.error(table, key, f"unknown key {key!r} (allowed: {', '.join(allowed)})")
        try:
            out[key] = _setting(key, value)
        except InventoryError as exc:
            raise f.error(table, key, str(exc)) from None
    return out


def _setting(key: str, value: Any) -> Any:
    if key == "port":
        return _port_setting(value)
    if key == "hosts":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InventoryError('must be a list of strings such as ["gpu[1-4]", "ops@db1"]')
        return value
    if not isinstance(value, str):
        raise InventoryError(f"must be a string, not {_kind(value)}")
    if not value or any(not c.isprintable() for c in value):
        raise InventoryError("must be a non-empty string of printable characters")
    check = _TEXT_SETTINGS.get(key)
    return value if check is None else check(value)


def _port_setting(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InventoryError(f"must be an integer, not {_kind(value)}")
    if not 1 <= value <= 65535:
        raise InventoryError(f"port {value} is out of range 1-65535")
    return value


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise InventoryError(f"must be one of {', '.join(map(repr, allowed))}, not {value!r}")
        return value

    return check


def _user_setting(value: str) -> str:
    _check_user(value)
    return value


def _jump_setting(value: str) -> str:
    for hop in value.split(","):
        _check_host(_split_target(hop).host)
    return value


def _python_setting(value: str) -> str:
    if value.startswith("-"):
        raise InventoryError(f"{value!r} starts with '-'")
    return value


def _table_host(value: str) -> str:
    t = _split_target(value)
    if t.user is not None or t.port is not None:
        raise InventoryError(f"{value!r}: set user and port with their own keys")
    _check_host(t.host)  # a range's '[' fails here: a host table is one host
    return t.host


_TEXT_SETTINGS: dict[str, Callable[[str], str]] = {
    "user": _user_setting,
    "os": _choice(OS_KINDS),
    "agent": _choice(AGENT_MODES),
    "wheels": _choice(WHEEL_MODES),
    "host": _table_host,
    "jump": _jump_setting,
    "identity": lambda v: str(Path(v).expanduser()),
    "python": _python_setting,
}
"""The string settings' own checks (each returns the value to keep)."""


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
