"""The inventory: -H targets with ranges, the hosts file, and how they merge."""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmaos_tui.fleet import inventory
from llmaos_tui.fleet.inventory import (
    MAX_EXPANSION,
    HostSpec,
    InventoryError,
    SlurmSpec,
    build_inventory,
    default_hosts_path,
    expand,
    load_hosts_file,
    load_slurm_clusters,
    parse_target,
)


def write(tmp_path: Path, text: str, name: str = "hosts.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def by_name(specs: list[HostSpec]) -> dict[str, HostSpec]:
    return {s.name: s for s in specs}


# --- ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("gpu1", ["gpu1"]),
        ("gpu[2-4]", ["gpu2", "gpu3", "gpu4"]),
        ("n[01-03]", ["n01", "n02", "n03"]),
        ("n[08-10]", ["n08", "n09", "n10"]),
        ("n[001-2]", ["n001", "n002"]),
        ("h[9-11]", ["h9", "h10", "h11"]),
        ("a[1,3,5-6]", ["a1", "a3", "a5", "a6"]),
        ("r[1-2]c[1-2].lab", ["r1c1.lab", "r1c2.lab", "r2c1.lab", "r2c2.lab"]),
        ("[1-2]x", ["1x", "2x"]),
        ("h[5]", ["h5"]),
        ("[::1]", ["[::1]"]),
    ],
)
def test_expand(pattern: str, names: list[str]) -> None:
    assert expand(pattern) == names


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("h[4-2]", "reversed"),
        ("h[1-3", "unbalanced"),
        ("h1-3]", "unbalanced"),
        ("h[]", "empty brackets"),
        ("h[a-c]", "not a range"),
        ("h[1,,2]", "not a range"),
        ("h[1-3,2]", "twice"),
        ("a[1,11][1,11]", "a111 twice"),
        ("", "empty"),
    ],
)
def test_expand_refuses(pattern: str, why: str) -> None:
    with pytest.raises(InventoryError, match=why) as err:
        expand(pattern)
    assert repr(pattern) in str(err.value)


def test_expand_caps_one_huge_range_before_building_it() -> None:
    # Refused from its bounds alone: a typo such as h[1-999999999] must not first
    # build its names (gigabytes). Two million would cost about 150 MB if built.
    tracemalloc.start()
    try:
        with pytest.raises(InventoryError, match="10,000"):
            expand("h[1-2000000]")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert len(expand(f"h[1-{MAX_EXPANSION}]")) == MAX_EXPANSION


def test_expand_caps_the_product_of_brackets() -> None:
    with pytest.raises(InventoryError, match="more than 10,000"):
        expand("r[1-101]c[1-100]")
    assert len(expand("r[1-100]c[1-100]")) == 10_000


def test_expand_refuses_absurd_numbers() -> None:
    with pytest.raises(InventoryError, match="too long"):
        expand("h[1-" + "9" * 5000 + "]")


@given(a=st.integers(min_value=0, max_value=500), span=st.integers(min_value=0, max_value=200))
def test_expand_range_gives_one_name_per_number(a: int, span: int) -> None:
    b = a + span
    names = expand(f"h[{a}-{b}]")
    assert len(names) == len(set(names)) == b - a + 1
    assert names[0] == f"h{a}" and names[-1] == f"h{b}"


@given(a=st.integers(min_value=1, max_value=50), b=st.integers(min_value=1, max_value=50))
def test_expand_reversed_ranges_always_refused(a: int, b: int) -> None:
    if a > b:
        with pytest.raises(InventoryError, match="reversed"):
            expand(f"h[{a}-{b}]")
    else:
        assert len(expand(f"h[{a}-{b}]")) == b - a + 1


# --- targets ----------------------------------------------------------------------------


def test_plain_name_keeps_the_alias_unresolved() -> None:
    # asyncssh applies ~/.ssh/config to the alias itself: it must reach it untouched.
    (spec,) = parse_target("gpu1")
    assert spec == HostSpec(name="gpu1", host="gpu1")
    assert spec.target == "gpu1"


def test_user_and_port() -> None:
    (spec,) = parse_target("alice@10.0.0.7:2222")
    assert (spec.user, spec.host, spec.port) == ("alice", "10.0.0.7", 2222)
    assert spec.target == "alice@10.0.0.7:2222"
    assert spec.name == "10.0.0.7:2222"  # two ports of one address are two hosts


def test_ranges_with_user_and_port() -> None:
    specs = parse_target("ops@gpu[2-4]:2200")
    assert [s.name for s in specs] == ["gpu2:2200", "gpu3:2200", "gpu4:2200"]
    assert {(s.user, s.port) for s in specs} == {("ops", 2200)}


def test_defaults_apply_below_what_the_target_writes() -> None:
    (a,) = parse_target("gpu1", user="ops", port=2200, python="python3", os="windows")
    assert (a.user, a.port, a.python, a.os) == ("ops", 2200, "python3", "windows")
    (b,) = parse_target("alice@gpu1:22", user="ops", port=2200)
    assert (b.user, b.port) == ("alice", 22)


@pytest.mark.parametrize(
    ("text", "host", "port", "target"),
    [
        ("[::1]:2222", "::1", 2222, "[::1]:2222"),
        ("[::1]", "::1", None, "[::1]"),
        ("alice@[fe80::1]", "fe80::1", None, "alice@[fe80::1]"),
        ("alice@[fe80::1%eth0]:22", "fe80::1%eth0", 22, "alice@[fe80::1%eth0]:22"),
        ("fe80::1", "fe80::1", None, "[fe80::1]"),
        ("2001:db8::7", "2001:db8::7", None, "[2001:db8::7]"),
    ],
)
def test_ipv6(text: str, host: str, port: int | None, target: str) -> None:
    (spec,) = parse_target(text)
    assert (spec.host, spec.port, spec.target) == (host, port, target)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("gpu1;reboot", "only letters"),
        ("$(reboot)", "only letters"),
        ("`id`", "only letters"),
        ("a|b", "only letters"),
        ("gpu 1", "whitespace"),
        ("gpu1\n", "whitespace"),
        ("-oProxyCommand=id", "starts with '-'"),
        ("-gpu1", "starts with '-'"),
        ("a;b@gpu1", "user"),
        ("-l@gpu1", "starts with '-'"),
        ("$(id)@gpu1", "user"),
        ("@gpu1", "empty user"),
        ("ops@", "empty host"),
        ("gpu1:0", "out of range"),
        ("gpu1:70000", "out of range"),
        ("gpu1:65536", "out of range"),
        ("gpu1:", "not a number"),
        ("gpu1:ssh", "not a number"),
        ("gpu1:-22", "not a number"),
        ("[::1]:0", "out of range"),
        ("[::1]x", "unexpected"),
        ("[fe80::1%;id]", "zone"),
        ("[not:an:ip:address:at:all]", "not an IPv6"),
        ("gpu[4-2]", "reversed"),
        ("a@b@c", "only letters"),
    ],
)
def test_bad_targets_refused(text: str, why: str) -> None:
    with pytest.raises(InventoryError, match=why) as err:
        parse_target(text)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize("port", [1, 22, 65535])
def test_port_bounds_accepted(port: int) -> None:
    assert parse_target(f"h:{port}")[0].port == port


# --- the hosts file ---------------------------------------------------------------------

EXAMPLE = """
    [defaults]
    user = "ops"
    python = "python3"

    [groups.gpu]
    hosts = ["gpu[1-4]", "alice@10.0.0.7:2222"]
    python = "/opt/py311/bin/python"
    jump = "bastion"

    [hosts.win1]
    host = "10.0.0.9"
    user = "admin"
    os = "windows"
"""


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_hosts_file(tmp_path / "nope.toml") == []


def test_example_file(tmp_path: Path) -> None:
    specs = load_hosts_file(write(tmp_path, EXAMPLE))
    assert [s.name for s in specs] == ["gpu1", "gpu2", "gpu3", "gpu4", "10.0.0.7:2222", "win1"]
    hosts = by_name(specs)
    # group over defaults: python; defaults where the group says nothing: user
    assert hosts["gpu3"] == HostSpec(
        name="gpu3", host="gpu3", user="ops", python="/opt/py311/bin/python",
        jump="bastion", group="gpu",
    )  # fmt: skip
    # what the target writes beats the defaults
    alice = hosts["10.0.0.7:2222"]
    assert (alice.user, alice.port, alice.group) == ("alice", 2222, "gpu")
    # a host table beats the defaults, and stays out of any group
    win = hosts["win1"]
    assert (win.host, win.user, win.os, win.python, win.group) == (
        "10.0.0.9", "admin", "windows", "python3", "",
    )  # fmt: skip
    assert win.target == "admin@10.0.0.9"


def test_host_table_beats_group_beats_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        user = "d-user"
        port = 2201
        python = "d-py"
        identity = "~/.ssh/d_key"

        [groups.g]
        hosts = ["h[1-3]", "bob@h4"]
        port = 2202
        python = "g-py"

        [hosts.h2]
        python = "own-py"

        [hosts.h4]
        user = "own-user"
        """,
    )
    hosts = by_name(load_hosts_file(path))
    assert list(hosts) == ["h1", "h2", "h3", "h4"]  # a listed table keeps its place
    h1, h2, h4 = hosts["h1"], hosts["h2"], hosts["h4"]
    assert (h1.user, h1.port, h1.python, h1.group) == ("d-user", 2202, "g-py", "g")
    assert (h2.user, h2.port, h2.python, h2.group, h2.host) == ("d-user", 2202, "own-py", "g", "h2")
    # the table's user beats bob@ written in the group's entry
    assert (h4.user, h4.group) == ("own-user", "g")
    assert h1.identity == str(Path.home() / ".ssh" / "d_key")


def test_host_table_joins_a_group_by_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [groups.gpu]
        jump = "ops@bastion:2222"

        [hosts.big]
        host = "10.1.1.1"
        group = "gpu"
        """,
    )
    (big,) = load_hosts_file(path)
    assert (big.host, big.group, big.jump) == ("10.1.1.1", "gpu", "ops@bastion:2222")


def test_windows_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [hosts.win1]
        host = "10.0.0.9"
        os = "windows"
        python = "py -3"
        identity = "C:/keys/id_ed25519"
        """,
    )
    (win,) = load_hosts_file(path)
    assert (win.os, win.python) == ("windows", "py -3")
    assert win.identity is not None and win.identity.endswith("id_ed25519")


def test_ipv6_and_ports_in_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [groups.lab]
        hosts = ["[::1]:2201", "[::1]:2202"]

        [hosts.v6]
        host = "[fe80::1]"
        port = 2222
        """,
    )
    specs = load_hosts_file(path)
    assert [(s.name, s.host, s.port) for s in specs] == [
        ("[::1]:2201", "::1", 2201),
        ("[::1]:2202", "::1", 2202),
        ("v6", "fe80::1", 2222),
    ]


@pytest.mark.parametrize(
    ("body", "table", "key", "line"),
    [
        ('[groups.gpu]\nhosts = ["g1"]\npyhton = "python3"\n', "[groups.gpu]", "pyhton", 3),
        ('[hosts.win1]\nhost = "10.0.0.9"\nusr = "admin"\n', "[hosts.win1]", "usr", 3),
        ('[defaults]\n\njumphost = "b"\n', "[defaults]", "jumphost", 3),
        ('[hosts]\nwin1 = { host = "h", prot = 22 }\n', "[hosts.win1]", "prot", 2),
        ('[hots.win1]\nhost = "h"\n', "top level", "hots", None),
        ('[groups]\ngpu.pyhton = "x"\n', "[groups.gpu]", "pyhton", 1),
    ],
)
def test_unknown_key_named_with_its_table(
    tmp_path: Path, body: str, table: str, key: str, line: int | None
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(InventoryError) as err:
        load_hosts_file(path)
    msg = str(err.value)
    assert str(path) in msg and table in msg and repr(key) in msg
    if line is not None:
        assert f"line {line}" in msg


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[defaults]\nport = "22"\n', "must be an integer, not a string"),
        ("[defaults]\nport = true\n", "must be an integer, not a boolean"),
        ("[defaults]\nport = 0\n", "out of range"),
        ("[defaults]\nuser = 7\n", "must be a string, not an integer"),
        ('[defaults]\nuser = "a;b"\n', "user 'a;b'"),
        ('[defaults]\nuser = ""\n', "non-empty"),
        ('[defaults]\nos = "linux"\n', "'posix', 'windows'"),
        ('[defaults]\njump = "-oProxyCommand=id"\n', "starts with '-'"),
        ('[defaults]\npython = "python3\\nreboot"\n', "printable"),
        ('[groups.g]\nhosts = "gpu1"\n', "list of strings"),
        ('[groups.g]\nhosts = ["gpu[3-1]"]\n', "reversed"),
        ('[groups.g]\nhosts = ["gpu1;id"]\n', "only letters"),
        ('[groups."a b"]\nhosts = []\n', "group name"),
        ('[hosts.h]\nhost = "gpu[1-2]"\n', "only letters"),
        ('[hosts.h]\nhost = "ops@gpu1"\n', "own keys"),
        ('[hosts."my box"]\nuser = "x"\n', "without spaces"),
        ('[hosts."bad;name"]\nuser = "x"\n', "set host"),
        ('[hosts.h]\ngroup = "nope"\n', "no group 'nope'"),
        ("defaults = 3\n", "must be a table"),
        ("[groups]\ng = 3\n", "must be a table"),
        ("[defaults\n", "not valid TOML"),
    ],
)
def test_bad_values_refused(tmp_path: Path, body: str, needle: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(InventoryError) as err:
        load_hosts_file(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_a_host_listed_by_two_groups_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [groups.a]
        hosts = ["h1"]
        [groups.b]
        hosts = ["h1"]
        """,
    )
    with pytest.raises(InventoryError, match="two hosts named 'h1'") as err:
        build_inventory([], path)
    assert "[groups.a]" in str(err.value) and "[groups.b]" in str(err.value)


def test_duplicate_names_within_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [groups.a]
        hosts = ["h[1-3]", "h2"]
        """,
    )
    with pytest.raises(InventoryError, match="two hosts named 'h2'"):
        load_hosts_file(path)


def test_a_table_host_in_two_groups_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [groups.a]
        hosts = ["h1"]
        [groups.b]
        hosts = ["h1"]
        [hosts.h1]
        port = 22
        """,
    )
    with pytest.raises(InventoryError, match="listed again"):
        load_hosts_file(path)


def test_group_key_disagreeing_with_listing_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [groups.a]
        hosts = ["h1"]
        [groups.b]
        [hosts.h1]
        group = "b"
        """,
    )
    with pytest.raises(InventoryError, match="group 'a'"):
        load_hosts_file(path)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_bytes(b"\xff\xfe[defaults]\n")
    with pytest.raises(InventoryError, match="cannot read"):
        load_hosts_file(path)


# --- building the fleet -----------------------------------------------------------------


def test_targets_then_file(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    specs = build_inventory(["db1", "ops@gpu[7-8]"], path)
    assert [s.name for s in specs][:3] == ["db1", "gpu7", "gpu8"]
    assert len(specs) == 3 + 6


def test_file_defaults_apply_to_targets(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    (db1, _) = build_inventory(["db1", "root@db2"], path)[:2]
    assert (db1.user, db1.python) == ("ops", "python3")
    assert build_inventory(["root@db2"], path)[0].user == "root"


def test_a_target_naming_a_file_host_picks_it(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    specs = build_inventory(["gpu[3-5]", "win1"], path)
    hosts = by_name(specs)
    assert [s.name for s in specs][:4] == ["gpu3", "gpu4", "gpu5", "win1"]
    assert len(specs) == len(hosts) == 7  # the file's six and gpu5, each once
    # gpu3 and win1 as the file has them; gpu5 is new, with [defaults] only
    assert (hosts["gpu3"].group, hosts["gpu3"].jump, hosts["gpu3"].user) == (
        "gpu",
        "bastion",
        "ops",
    )
    assert (hosts["win1"].host, hosts["win1"].user, hosts["win1"].os) == (
        "10.0.0.9",
        "admin",
        "windows",
    )
    assert (hosts["gpu5"].group, hosts["gpu5"].jump, hosts["gpu5"].python) == ("", None, "python3")


def test_a_user_on_the_command_line_replaces_the_files(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    (win1,) = build_inventory(["root@win1"], path, named_only=True)
    assert (win1.host, win1.user, win1.os) == ("10.0.0.9", "root", "windows")


def test_named_only_is_the_targets_alone(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    specs = build_inventory(["gpu2", "extra"], path, named_only=True)
    assert [s.name for s in specs] == ["gpu2", "extra"]
    assert specs[0].python == "/opt/py311/bin/python" and specs[1].python == "python3"
    assert build_inventory([], path, named_only=True) == []


def test_a_file_host_named_twice(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    with pytest.raises(InventoryError) as err:
        build_inventory(["gpu[1-2]", "gpu2"], path)
    assert "two hosts named 'gpu2'" in str(err.value) and "-H 'gpu2'" in str(err.value)


def test_duplicate_between_targets() -> None:
    with pytest.raises(InventoryError, match="two hosts named 'gpu2'"):
        build_inventory(["gpu[1-2]", "alice@gpu2"], None, use_default_file=False)
    # the same address on two ports is two hosts
    specs = build_inventory(["h:2201", "h:2202"], None, use_default_file=False)
    assert [s.name for s in specs] == ["h:2201", "h:2202"]


def test_bad_target_names_the_option() -> None:
    with pytest.raises(InventoryError, match=r"^-H 'gpu;id': "):
        build_inventory(["gpu;id"], None, use_default_file=False)


def test_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such hosts file"):
        build_inventory([], tmp_path / "missing.toml")


def test_default_file_used_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[groups.g]\nhosts = ["from-default"]\n')
    monkeypatch.setattr(inventory, "default_hosts_path", lambda: path)
    assert [s.name for s in build_inventory([], None)] == ["from-default"]
    assert build_inventory([], None, use_default_file=False) == []
    monkeypatch.setattr(inventory, "default_hosts_path", lambda: tmp_path / "absent.toml")
    assert build_inventory(["h1"], None) == [HostSpec(name="h1", host="h1")]


def test_default_hosts_path_follows_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/xdg")
    path = default_hosts_path()
    assert path.name == "hosts.toml" and path.parent.name == "llmaos-tui"
    if path.parts[:2] == ("/", "xdg"):  # Linux: the XDG variable decides
        assert path == Path("/xdg/llmaos-tui/hosts.toml")


def test_table_errors_point_at_its_header(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nuser = "ops"\n\n[hosts."my box"]\nuser = "x"\n')
    with pytest.raises(InventoryError, match=r"line 4, \[hosts\.\"my box\"\]"):
        load_hosts_file(path)


# --------------------------------------------------------------------- Slurm clusters


def test_slurm_clusters_name_a_host_of_the_file_or_local(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [hosts.login1]
        host = "10.0.0.5"
        user = "ops"

        [slurm.hpc]
        host = "login1"

        [slurm.mine]
        host = "local"
        """,
    )
    clusters, hosts = load_slurm_clusters(path)
    assert clusters == [SlurmSpec("hpc", "login1"), SlurmSpec("mine", "local")]
    assert [c.local for c in clusters] == [False, True]
    assert hosts["login1"].host == "10.0.0.5" and hosts["login1"].user == "ops"
    assert [s.name for s in load_hosts_file(path)] == ["login1"]  # a cluster is no host
    assert load_slurm_clusters(tmp_path / "none.toml") == ([], {})


@pytest.mark.parametrize(
    ("body", "needle", "line"),
    [
        ('[slurm.hpc]\nhost = "login9"\n', "no host 'login9' in this file", 2),
        ('[hosts.a]\n\n[slurm.hpc]\nhost = "b"\n', "(its hosts: a)", 4),
        ('[slurm.hpc]\nhost = "local"\npartition = "gpu"\n', "unknown key 'partition'", 3),
        ("[slurm.hpc]\n", 'set host = "NAME"', 1),
        ("[slurm.hpc]\nhost = 3\n", "must be a string", 2),
        ('[slurm."a:b"]\nhost = "local"\n', "cluster name", 1),
        ("slurm = 1\n", "must be a table", None),
    ],
)
def test_bad_slurm_tables_refused_with_the_line(
    tmp_path: Path, body: str, needle: str, line: int | None
) -> None:
    path = write(tmp_path, body)
    for read in (load_hosts_file, load_slurm_clusters):
        with pytest.raises(InventoryError) as err:
            read(path)
        msg = str(err.value)
        assert needle in msg and str(path) in msg, msg
        if line is not None:
            assert f"line {line}" in msg, msg
