"""Network and disk rates and CPU temperatures (issue 16), against this machine.

The interfaces and disks are this host's own (``lo`` always; a whole disk wherever the
test's files land on one), and their counters are made to grow by the test: bytes sent over
loopback, a file written and fsynced. Temperatures are what /sys/class/hwmon holds here
(possibly nothing: then the reading is empty), and the hwmon reader is held to a sysfs tree
laid out as the kernel lays it out, in tmp_path. Both ways of reading (the standard
library's /proc and psutil) must give the same names.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llmaos_agent import procfs
from llmaos_agent.collect.io import OFF_ENV, IoCollector, _name, _rates, enabled
from llmaos_agent.collect.sampler import Sampler
from llmaos_agent.protocol import MAX_IO_ROWS, DiskRate, NetRate, encode
from llmaos_agent.system import LinuxOS, PsutilOS, psutil_temperatures
from tests.test_daemon import FAST, Peer, attach, end, greet, start_daemon

LINUX = os.path.exists("/proc/net/dev")
linux_only = pytest.mark.skipif(not LINUX, reason="reads /proc and /sys directly")

BOTH = [pytest.param(LinuxOS, id="proc", marks=linux_only), pytest.param(PsutilOS, id="psutil")]


def send_on_loopback(n: int) -> None:
    """``n`` bytes over a TCP connection on 127.0.0.1, read to the end by the other side."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        got = bytearray()

        def drain() -> None:
            conn, _ = srv.accept()
            with conn:
                while chunk := conn.recv(1 << 16):
                    got.extend(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        with socket.create_connection(srv.getsockname()) as c:
            c.sendall(b"x" * n)
        reader.join(30)
        assert len(got) == n


def write_and_fsync(path: Path, n: int) -> None:
    with open(path, "wb") as f:
        f.write(os.urandom(n))
        f.flush()
        os.fsync(f.fileno())


def disk_of(path: Path) -> str | None:
    """The whole disk ``path`` is stored on, by its /proc/diskstats name; None when it is on
    none (tmpfs, overlay, a network file system)."""
    dev = os.stat(path).st_dev
    sysdev = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    if not os.path.exists(sysdev):
        return None
    real = os.path.realpath(sysdev)
    name = os.path.basename(real)
    if os.path.exists(f"{real}/partition"):  # a partition: its disk is the directory above
        name = os.path.basename(os.path.dirname(real))
    return name if procfs.whole_disk(name) else None


# ------------------------------------------------------------------ network


@pytest.mark.parametrize("cls", BOTH)
def test_loopback_is_an_interface_whose_counters_grow_when_we_send(cls: type) -> None:
    hos = cls()
    before = hos.net_counters()
    assert "lo" in before, sorted(before)
    send_on_loopback(4 << 20)
    after = hos.net_counters()
    # What goes out on lo comes in on lo: both counters grew by at least what was sent.
    assert after["lo"][0] - before["lo"][0] >= 4 << 20
    assert after["lo"][1] - before["lo"][1] >= 4 << 20


@linux_only
def test_both_paths_name_the_same_interfaces_and_whole_disks() -> None:
    ours, theirs = LinuxOS(), PsutilOS()
    assert set(ours.net_counters()) == set(theirs.net_counters())
    disks = ours.disk_counters()
    assert set(disks) == set(theirs.disk_counters())
    for name in disks:  # whole disks only: none a partition, a loop, RAM or zram device
        assert os.path.isdir(f"/sys/block/{name.replace('/', '!')}"), name
        assert not name.startswith(("loop", "ram", "zram")), name
    # The counters are read from the same file: psutil's, read later, are never behind.
    again = theirs.disk_counters()
    for name, (r, w) in disks.items():
        assert again[name][0] >= r and again[name][1] >= w


def test_the_rate_of_loopback_covers_what_was_sent() -> None:
    t0 = time.monotonic()
    io = IoCollector()
    send_on_loopback(2 << 20)
    net, _ = io.rates()
    window = time.monotonic() - t0  # the collector's interval lies inside it
    lo = next(r for r in net if r.name == "lo")
    assert lo.rx >= (2 << 20) / window and lo.tx >= (2 << 20) / window
    assert all(isinstance(r, NetRate) and r.rx >= 0 and r.tx >= 0 for r in net)


# ------------------------------------------------------------------- disks


@pytest.mark.parametrize("cls", BOTH)
def test_a_written_and_fsynced_file_grows_its_disks_write_counter(
    cls: type, tmp_path: Path
) -> None:
    disk = disk_of(tmp_path)
    if disk is None:
        pytest.skip(f"{tmp_path} is on no whole disk here (tmpfs or overlay)")
    hos = cls()
    before = hos.disk_counters()
    assert disk in before, sorted(before)
    write_and_fsync(tmp_path / "data", 4 << 20)
    after = hos.disk_counters()
    assert after[disk][1] - before[disk][1] >= 4 << 20


def test_the_disk_rate_shows_the_write(tmp_path: Path) -> None:
    disk = disk_of(tmp_path)
    if disk is None:
        pytest.skip(f"{tmp_path} is on no whole disk here (tmpfs or overlay)")
    t0 = time.monotonic()
    io = IoCollector()
    write_and_fsync(tmp_path / "data", 4 << 20)
    _, rows = io.rates()
    window = time.monotonic() - t0
    row = next(r for r in rows if r.name == disk)
    assert isinstance(row, DiskRate) and row.write >= (4 << 20) / window


@linux_only
def test_partitions_loop_and_stacked_devices_are_no_whole_disks() -> None:
    listed = procfs.diskstats()
    for name in listed:
        whole = procfs.whole_disk(name)
        in_sys_block = os.path.isdir(f"/sys/block/{name.replace('/', '!')}")
        if not in_sys_block:  # a partition
            assert not whole, name
        if name.startswith(("loop", "ram", "zram")):
            assert not whole, name
        if in_sys_block and os.listdir(f"/sys/block/{name}/slaves"):
            assert not whole, name  # device-mapper, md: their disks count the bytes


def test_parsers_read_the_kernels_layouts() -> None:
    net = (
        b"Inter-|   Receive                            |  Transmit\n"
        b" face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
        b"    lo: 2145 95 0 0 0 0 0 0 2145 95 0 0 0 0 0 0\n"
        b"eth0:137058301 3053 0 0 0 0 0 0   190562 1769 0 0 0 0 0 0\n"
        b"   weird\xff: 1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0\n"
        b"  broken: 1 2\n"
    )
    got = procfs.parse_net_dev(net)
    assert got["lo"] == (2145, 2145) and got["eth0"] == (137058301, 190562)
    assert len(got) == 3 and "broken" not in got
    # 14 fields (kernels before 4.18), 18 and 20 (5.5 on): sectors are 512 B whatever the disk.
    disks = (
        b"   8       0 sda 100 0 8 0 200 0 16 0 0 0 0\n"
        b" 259       0 nvme0n1 5 0 2048 1 7 0 4096 3 0 4 4 0 0 0 0\n"
        b" 254       0 vda 55314 11268 3003090 10916 11276 14989 2192960 5246 0 5880 16538 "
        b"4940 46 141736 314 1668 61\n"
        b"   7       0 loop0\n"
    )
    assert procfs.parse_diskstats(disks) == {
        "sda": (8 * 512, 16 * 512),
        "nvme0n1": (2048 * 512, 4096 * 512),
        "vda": (3003090 * 512, 2192960 * 512),
    }


# ------------------------------------------------------------------- rates


def test_rates_leave_out_what_did_not_move_and_never_go_negative() -> None:
    old = {"a": (100, 100), "b": (5, 5), "reset": (1000, 1000), "veth1": (0, 0)}
    new = {"a": (300, 100), "b": (5, 5), "reset": (10, 2000), "veth1": (50, 50), "new": (9, 9)}
    assert _rates(old, new, 2.0, skip=("veth",)) == [("a", 100, 0), ("reset", 0, 500)]
    assert _rates(old, new, 0.0) == []  # no time went by: no rate


def test_rates_past_the_bound_keep_the_busiest() -> None:
    n = MAX_IO_ROWS + 10
    old = {f"if{i}": (0, 0) for i in range(n)}
    new = {f"if{i}": (i + 1, 0) for i in range(n)}
    rows = _rates(old, new, 1.0)
    assert len(rows) == MAX_IO_ROWS
    assert {r[1] for r in rows} == set(range(11, n + 1))
    assert rows == sorted(rows)


def test_names_are_cut_and_mended_for_the_wire() -> None:
    assert _name("x" * 100) == "x" * 64
    bad = b"eth\xff".decode("utf-8", "surrogateescape")
    assert _name(bad) == "eth\ufffd"
    encode(NetRate(_name(bad), 1, 2))  # encodes: a lone surrogate would raise


# ------------------------------------------------------------- temperatures


def hwmon_chip(root: Path, n: int, name: str, sensors: dict[int, tuple[str | None, int]]) -> None:
    """One chip as the kernel lays it out: hwmonN/name, tempK_input (millidegrees C) and,
    where the driver labels it, tempK_label."""
    chip = root / f"hwmon{n}"
    chip.mkdir(parents=True)
    (chip / "name").write_text(name + "\n")
    for k, (label, milli) in sensors.items():
        (chip / f"temp{k}_input").write_text(f"{milli}\n")
        if label is not None:
            (chip / f"temp{k}_label").write_text(label + "\n")
        (chip / f"temp{k}_crit").write_text("100000\n")  # read by nobody


@pytest.fixture
def two_socket_sysfs(tmp_path: Path) -> Path:
    """Two coretemp chips (each with "Core 0"), a k10temp without labels, an NVMe drive's
    chip and an ACPI zone (not the CPU's), and hwmon10 to be sorted after hwmon2."""
    root = tmp_path / "hwmon"
    hwmon_chip(root, 0, "acpitz", {1: (None, 27800)})
    hwmon_chip(root, 1, "coretemp", {1: ("Package id 0", 54000), 2: ("Core 0", 51000),
                                     10: ("Core 8", 49000), 3: ("Core 1", 50500)})  # fmt: skip
    hwmon_chip(root, 2, "nvme", {1: ("Composite", 38850)})
    hwmon_chip(root, 10, "coretemp", {1: ("Package id 1", 61000), 2: ("Core 0", 58000)})
    hwmon_chip(root, 11, "k10temp", {1: (None, 45125), 3: (None, 44000)})
    hwmon_chip(root, 12, "zenpower", {1: ("Tctl", 70250)})
    return root


def test_hwmon_cpu_sensors_are_read_as_the_kernel_lays_them_out(two_socket_sysfs: Path) -> None:
    got = LinuxOS(hwmon=str(two_socket_sysfs)).temperatures()
    assert got == [
        ("Package id 0", 54.0),
        ("Core 0 #0", 51.0),
        ("Core 1", 50.5),
        ("Core 8", 49.0),
        ("Package id 1", 61.0),
        ("Core 0 #1", 58.0),
        ("k10temp temp1", 45.125),
        ("k10temp temp3", 44.0),
        ("Tctl", 70.25),
    ]


def test_a_sensor_that_goes_is_left_out_and_the_chips_looked_for_again(
    two_socket_sysfs: Path,
) -> None:
    hos = LinuxOS(hwmon=str(two_socket_sysfs))
    assert len(hos.temperatures()) == 9
    (two_socket_sysfs / "hwmon12" / "temp1_input").unlink()
    assert [label for label, _ in hos.temperatures()][-1] == "k10temp temp3"
    hwmon_chip(two_socket_sysfs, 13, "coretemp", {1: ("Package id 2", 40000)})
    # The failed read brought the next look for chips forward: the new chip is found.
    assert hos.temperatures()[-1] == ("Package id 2", 40.0)


def test_no_hwmon_means_no_temperatures(tmp_path: Path) -> None:
    assert LinuxOS(hwmon=str(tmp_path / "absent")).temperatures() == []
    hwmon_chip(tmp_path / "only-nvme", 0, "nvme", {1: ("Composite", 38000)})
    assert LinuxOS(hwmon=str(tmp_path / "only-nvme")).temperatures() == []


@linux_only
def test_this_hosts_temperatures_are_what_its_hwmon_holds() -> None:
    """Whatever /sys/class/hwmon holds here (nothing on many VMs: then nothing), and the
    same sensors as psutil finds in it."""
    ours = LinuxOS().temperatures()
    cpu_chips = []
    if os.path.isdir(procfs.HWMON):
        for entry in os.listdir(procfs.HWMON):
            name = Path(procfs.HWMON, entry, "name")
            if name.exists() and name.read_text().strip() in procfs.CPU_CHIPS:
                cpu_chips.append(entry)
    if not cpu_chips:
        assert ours == []
        return
    theirs = psutil_temperatures(psutil.sensors_temperatures())
    assert [label for label, _ in ours] == [label for label, _ in theirs]
    assert all(-50 < c < 150 for _, c in ours)


def test_psutils_sensors_are_labelled_as_ours() -> None:
    try:  # psutil's own result type, wherever this version keeps it
        from psutil._ntuples import shwtemp
    except ImportError:
        from psutil._common import shwtemp  # type: ignore[attr-defined,no-redef]

    chips = {
        "coretemp": [shwtemp("Package id 0", 54.0, 80.0, 100.0), shwtemp("Core 0", 51.0, 80, 100),
                     shwtemp("Package id 1", 61.0, 80, 100), shwtemp("Core 0", 58.0, 80, 100)],
        "nvme": [shwtemp("Composite", 38.85, 80, 90)],
        "k10temp": [shwtemp("", 45.125, None, None)],
    }  # fmt: skip
    assert psutil_temperatures(chips) == [
        ("Package id 0", 54.0),
        ("Core 0 #0", 51.0),
        ("Package id 1", 61.0),
        ("Core 0 #1", 58.0),
        ("k10temp", 45.125),
    ]


def test_temperatures_go_out_every_few_seconds_as_whole_degrees(two_socket_sysfs: Path) -> None:
    """Values every TEMPS_EVERY_S, their names with the first ones, when they change and
    once a minute (the collector's clock moved on by hand: no test waits a minute)."""
    from llmaos_agent.collect import io as io_mod

    now = [1000.0]
    io = IoCollector(LinuxOS(hwmon=str(two_socket_sysfs)), clock=lambda: now[0])
    values, names = io.temps()
    assert values == [54, 51, 50, 49, 61, 58, 45, 44, 70]  # 50.5 and 70.25 rounded
    assert names[:2] == ["Package id 0", "Core 0 #0"] and len(names) == len(values)
    now[0] += 1.0
    assert io.temps() == ([], [])  # the next sample carries none
    now[0] += io_mod.TEMPS_EVERY_S
    assert io.temps() == (values, [])  # values alone: the names stand
    (two_socket_sysfs / "hwmon1" / "temp2_input").write_text("77000\n")
    now[0] += io_mod.TEMPS_EVERY_S
    assert io.temps()[0][1] == 77
    now[0] += io_mod.NAMES_EVERY_S
    assert io.temps()[1] == names  # once a minute again, for a console that attaches
    hwmon_chip(two_socket_sysfs, 13, "coretemp", {1: ("Package id 2", 40000)})
    (two_socket_sysfs / "hwmon12" / "temp1_input").unlink()  # a failed read: look again
    now[0] += io_mod.TEMPS_EVERY_S
    io.temps()
    now[0] += io_mod.TEMPS_EVERY_S
    values, changed = io.temps()
    assert changed[-1] == "Package id 2" and values[-1] == 40  # new names go out at once


# ------------------------------------------------------------------ the sample


def test_the_new_figures_can_be_turned_off() -> None:
    assert enabled({}) and enabled({OFF_ENV: "on"}) and enabled({OFF_ENV: ""})
    assert not any(enabled({OFF_ENV: v}) for v in ("off", "0", "no", "false", " OFF "))
    on, off = Sampler(io=True), Sampler(io=False)
    try:
        send_on_loopback(1 << 20)
        a, b = on.sample(), off.sample()
        assert any(r.name == "lo" for r in a.net)
        assert (b.net, b.disk, b.temps, b.temp_names) == ([], [], [], [])
        assert b'"net"' not in encode(b) and b'"net"' in encode(a)
    finally:
        on.close()
        off.close()


@pytest.fixture
def loopback_traffic() -> Iterator[None]:
    """Bytes over loopback every few tens of milliseconds while the test runs."""
    done = threading.Event()

    def run() -> None:
        while not done.wait(0.05):
            send_on_loopback(64 << 10)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join(30)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    """Attaches opened by a test, killed after it if still running."""
    opened: list[Peer] = []
    try:
        yield opened
    finally:
        for p in opened:
            p.kill()


def test_the_history_ring_carries_the_network_figures(
    agent_home: Path, peers: list[Peer], loopback_traffic: None
) -> None:
    """A console that attaches gets the rates of the samples before it came, so its graphs
    are full at once: the ring holds samples as they were sent, net rows included."""
    daemon = start_daemon(*FAST)
    try:
        deadline = time.monotonic() + 30
        while True:  # until the ring holds two samples past the first (a busy machine)
            peer = attach(peers)
            _, history = greet(peer)
            assert peer.close() == 0
            if len(history.samples) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(history.samples) >= 3
        with_lo = [s for s in history.samples if any(r.name == "lo" for r in s.net)]
        assert with_lo, [s.net for s in history.samples]
        assert all(s.procs is None for s in history.samples)
    finally:
        end(daemon)
