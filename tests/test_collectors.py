"""The collectors against the real machine, checked against what the OS says directly.

Over 700 lines on purpose: every collector against the real machine, sharing the child
processes and spinners that make the readings checkable.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmaos_agent.collect.cpu import CpuCollector, load_average
from llmaos_agent.collect.gpu import nvml_library_missing
from llmaos_agent.collect.host import capabilities, docker_status, host_facts
from llmaos_agent.collect.memory import memory
from llmaos_agent.collect.processes import (
    _STATUS,
    ProcessCollector,
    apply,
    cpulist,
    diff,
    full,
    parse_cpulist,
    parse_stat,
)
from llmaos_agent.procfs import LETTER
from llmaos_agent.protocol import MAX_CORES, Capabilities, HostFacts, Memory, Proc
from tests.testbed import Testbed, testbed_factory_fixture  # noqa: F401 (a fixture)

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="reads /proc directly to check the collector")


def meminfo_bytes(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0]) * 1024
    raise KeyError(key)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(True, id="proc", marks=linux_only),
        pytest.param(False, id="psutil"),
    ],
)
def collector(request: pytest.FixtureRequest) -> ProcessCollector:
    """Both ways of reading the table: /proc directly (Linux) and psutil (everywhere)."""
    return ProcessCollector(fast=request.param)


# ------------------------------------------------------------------------ cpu


def test_per_core_loads() -> None:
    cpu = CpuCollector()
    spin(0.2)  # this process keeps one core busy meanwhile
    loads = cpu.per_core()
    assert len(loads) == os.cpu_count()
    assert all(isinstance(x, float) and 0.0 <= x <= 1.0 for x in loads)
    assert sum(loads) > 0.05, f"a core was busy for 0.2 s but the loads are {loads}"


def test_per_core_loads_measure_since_the_last_call() -> None:
    cpu = CpuCollector()
    spin(0.05)
    cpu.per_core()
    for _ in range(3):
        time.sleep(0.05)
        loads = cpu.per_core()
        assert len(loads) == os.cpu_count()
        assert all(0.0 <= x <= 1.0 for x in loads)


@pytest.mark.skipif(not hasattr(os, "getloadavg"), reason="this OS has no load average")
def test_load_average_matches_the_os() -> None:
    before = os.getloadavg()
    got = load_average()
    after = os.getloadavg()
    assert got is not None and len(got) == 3
    for value, a, b in zip(got, before, after, strict=True):
        assert min(a, b) - 0.01 <= value <= max(a, b) + 0.01
        assert value >= 0


# --------------------------------------------------------------------- memory


def test_memory_is_consistent() -> None:
    m = memory()
    assert isinstance(m, Memory)
    assert m.total > 0
    assert 0 <= m.used <= m.total
    assert 0 <= m.available <= m.total
    assert 0 <= m.swap_used <= m.swap_total or m.swap_total == 0 == m.swap_used


@linux_only
def test_memory_matches_proc_meminfo() -> None:
    m = memory()
    assert m.total == meminfo_bytes("MemTotal")
    assert m.swap_total == meminfo_bytes("SwapTotal")
    # Available memory moves while we look; within 5% of the total is the same reading.
    assert abs(m.available - meminfo_bytes("MemAvailable")) < 0.05 * m.total


# ------------------------------------------------------------------ processes


def test_own_process_is_in_the_table(collector: ProcessCollector) -> None:
    spin(0.05)
    table = collector.snapshot()
    me = table[os.getpid()]
    ps = psutil.Process()
    assert me.pid == os.getpid()
    assert me.ppid == os.getppid()
    assert me.name == ps.name()
    if hasattr(os, "getuid"):
        import pwd

        assert me.user == pwd.getpwuid(os.getuid()).pw_name
    assert me.cpu >= 0.0
    assert me.rss > 0
    # The kernel's boot time (/proc/stat btime), which both add to a process's start
    # ticks, is whole seconds and moves by whole seconds when the clock is stepped (seen on
    # a loaded VM: exactly 4.0 s apart): equal but for such a step.
    off = me.create_time - ps.create_time()
    assert abs(off) < 0.01 or (abs(off - round(off)) < 0.01 and abs(off) <= 30), off
    assert sys.argv[0].rsplit("/", 1)[-1] in me.cmd or "pytest" in me.cmd
    assert me.status in {"R", "S", "D"}  # running, sleeping, disk sleep, as ps shows them
    if hasattr(os, "getpriority"):
        assert me.nice == os.getpriority(os.PRIO_PROCESS, 0)
    if hasattr(os, "sched_getaffinity"):
        assert me.affinity is not None
        assert parse_cpulist(me.affinity) == sorted(os.sched_getaffinity(0))
    if collector.has_cpu_num:
        assert me.core is not None and 0 <= me.core < (os.cpu_count() or 1)


@linux_only
def test_own_process_name_matches_proc(collector: ProcessCollector) -> None:
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    name = collector.snapshot()[os.getpid()].name
    assert name.startswith(comm)  # comm is cut at 15 characters, the name is not


def test_every_row_is_valid_on_the_wire(collector: ProcessCollector) -> None:
    table = collector.snapshot()
    assert len(table) >= 2
    rows = msgspec.json.decode(msgspec.json.encode(list(table.values())), type=list[Proc])
    assert {r.pid for r in rows} == set(table)
    assert all(pid == row.pid for pid, row in table.items())


def test_table_sees_a_process_come_and_go(collector: ProcessCollector) -> None:
    sleep = shutil.which("sleep")
    argv = [sleep, "30"] if sleep else [sys.executable, "-c", "import time; time.sleep(30)"]
    child = subprocess.Popen(argv)
    try:
        before = collector.snapshot()
        assert child.pid in before
        row = before[child.pid]
        assert row.ppid == os.getpid()
        assert "30" in row.cmd
        if sleep:
            assert row.name == "sleep"
        assert row.create_time == pytest.approx(psutil.Process(child.pid).create_time(), abs=0.01)
    finally:
        child.kill()
        child.wait()
    after = collector.snapshot()
    assert child.pid not in after
    delta = diff(before, after)
    assert child.pid in delta.gone
    assert all(p.pid != child.pid for p in delta.upsert)


def test_renice_shows_in_the_next_pass(collector: ProcessCollector) -> None:
    if not hasattr(os, "setpriority"):
        pytest.skip("no setpriority on this OS")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert collector.snapshot()[child.pid].nice == os.getpriority(os.PRIO_PROCESS, child.pid)
        os.setpriority(os.PRIO_PROCESS, child.pid, 7)
        assert collector.snapshot()[child.pid].nice == 7
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity on this OS")
def test_affinity_change_shows_in_the_next_pass(collector: ProcessCollector) -> None:
    core = min(os.sched_getaffinity(0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.sched_setaffinity(child.pid, {core})
        assert collector.snapshot()[child.pid].affinity == str(core)
    finally:
        child.kill()
        child.wait()


def test_gpu_memory_is_attached_by_pid(collector: ProcessCollector) -> None:
    table = collector.snapshot({os.getpid(): 123_456_789})
    assert table[os.getpid()].gpu_mem == 123_456_789
    assert all(p.gpu_mem is None for pid, p in table.items() if pid != os.getpid())


def test_busy_process_shows_cpu(collector: ProcessCollector) -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        collector.snapshot()  # psutil measures cpu percent since the previous pass
        time.sleep(0.3)
        busy = collector.snapshot()[child.pid]
    finally:
        child.kill()
        child.wait()
    assert busy.cpu > 10.0, f"a process spinning for 0.3 s, but its cpu is {busy.cpu}%"


# ------------------------------------------- the /proc fast path against psutil

SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(60)"


def start_sleeper(code: str = SLEEPER) -> subprocess.Popen[bytes]:
    """A Python child that says when it is ready, then sleeps."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n", "the child did not start"
    return child


def stop(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()


def agrees_with_psutil(row: Proc, pid: int) -> None:
    ps = psutil.Process(pid)
    with ps.oneshot():
        assert row.pid == pid
        assert row.ppid == ps.ppid()
        assert row.nice == ps.nice()
        if pid == os.getpid() or row.status == "R":
            # Ours runs between the two reads, and sleeps; a child that has just said it is
            # ready may still be running as the table reads it: either is true then.
            assert row.status in ("R", "S") and ps.status() in ("running", "sleeping")
        else:
            assert row.status == LETTER[ps.status()]
        assert row.create_time == round(ps.create_time(), 2)
        assert row.affinity is not None
        assert parse_cpulist(row.affinity) == sorted(ps.cpu_affinity())
        assert row.core is not None and 0 <= row.core < (os.cpu_count() or 1)
        assert row.name == ps.name()
        assert row.cmd == " ".join(ps.cmdline())[:512]
        rss = ps.memory_info().rss
    # The same statm field; a sleeping child's does not move, ours may between the reads.
    tolerance = 0 if pid != os.getpid() else 4 << 20
    assert abs(row.rss - rss) <= tolerance, f"rss {row.rss} vs psutil's {rss}"


@linux_only
def test_fast_path_agrees_with_psutil_for_us_and_a_child() -> None:
    fast = ProcessCollector(fast=True)
    assert fast.fast
    child = start_sleeper()
    try:
        table = fast.snapshot()
        agrees_with_psutil(table[os.getpid()], os.getpid())
        agrees_with_psutil(table[child.pid], child.pid)
        assert table[child.pid].ppid == os.getpid()
        assert table[child.pid].status == "S"
        assert table[child.pid].cpu == 0.0  # the first pass has nothing to compare with
    finally:
        stop(child)


@linux_only
def test_fast_path_is_the_default_on_linux() -> None:
    assert ProcessCollector().fast


@linux_only
def test_fast_and_psutil_tables_agree_on_our_children() -> None:
    children = [start_sleeper() for _ in range(3)]
    try:
        os.setpriority(os.PRIO_PROCESS, children[1].pid, 5)
        os.sched_setaffinity(children[2].pid, {min(os.sched_getaffinity(0))})
        os.kill(children[2].pid, signal.SIGSTOP)
        wait_status(children[2].pid, psutil.STATUS_STOPPED)
        fast = ProcessCollector(fast=True).snapshot()
        slow = ProcessCollector(fast=False).snapshot()
        for c in children:
            assert fast[c.pid] == slow[c.pid]
        assert fast[children[1].pid].nice == 5
        assert fast[children[2].pid].status == "T"  # stopped, not S as once drawn
        assert fast[children[2].pid].affinity == str(min(os.sched_getaffinity(0)))
    finally:
        for c in children:
            stop(c)


def wait_status(pid: int, status: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while psutil.Process(pid).status() != status:
        assert time.monotonic() < deadline, f"{pid} never became {status}"
        time.sleep(0.01)


@linux_only
def test_fast_path_shows_a_zombie_as_psutil_does() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_status(child.pid, psutil.STATUS_ZOMBIE)  # exited, not reaped yet
        row = ProcessCollector(fast=True).snapshot()[child.pid]
        assert row.status == "Z"
        assert row.rss == 0 == psutil.Process(child.pid).memory_info().rss
        assert row.ppid == os.getpid()
    finally:
        child.wait()


@pytest.mark.parametrize(
    "fast", [pytest.param(True, marks=linux_only), False], ids=["proc", "psutil"]
)
def test_a_stopped_child_is_T_and_a_zombie_Z_and_a_resumed_one_S(fast: bool) -> None:
    """What the process table's state column shows: SIGSTOP makes a real child T (it once
    showed as S, the first letter of "stopped"), SIGCONT makes it S again, and a child that
    exited unreaped is Z, on both paths."""
    collector = ProcessCollector(fast=fast)
    child = start_sleeper()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        wait_status(child.pid, psutil.STATUS_STOPPED)
        wait_status(zombie.pid, psutil.STATUS_ZOMBIE)
        table = collector.snapshot()
        assert (table[child.pid].status, table[zombie.pid].status) == ("T", "Z")
        os.kill(child.pid, signal.SIGCONT)
        wait_status(child.pid, psutil.STATUS_SLEEPING)
        assert collector.snapshot()[child.pid].status == "S"
    finally:
        stop(child)
        zombie.wait()


@linux_only
def test_a_child_stopped_by_its_tracer_is_t() -> None:
    """ptrace(PTRACE_ATTACH) stops a real child in "tracing stop": t, as ps shows it."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    attach, detach = 16, 17  # PTRACE_ATTACH, PTRACE_DETACH
    child = start_sleeper()
    try:
        if libc.ptrace(attach, child.pid, None, None) != 0:
            pytest.skip(f"ptrace refused here: {os.strerror(ctypes.get_errno())}")
        try:
            os.waitpid(child.pid, 0)  # the attach's SIGSTOP, reported to us as its tracer
            wait_status(child.pid, psutil.STATUS_TRACING_STOP)
            fast = ProcessCollector(fast=True).snapshot()[child.pid]
            slow = ProcessCollector(fast=False).snapshot()[child.pid]
            assert fast.status == slow.status == "t"
        finally:
            libc.ptrace(detach, child.pid, None, None)
    finally:
        stop(child)


@linux_only
def test_fast_path_busy_child_burns_a_core() -> None:
    child = start_sleeper("print('ready', flush=True)\nwhile True: pass")
    try:
        fast = ProcessCollector(fast=True)
        assert fast.snapshot()[child.pid].cpu == 0.0
        ps = psutil.Process(child.pid)
        ps.cpu_percent()
        time.sleep(1.0)
        busy = fast.snapshot()[child.pid].cpu
        theirs = ps.cpu_percent()
    finally:
        stop(child)
    # One thread spinning: up to one core. How much it got depends on what else runs on
    # this shared machine, so the check is against psutil measuring the same window.
    assert 0.0 < busy <= 105.0, f"a child spinning for 1 s shows {busy}%"
    assert abs(busy - theirs) < 25.0, f"{busy}% here, {theirs}% by psutil"


@linux_only
def test_fast_path_idle_child_keeps_its_row_object() -> None:
    child = start_sleeper()
    try:
        fast = ProcessCollector(fast=True)
        # A child that has just started may still be faulting pages in, which moves its
        # stat line; once two passes see the same line, its row is reused, not rebuilt.
        a = fast.snapshot()
        for _ in range(50):
            b = fast.snapshot()
            if b[child.pid] is a[child.pid]:
                break
            a = b
            time.sleep(0.05)
        assert b[child.pid] is a[child.pid], "an idle child's row was rebuilt every pass"
        assert child.pid not in {p.pid for p in diff(a, b).upsert}
        os.setpriority(os.PRIO_PROCESS, child.pid, 3)
        c = fast.snapshot()
        assert c[child.pid] is not b[child.pid] and c[child.pid].nice == 3
        assert child.pid in {p.pid for p in diff(b, c).upsert}
    finally:
        stop(child)


@linux_only
def test_fast_path_drops_a_process_that_exits_between_passes() -> None:
    fast = ProcessCollector(fast=True)
    child = start_sleeper()
    before = fast.snapshot()
    stop(child)
    after = fast.snapshot()
    assert child.pid in before and child.pid not in after
    assert diff(before, after).gone.count(child.pid) == 1


@linux_only
def test_fast_path_shows_an_idle_process_that_grew_at_the_next_pass() -> None:
    """Rows of processes whose stat line did not move are kept without a statm read; one
    that allocated between two passes (page faults move the stat line) shows its new RSS."""
    grow = (
        "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\n"
        "block = bytearray(64 << 20)\nprint('ready', flush=True)\nsys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", grow], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        fast = ProcessCollector(fast=True)
        fast.snapshot()
        small = fast.snapshot()[child.pid].rss  # a pass with its stat line unchanged
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"ready\n"
        big = fast.snapshot()[child.pid].rss
        theirs = psutil.Process(child.pid).memory_info().rss
    finally:
        stop(child)
    assert big - small >= 60 << 20, (small, big)
    assert abs(big - theirs) < 4 << 20, (big, theirs)


@linux_only
def test_fast_path_holds_stat_files_only_of_live_processes() -> None:
    """The stat files kept open between passes: one per listed process at most, and none
    left for a process that exited, nor after close()."""
    fast = ProcessCollector(fast=True)
    child = start_sleeper()
    table = fast.snapshot()
    held = len(os.listdir("/proc/self/fd"))
    assert child.pid in table
    stop(child)
    after = fast.snapshot()
    assert child.pid not in after
    assert len(os.listdir("/proc/self/fd")) <= held + len(after) - len(table) + 1
    fast.close()
    assert len(os.listdir("/proc/self/fd")) < held - min(len(after), 100) + 5


@linux_only
def test_fast_path_skips_a_pid_gone_since_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid listed by /proc but gone when its files are opened is left out, not an error."""
    child = start_sleeper()
    stop(child)  # reaped: its /proc entry is gone
    assert not Path(f"/proc/{child.pid}").exists()
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: [*real(p), str(child.pid)])
    table = ProcessCollector(fast=True).snapshot()
    assert child.pid not in table and os.getpid() in table


@linux_only
@pytest.mark.parametrize("comm", ["a) b", "x) 1 2 (y) z", ") ) )", "(  )"])
def test_fast_path_reads_a_name_with_parentheses_and_spaces(comm: str) -> None:
    """The name is whatever the process says; the fields after it must still line up."""
    child = start_sleeper(
        f"open('/proc/self/comm', 'w').write({comm!r})\n" + SLEEPER.replace("; ", "\n")
    )
    try:
        assert Path(f"/proc/{child.pid}/comm").read_text().rstrip("\n") == comm
        name, fields = parse_stat(Path(f"/proc/{child.pid}/stat").read_bytes())
        assert name.decode() == comm
        assert int(fields[1]) == os.getpid()  # ppid: the field right after the state
        row = ProcessCollector(fast=True).snapshot()[child.pid]
        assert row.name == comm
        agrees_with_psutil(row, child.pid)
    finally:
        stop(child)


def test_parse_stat_refuses_what_is_not_a_stat_line() -> None:
    for bad in (b"", b"12 (x", b"12 (x) S 1 2 3"):
        with pytest.raises(ValueError):
            parse_stat(bad)


@linux_only
def test_status_letters_are_named_as_psutil_names_them() -> None:
    from psutil import _pslinux

    ours = {k.decode(): v for k, v in _STATUS.items()}
    assert ours == {k: str(v) for k, v in _pslinux.PROC_STATUSES.items()}


def test_every_psutil_status_has_a_letter_and_linux_names_map_back_to_theirs() -> None:
    """The psutil path sends the letter the /proc path reads for the same state (X and x
    are both "dead": X, the one ps shows)."""
    names = {str(getattr(psutil, n)) for n in dir(psutil) if n.startswith("STATUS_")}
    assert names <= set(LETTER), names - set(LETTER)
    for letter, name in _STATUS.items():
        assert LETTER[name] == ("X" if letter == b"x" else letter.decode())


# ------------------------------------------------------------------------ gpu


def test_nvml_library_check_tells_present_from_missing() -> None:
    missing = nvml_library_missing("libllmaos-no-such-library.so.1")
    assert missing is not None and "libllmaos-no-such-library.so.1" in missing
    if LINUX:
        assert nvml_library_missing("libc.so.6") is None


@pytest.mark.skipif(sys.platform == "win32", reason="Windows leaves the search to pynvml")
def test_no_nvml_library_means_pynvml_is_never_imported() -> None:
    if nvml_library_missing() is None:
        pytest.skip("this host has the NVML library")
    code = (
        "import sys\n"
        "from llmaos_agent.collect.gpu import GpuCollector\n"
        "g = GpuCollector()\n"
        "print(g.available, 'pynvml' in sys.modules)\n"
        "print(g.reason)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    flags, reason = res.stdout.splitlines()
    assert flags == "False False"
    # As pynvml's own nvmlInit would say it, with the loader's reason.
    assert "NVML Shared Library Not Found" in reason and "libnvidia-ml.so.1" in reason


# ------------------------------------------------------------- diff and apply

proc_st = st.builds(
    Proc,
    pid=st.integers(1, 60),
    ppid=st.integers(0, 60),
    name=st.sampled_from(["python", "vllm", "sshd", "bash"]),
    user=st.sampled_from(["root", "ops"]),
    cpu=st.sampled_from([0.0, 1.5, 99.9, 400.0]),
    rss=st.integers(0, 10**10),
    nice=st.none() | st.integers(-20, 19),
    affinity=st.none() | st.sampled_from(["0", "0-3", "1,3-5"]),
    core=st.none() | st.integers(0, 7),
    status=st.sampled_from(["R", "S", "T", "Z"]),
    create_time=st.sampled_from([100.0, 200.5]),
    gpu_mem=st.none() | st.integers(0, 10**10),
    cmd=st.text(max_size=10),
)
table_st = st.lists(proc_st, max_size=15).map(lambda ps: {p.pid: p for p in ps})


@settings(max_examples=60, deadline=None)
@given(table_st, table_st)
def test_apply_of_diff_turns_old_into_new(old: dict[int, Proc], new: dict[int, Proc]) -> None:
    delta = diff(old, new)
    table = dict(old)
    apply(table, delta)
    assert table == new
    # Only what changed travels.
    assert len(delta.upsert) == sum(1 for pid, p in new.items() if old.get(pid) != p)
    assert set(delta.gone) == set(old) - set(new)


@settings(max_examples=30, deadline=None)
@given(table_st, table_st)
def test_full_replaces_any_table(old: dict[int, Proc], new: dict[int, Proc]) -> None:
    table = dict(old)
    apply(table, full(new))
    assert table == new


@settings(max_examples=30, deadline=None)
@given(table_st)
def test_no_change_is_an_empty_delta(table: dict[int, Proc]) -> None:
    delta = diff(table, dict(table))
    assert delta.upsert == [] and delta.gone == [] and not delta.full


def test_diff_of_real_snapshots(collector: ProcessCollector) -> None:
    a = collector.snapshot()
    b = collector.snapshot()
    table = dict(a)
    apply(table, diff(a, b))
    assert table == b


# -------------------------------------------------------------------- cpulist


@settings(deadline=None)
@given(st.sets(st.integers(0, MAX_CORES - 1), max_size=80))
def test_cpulist_round_trip(cores: set[int]) -> None:
    text = cpulist(cores)
    assert parse_cpulist(text) == sorted(cores)
    assert cpulist(parse_cpulist(text)) == text


@settings(deadline=None)
@given(st.lists(st.integers(0, 300), max_size=40))
def test_cpulist_is_compact(cores: list[int]) -> None:
    text = cpulist(cores)
    parts = text.split(",") if text else []
    # One part per run of consecutive cores, never two touching runs.
    runs = [parse_cpulist(part) for part in parts]
    for left, right in itertools.pairwise(runs):
        assert right[0] > left[-1] + 1


@pytest.mark.parametrize(
    ("cores", "text"),
    [
        ([], ""),
        ([3], "3"),
        ([0, 1, 2, 3], "0-3"),
        ([0, 1, 2, 5, 8, 9], "0-2,5,8-9"),
        ([2, 2, 1], "1-2"),
    ],
)
def test_cpulist_examples(cores: list[int], text: str) -> None:
    assert cpulist(cores) == text


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("", []),
        ("  ", []),
        ("7", [7]),
        ("0-2,5", [0, 1, 2, 5]),
        (" 1 , 3-4 ", [1, 3, 4]),
        ("2,0-2", [0, 1, 2]),
    ],
)
def test_parse_cpulist_examples(text: str, cores: list[int]) -> None:
    assert parse_cpulist(text) == cores


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "1-",
        "-1",
        "3-1",
        "1,,2",
        "1-2-3",
        "0x1",
        "1.5",
        "+1",
        "1_0",
        "٣",
        "1 2",
        ",",
        "0-99999999999",
    ],
)
def test_parse_cpulist_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpulist(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-, x+_", max_size=12))
def test_parse_cpulist_answers_only_in_cpulist_notation(text: str) -> None:
    try:
        cores = parse_cpulist(text)
    except ValueError:
        return
    # Anything it accepts means the same as its canonical form.
    assert set(text) <= set("0123456789-, ")
    assert parse_cpulist(cpulist(cores)) == cores
    assert all(0 <= c < MAX_CORES for c in cores)


# ----------------------------------------------------------------------- host


def test_host_facts_are_this_host() -> None:
    f = host_facts()
    assert msgspec.json.decode(msgspec.json.encode(f), type=HostFacts) == f  # within bounds
    assert f.hostname == socket.gethostname()
    assert f.os == platform.system()
    assert f.python == platform.python_version()
    assert f.cores == os.cpu_count()
    assert f.physical_cores is None or 1 <= f.physical_cores <= f.cores
    assert f.mem_total == psutil.virtual_memory().total > 0
    assert 0 < f.boot_time <= psutil.Process().create_time()
    if hasattr(os, "getuid"):
        import pwd

        assert f.user == pwd.getpwuid(os.getuid()).pw_name
    if LINUX:
        assert f.mem_total == meminfo_bytes("MemTotal")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        assert abs((time.time() - uptime) - f.boot_time) < 2.0


@pytest.mark.parametrize("read_only", [True, False])
def test_capabilities_are_plausible(read_only: bool) -> None:
    probe = ProcessCollector()
    caps = capabilities(
        affinity=probe.has_affinity,
        cpu_num=probe.has_cpu_num,
        nvml_reason="nvidia-ml-py is not installed",
        read_only=read_only,
    )
    assert msgspec.json.decode(msgspec.json.encode(caps), type=Capabilities) == caps
    assert caps.read_only is read_only
    assert caps.nvml is False and caps.nvml_reason == "nvidia-ml-py is not installed"
    assert caps.affinity is hasattr(os, "sched_setaffinity") or sys.platform == "win32"
    if LINUX:
        assert caps.affinity and caps.cpu_num
    if hasattr(os, "geteuid"):
        assert caps.root is (os.geteuid() == 0)
    # Docker is either there, or there is a reason it is not.
    assert caps.docker is (caps.docker_reason is None)
    assert capabilities(affinity=False, cpu_num=False, nvml_reason=None, read_only=False).nvml


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a path short enough for a Unix socket."""
    d = Path(tempfile.mkdtemp(prefix="llmt-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_docker_status_without_a_socket(short_tmp: Path) -> None:
    path = str(short_tmp / "nowhere" / "docker.sock")
    ok, reason = docker_status(path)
    assert ok is False
    assert reason is not None and path in reason


def test_docker_status_on_a_file_that_is_not_a_socket(short_tmp: Path) -> None:
    path = short_tmp / "docker.sock"
    path.write_text("not a socket")
    ok, reason = docker_status(str(path))
    assert ok is False
    assert reason is not None and str(path) in reason


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
@pytest.mark.parametrize("answer", [None, b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 500 Oops\r\n\r\n"])
def test_docker_status_on_something_else_listening(short_tmp: Path, answer: bytes | None) -> None:
    """A socket that answers silence, another protocol or an error is not a Docker engine."""
    path = str(short_tmp / "d.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(256)
            if answer is not None:
                conn.sendall(answer)
            done.wait(5)  # silence, or keep the line open until the answer is judged

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        ok, reason = docker_status(path, timeout=0.2)
    finally:
        done.set()
        t.join(2)
        server.close()
    assert ok is False
    assert reason is not None and path in reason


def test_docker_status_with_a_real_engine(testbed_factory: Callable[..., Testbed]) -> None:
    # A testbed host's own dockerd, so the test needs no system daemon and touches none.
    tb = testbed_factory(n=1, docker=True)
    sock = str(tb.hosts[0].docker_socket)
    assert docker_status(sock) == (True, None)
    tb.kill_dockerd(tb.hosts[0])
    ok, reason = docker_status(sock)
    assert ok is False and reason is not None and sock in reason
    tb.start_dockerd(tb.hosts[0])
    assert docker_status(sock) == (True, None)
