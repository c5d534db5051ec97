"""The agent's standard-library Linux path (procfs.py, system.LinuxOS) against psutil
on this machine, process control on real children, the capabilities each platform
reports, and the collectors under a bare interpreter (no psutil, no msgspec).

Counts and totals must be exact; readings that move (available memory, per-core load)
are compared over the same window, with bounds that hold on a busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from llmaos_agent import control, procfs
from llmaos_agent.collect.cpu import CpuCollector
from llmaos_agent.collect.host import capabilities
from llmaos_agent.control import Refused
from llmaos_agent.system import (
    SIGNALS,
    Gone,
    HostOS,
    LinuxOS,
    PsutilOS,
    Target,
    features,
    host_os,
    wait_gone,
)
from tests.bare import AGENTS, bare_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the /proc path is Linux's")

SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(60)"


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A Python child that has said it is ready, then sleeps; killed afterwards."""
    p = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def ct_of(pid: int) -> float:
    """The create time a console has for ``pid``: the agent's, as it sends it."""
    return host_os().create_time(pid)


def wait_status(hos: HostOS, pid: int, status: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while hos.status(pid) != status:
        assert time.monotonic() < end, f"pid {pid} never became {status}"
        time.sleep(0.01)


# ------------------------------------------------------------ host readings


def test_linux_takes_the_standard_library_path() -> None:
    assert isinstance(host_os(), LinuxOS)


def test_counts_and_totals_are_psutil_s() -> None:
    ours = LinuxOS()
    assert ours.cpu_count() == psutil.cpu_count(logical=True) == len(procfs.per_core_times())
    assert ours.physical_cores() == psutil.cpu_count(logical=False)
    total, available, swap_total, swap_used = ours.memory()
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    assert total == vm.total
    assert swap_total == sw.total
    # Available memory and swap in use move while we look; 5% of the total is one reading.
    assert abs(available - vm.available) < 0.05 * total
    assert abs(swap_used - sw.used) <= max(0.05 * swap_total, 0)
    assert 0 <= available <= total


def test_boot_time_is_psutil_s() -> None:
    # The kernel derives btime from the wall clock; a stepped clock moves it by whole
    # seconds between two readings, never by a fraction.
    off = procfs.boot_time(fresh=True) - psutil.boot_time()
    assert off == round(off) and abs(off) <= 30, off
    assert procfs.boot_time() == procfs.boot_time()  # kept once read


def test_per_core_load_agrees_with_psutil_over_the_same_window() -> None:
    ours = CpuCollector()
    psutil.cpu_percent(percpu=True)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        theirs = [p / 100.0 for p in psutil.cpu_percent(percpu=True)]
        loads = ours.per_core()
    finally:
        spinner.kill()
        spinner.wait()
    assert len(loads) == len(theirs) == os.cpu_count()
    assert all(0.0 <= x <= 1.0 for x in loads)
    # The same 0.5 s but for the instants between the reads: within 0.15 per core, and
    # the spinner shows (a core's worth of work over the cores, shared with whatever else).
    for mine, psutil_s in zip(loads, theirs, strict=True):
        assert abs(mine - psutil_s) < 0.15, (loads, theirs)
    assert sum(loads) > 0.5, loads


def test_busy_fraction_is_psutil_s_formula() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    old = (100, 0, 50, 800, 50, 0, 0, 0, 0, 0)
    new = (160, 0, 70, 880, 70, 0, 0, 0, 20, 0)  # guest time is inside user already
    # total 60+20+80+20 = 180, busy 180-80-20 = 80
    assert procfs.busy_fraction(old, new) == pytest.approx(80 / 180)
    assert procfs.busy_fraction(new, new) == 0.0
    back = (160, 0, 70, 880, 10, 0, 0, 0, 20, 0)  # iowait went back: counted as 0
    assert 0.0 <= procfs.busy_fraction(new, back) <= 1.0
    assert procfs.busy_fraction((1, 2, 3, 4), (2, 3, 4, 5)) == pytest.approx(0.75)


def test_physical_cores_from_cpuinfo_when_sys_has_no_topology(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # psutil's second method: "physical id" and "cpu cores" per package.
    monkeypatch.setattr("glob.glob", lambda _pattern: [])
    text = (
        b"processor\t: 0\nphysical id\t: 0\ncpu cores\t: 4\n\n"
        b"processor\t: 1\nphysical id\t: 0\ncpu cores\t: 4\n\n"
        b"processor\t: 2\nphysical id\t: 1\ncpu cores\t: 2\n"
    )
    real = procfs.read
    monkeypatch.setattr(
        procfs, "read", lambda path, limit=1 << 20: text if path.endswith("cpuinfo") else real(path)
    )
    assert procfs.physical_cores() == 6


# ------------------------------------------------------------ processes


@pytest.mark.parametrize("hos", [LinuxOS(), PsutilOS()], ids=["stdlib", "psutil"])
def test_a_process_reads_the_same_both_ways(hos: HostOS, child: subprocess.Popen[bytes]) -> None:
    ps = psutil.Process(child.pid)
    assert hos.name(child.pid) == ps.name()
    wait_status(hos, child.pid, "sleeping")  # it said ready; now it goes to sleep
    assert hos.status(child.pid) == ps.status() == "sleeping"
    assert hos.nice(child.pid) == ps.nice()
    assert hos.affinity(child.pid) == sorted(ps.cpu_affinity())
    off = hos.create_time(child.pid) - ps.create_time()
    assert abs(off) < 0.01 or (abs(off - round(off)) < 0.01 and abs(off) <= 30), off
    assert hos.same(child.pid, hos.stamp(child.pid))
    assert not hos.same(child.pid, hos.stamp(child.pid) - 5)
    assert set(hos.children(os.getpid())) == {c.pid for c in psutil.Process().children(True)}


def test_a_long_name_is_the_command_s_as_psutil_gives_it() -> None:
    code = "import time; print('ready', flush=True); time.sleep(60)"
    link = f"/tmp/llmaos-a-very-long-python-name-{os.getpid()}"
    os.symlink(sys.executable, link)
    try:
        p = subprocess.Popen([link, "-c", code], stdout=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
            comm = procfs.stat(p.pid)[0]
            assert len(comm) == 15  # the kernel cut it
            assert LinuxOS().name(p.pid) == psutil.Process(p.pid).name() == os.path.basename(link)
            assert procfs.cmdline(p.pid) == psutil.Process(p.pid).cmdline()
        finally:
            p.kill()
            p.wait()
    finally:
        os.unlink(link)


def test_the_stamp_does_not_move_when_the_boot_time_does(
    child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock step moves /proc/stat's btime by whole seconds: a record's stamp (start
    since boot) still names the process, and a create time computed against either the
    boot time this process read or the one the kernel gives now is still accepted."""
    hos = LinuxOS()
    stamp = hos.stamp(child.pid)
    psutil_ct = psutil.Process(child.pid).create_time()  # against btime as it is now
    monkeypatch.setattr(procfs, "_boot", procfs.boot_time(fresh=True) - 4.0)  # read pre-step
    assert hos.stamp(child.pid) == stamp and hos.same(child.pid, stamp)
    wire_ct = hos.create_time(child.pid)
    assert wire_ct == pytest.approx(psutil_ct - 4.0, abs=0.01)
    assert hos.lookup(child.pid, wire_ct).pid == child.pid
    assert hos.lookup(child.pid, psutil_ct).pid == child.pid
    assert hos.same(child.pid, psutil_ct)  # an older record: a create time
    with pytest.raises(ValueError, match="expected"):
        hos.lookup(child.pid, wire_ct - 2.0)  # neither: another process


def test_wait_gone_sees_an_exit(child: subprocess.Popen[bytes]) -> None:
    assert not wait_gone(child.pid, time.monotonic() + 0.05)
    child.kill()  # a zombie until reaped: gone for wait_gone
    assert wait_gone(child.pid, time.monotonic() + 10)
    child.wait()
    assert wait_gone(child.pid, time.monotonic())


# ------------------------------------------------------------ control


def test_renice_a_child(child: subprocess.Popen[bytes]) -> None:
    ch = control.renice(child.pid, ct_of(child.pid), 7, protected=frozenset())
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == 7
    assert (ch.before, ch.after) == ("nice 0", "nice 7")
    assert ch.target == f"pid {child.pid} ({psutil.Process(child.pid).name()})"


def test_pin_a_child(child: subprocess.Popen[bytes]) -> None:
    core = max(os.sched_getaffinity(0))
    ch = control.set_affinity(child.pid, ct_of(child.pid), [core], protected=frozenset())
    assert os.sched_getaffinity(child.pid) == {core}
    assert ch.after == f"cores {core}"
    with pytest.raises(Refused, match="no core"):
        control.set_affinity(
            child.pid, ct_of(child.pid), [os.cpu_count() or 1], protected=frozenset()
        )
    assert os.sched_getaffinity(child.pid) == {core}


def test_signal_a_child(child: subprocess.Popen[bytes]) -> None:
    hos = host_os()
    ct = ct_of(child.pid)
    wait_status(hos, child.pid, "sleeping")
    ch = control.send_signal(child.pid, ct, "stop", protected=frozenset())
    assert (ch.before, ch.after) == ("sleeping", "sent SIGSTOP")
    wait_status(hos, child.pid, "stopped")
    control.send_signal(child.pid, ct, "SIGCONT", protected=frozenset())
    wait_status(hos, child.pid, "sleeping")
    control.send_signal(child.pid, ct, "KILL", protected=frozenset())
    assert child.wait(timeout=10) == -signal.SIGKILL


def test_a_pid_that_is_gone_is_a_clear_refusal(child: subprocess.Popen[bytes]) -> None:
    ct = ct_of(child.pid)
    child.kill()
    child.wait()
    calls: list[Callable[[], object]] = [
        lambda: control.renice(child.pid, ct, 5, protected=frozenset()),
        lambda: control.set_affinity(child.pid, ct, [0], protected=frozenset()),
        lambda: control.send_signal(child.pid, ct, "TERM", protected=frozenset()),
    ]
    for call in calls:
        with pytest.raises(Refused, match=f"pid {child.pid} is gone"):
            call()


def test_a_reused_pid_is_refused_and_left_alone(child: subprocess.Popen[bytes]) -> None:
    """The console's create time is of an earlier process of that pid: nothing is done."""
    earlier = ct_of(child.pid) - 5
    calls: list[Callable[[], object]] = [
        lambda: control.renice(child.pid, earlier, 5, protected=frozenset()),
        lambda: control.set_affinity(child.pid, earlier, [0], protected=frozenset()),
        lambda: control.send_signal(child.pid, earlier, "KILL", protected=frozenset()),
    ]
    for call in calls:
        with pytest.raises(Refused, match="another process now"):
            call()
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == 0
    assert child.poll() is None


def test_the_signal_checks_identity_after_the_pidfd_is_open(
    child: subprocess.Popen[bytes],
) -> None:
    # A Target looked up before its pid was reused: the pidfd's check refuses it.
    stale = Target(child.pid, "python", ct_of(child.pid) - 5)
    with pytest.raises(Gone):
        LinuxOS().send_signal(stale, "KILL")
    assert child.poll() is None


def test_nice_out_of_range_and_unknown_signals_are_refused(
    child: subprocess.Popen[bytes],
) -> None:
    ct = ct_of(child.pid)
    for nice in (20, -21):
        with pytest.raises(Refused, match="out of range"):
            control.renice(child.pid, ct, nice, protected=frozenset())
    with pytest.raises(Refused, match="not one of"):
        control.send_signal(child.pid, ct, "SEGV", protected=frozenset())
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == 0 and child.poll() is None


def test_protected_processes_are_refused(child: subprocess.Popen[bytes]) -> None:
    with pytest.raises(Refused, match="protected"):
        control.send_signal(1, 0.0, "TERM", protected=frozenset())
    with pytest.raises(Refused, match="the agent itself"):
        control.send_signal(child.pid, ct_of(child.pid), "TERM", protected=frozenset({child.pid}))
    assert child.poll() is None


# ------------------------------------------------------------ capabilities


@pytest.mark.parametrize(
    ("platform", "affinity", "cpu_num", "signals"),
    [
        ("linux", True, True, SIGNALS),
        ("darwin", False, False, SIGNALS),
        ("win32", True, False, ("TERM", "KILL")),
    ],
)
def test_capabilities_per_platform(
    platform: str, affinity: bool, cpu_num: bool, signals: tuple[str, ...]
) -> None:
    can = features(platform)
    assert (can.affinity, can.cpu_num, can.signals) == (affinity, cpu_num, signals)
    caps = capabilities(nvml_reason=None, read_only=False, platform=can)
    assert (caps.affinity, caps.cpu_num) == (affinity, cpu_num)
    # A collector that cannot (say, psutil without cpu_num) is believed over the platform.
    caps = capabilities(affinity=False, cpu_num=False, nvml_reason=None, read_only=False,
                        platform=can)  # fmt: skip
    assert not caps.affinity and not caps.cpu_num
    assert set(can.signals) <= set(SIGNALS)


def test_this_host_reports_linux_s_capabilities() -> None:
    caps = capabilities(nvml_reason=None, read_only=True)
    assert caps.affinity and caps.cpu_num and caps.read_only


# ------------------------------------------------------------ bare interpreter

_BARE_CORE = """
import json, os, sys, time
from llmaos_agent.collect.cpu import CpuCollector, load_average
from llmaos_agent.system import host_os
cpu = CpuCollector()
end = time.perf_counter() + 0.2
while time.perf_counter() < end:
    pass
hos = host_os()
me = os.getpid()
print(json.dumps({
    "loads": cpu.per_core(), "load": load_average(), "cores": hos.cpu_count(),
    "physical": hos.physical_cores(), "memory": hos.memory(), "boot": hos.boot_time(),
    "me": [hos.name(me), hos.status(me), hos.nice(me), hos.affinity(me), hos.create_time(me)],
    "os": type(hos).__name__,
    "loaded": sorted(m for m in ("psutil", "msgspec") if m in sys.modules),
}))
"""


def run_bare(code: str) -> dict[str, Any]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(AGENTS)}
    out = subprocess.run(
        [str(bare_python()), "-c", code], capture_output=True, text=True, env=env, timeout=60,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    value = json.loads(out.stdout)
    assert isinstance(value, dict)
    return value


def test_cores_memory_and_processes_on_a_bare_python() -> None:
    got = run_bare(_BARE_CORE)
    assert got["loaded"] == [], "psutil or msgspec was imported"
    assert got["os"] == "LinuxOS"
    loads = got["loads"]
    assert isinstance(loads, list) and len(loads) == os.cpu_count() == got["cores"]
    assert all(0.0 <= x <= 1.0 for x in loads) and sum(loads) > 0.05
    assert got["physical"] == psutil.cpu_count(logical=False)
    memory = got["memory"]
    assert isinstance(memory, list)
    assert memory[0] == psutil.virtual_memory().total and memory[2] == psutil.swap_memory().total
    assert got["load"] is not None and len(got["load"]) == 3
    name, status, nice, affinity, ct = got["me"]
    assert name in ("python", "python3") and status == "running"
    assert nice == os.getpriority(os.PRIO_PROCESS, 0)
    assert affinity == sorted(os.sched_getaffinity(0))
    assert isinstance(ct, float) and ct > procfs.boot_time() - 30


_BARE_COLLECTORS = """
import json, os, sys
from llmaos_agent.collect.host import capabilities, host_facts
from llmaos_agent.collect.memory import memory
from llmaos_agent.collect.processes import ProcessCollector
procs = ProcessCollector()
table = procs.snapshot()
me = table[os.getpid()]
f, m = host_facts(), memory()
caps = capabilities(affinity=procs.has_affinity, cpu_num=procs.has_cpu_num, nvml_reason="x",
                    read_only=True)
print(json.dumps({
    "cores": f.cores, "physical": f.physical_cores, "mem_total": f.mem_total,
    "boot": f.boot_time, "total": m.total, "swap_total": m.swap_total,
    "rows": len(table), "ppid": me.ppid, "affinity": me.affinity, "fast": procs.fast,
    "caps": [caps.affinity, caps.cpu_num],
    "loaded": sorted(m for m in ("psutil", "msgspec") if m in sys.modules),
}))
"""


def test_the_collectors_on_a_bare_python() -> None:
    """The hello's facts, the memory sample and the process table, as a bare host has them
    (the protocol's stand-ins for msgspec's Structs included)."""
    got = run_bare(_BARE_COLLECTORS)
    assert got["loaded"] == [], "psutil or msgspec was imported"
    assert got["cores"] == os.cpu_count() and got["physical"] == psutil.cpu_count(logical=False)
    assert got["mem_total"] == got["total"] == psutil.virtual_memory().total
    assert got["swap_total"] == psutil.swap_memory().total
    assert got["fast"] and got["caps"] == [True, True]
    assert got["ppid"] == os.getpid() and got["affinity"]
    assert got["rows"] >= 3  # init, this test, the bare python at least
    off = got["boot"] - psutil.boot_time()
    assert off == round(off) and abs(off) <= 30
