"""The GPU collector against the NVML stand-in, the real pynvml without a driver, and
the stand-in itself against the real pynvml's API surface."""

from __future__ import annotations

import inspect
import os
import sys
import time

import pynvml
import pytest

from llmaos_agent.collect.gpu import GpuCollector, gpu_mem_by_pid
from llmaos_agent.collect.sampler import Sampler
from llmaos_agent.protocol import GpuProc, GpuSample
from tests.nvml_standin import Device, NvmlStandIn, init_count, two_gpus

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
GB = 10**9


def collect(devices: list[Device]) -> tuple[NvmlStandIn, GpuCollector]:
    nv = NvmlStandIn(devices)
    return nv, GpuCollector(nv)


def idle(pid: int, used: int | None) -> GpuProc:
    """A GPU process with no utilisation sample: it used none of the SM or memory."""
    return GpuProc(pid, used, 0.0, 0.0)


# --------------------------------------------------------------- the collector


def test_two_gpus_with_one_process_each() -> None:
    devices = two_gpus({0: (1111, 3 * GB), 1: (2222, 5 * GB)})
    nv, gpus = collect(devices)
    assert gpus.available and gpus.reason is None
    assert gpus.count == 2
    got = gpus.sample()
    assert [g.index for g in got] == [0, 1]
    for g, d in zip(got, devices, strict=True):
        assert g.name == d.name and g.uuid == d.uuid
        assert g.error is None
        # NVML reports percent, milliwatts and bytes; the wire carries 0..1, watts and bytes.
        assert g.util == pytest.approx(d.util_gpu / 100)
        assert g.power_w == pytest.approx(d.power_mw / 1000, abs=0.051)
        assert g.power_limit_w == pytest.approx(d.power_limit_mw / 1000, abs=0.051)
        assert g.mem_used == d.mem_used and g.mem_total == d.mem_total
        assert g.temp_c == d.temp_c
    # No utilisation samples (NVML answers NotFound): a share of 0, not unknown.
    assert got[0].procs == [GpuProc(pid=1111, used_mem=3 * GB, sm=0.0, mem=0.0)]
    assert got[1].procs == [GpuProc(pid=2222, used_mem=5 * GB, sm=0.0, mem=0.0)]
    # By hand, for the first device: 37 % busy, 123.456 W of 700 W.
    assert (got[0].util, got[0].power_w, got[0].power_limit_w) == (0.37, 123.5, 700.0)
    assert got[1].util == 1.0
    gpus.close()
    assert init_count(nv) == 0


def test_samples_follow_the_device() -> None:
    devices = two_gpus()
    _, gpus = collect(devices)
    assert gpus.sample()[1].util == 1.0
    devices[1].util_gpu = 0
    devices[1].mem_used = 7
    devices[1].compute_procs.append((4242, 7))
    g = gpus.sample()[1]
    assert (g.util, g.mem_used, g.procs) == (0.0, 7, [idle(4242, 7)])


def test_compute_and_graphics_processes_are_merged() -> None:
    d = Device(compute_procs=[(30, 100), (10, None)], graphics_procs=[(20, 5), (30, 100)])
    _, gpus = collect([d])
    (g,) = gpus.sample()
    # Sorted by pid, one entry per pid, "not available" memory kept as unknown (None).
    assert g.procs == [idle(10, None), idle(20, 5), idle(30, 100)]


@pytest.mark.parametrize(
    ("fn", "field"),
    [
        ("nvmlDeviceGetPowerUsage", "power_w"),
        ("nvmlDeviceGetEnforcedPowerLimit", "power_limit_w"),
        ("nvmlDeviceGetTemperature", "temp_c"),
        ("nvmlDeviceGetUtilizationRates", "util"),
        ("nvmlDeviceGetMemoryInfo", "mem_used"),
        ("nvmlDeviceGetMemoryInfo", "mem_total"),
    ],
)
def test_an_unsupported_field_is_none_not_a_crash(fn: str, field: str) -> None:
    devices = two_gpus({0: (1, 10), 1: (2, 20)})
    devices[0].nvml_errors[fn] = NOT_SUPPORTED
    _, gpus = collect(devices)
    first, second = gpus.sample()
    assert getattr(first, field) is None
    assert first.error is None
    # Everything else on that device still reports.
    others = {"util", "mem_used", "mem_total", "temp_c", "power_w", "power_limit_w"} - {field}
    if fn == "nvmlDeviceGetMemoryInfo":
        others -= {"mem_used", "mem_total"}
    assert all(getattr(first, f) is not None for f in others)
    assert first.procs == [idle(1, 10)]
    # And the other device is untouched.
    assert all(getattr(second, f) is not None for f in (*others, field))


def test_unsupported_process_lists_leave_an_empty_list() -> None:
    d = Device(
        compute_procs=[(1, 1)],
        nvml_errors={
            "nvmlDeviceGetComputeRunningProcesses": NOT_SUPPORTED,
            "nvmlDeviceGetGraphicsRunningProcesses": NOT_SUPPORTED,
        },
    )
    _, gpus = collect([d])
    (g,) = gpus.sample()
    assert g.procs == [] and g.error is None and g.util is not None


def test_an_old_driver_without_a_versioned_function_costs_only_that_field() -> None:
    """pynvml raises NVMLLibraryMismatchError (not an NVMLError) for a missing function."""
    mismatch = pynvml.NVMLLibraryMismatchError("Unversioned function called ...")
    d = Device(util_gpu=50, raises={"nvmlDeviceGetComputeRunningProcesses": mismatch})
    d.graphics_procs.append((7, 70))
    _, gpus = collect([d])
    (g,) = gpus.sample()
    assert g.error is None
    assert g.util == 0.5
    assert g.procs == [idle(7, 70)]


def test_a_broken_device_is_marked_and_the_other_still_reports() -> None:
    devices = two_gpus({0: (1, 10), 1: (2, 20)})
    devices[1].raises["nvmlDeviceGetMemoryInfo"] = RuntimeError("PCIe link down")
    _, gpus = collect(devices)
    first, second = gpus.sample()
    assert first.error is None and first.util == 0.37 and first.procs == [idle(1, 10)]
    assert second.error is not None and "PCIe link down" in second.error
    assert "RuntimeError" in second.error
    # The broken device keeps its identity so the console can show which one it is.
    assert (second.index, second.name, second.uuid) == (1, devices[1].name, devices[1].uuid)
    # ... and when it recovers, it reports again.
    del devices[1].raises["nvmlDeviceGetMemoryInfo"]
    assert gpus.sample()[1].error is None


def test_missing_name_and_uuid_get_placeholders() -> None:
    d = Device(nvml_errors={"nvmlDeviceGetName": NOT_SUPPORTED, "nvmlDeviceGetUUID": NOT_SUPPORTED})
    _, gpus = collect([Device(), d])
    assert gpus.available
    second = gpus.sample()[1]
    assert second.name and second.uuid
    assert "1" in second.name and "1" in second.uuid


def test_no_driver_means_not_available() -> None:
    nv = NvmlStandIn([Device()], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    gpus = GpuCollector(nv)
    assert not gpus.available
    assert gpus.reason is not None and "Driver Not Loaded" in gpus.reason
    assert gpus.sample() == []
    assert gpus.count == 0
    gpus.close()  # nothing to shut down, and no error


def test_enumeration_failure_means_not_available_and_shuts_nvml_down() -> None:
    d = Device(nvml_errors={"nvmlDeviceGetHandleByIndex": pynvml.NVML_ERROR_GPU_IS_LOST})
    nv = NvmlStandIn([Device(), d])
    gpus = GpuCollector(nv)
    assert not gpus.available
    assert gpus.reason is not None and "GPU is lost" in gpus.reason
    assert gpus.sample() == []
    assert init_count(nv) == 0


def test_no_gpus_is_available_and_empty() -> None:
    nv, gpus = collect([])
    assert gpus.available and gpus.count == 0
    assert gpus.sample() == []
    gpus.close()
    assert init_count(nv) == 0


def test_close_is_idempotent_and_stops_sampling() -> None:
    nv, gpus = collect(two_gpus())
    assert init_count(nv) == 1
    gpus.close()
    gpus.close()
    assert init_count(nv) == 0
    assert gpus.sample() == []


# ------------------------------------------------------ per-process utilisation


def test_process_shares_are_each_pids_latest_sample() -> None:
    """The SM and memory share nvitop shows: each pid's newest sample of the last two
    seconds; a process whose samples are older, or who has none, used none."""
    d = Device(
        compute_procs=[(10, GB), (20, GB), (30, GB)],
        proc_util=[(10, 40, 12, 0.5), (10, 55, 20, 0.1), (20, 90, 90, 5.0), (99, 7, 7, 0.1)],
    )
    _, gpus = collect([d])
    (g,) = gpus.sample()
    assert g.procs == [GpuProc(10, GB, 0.55, 0.2), idle(20, GB), idle(30, GB)]
    # A sample for a pid not in the process lists (99) adds no process.
    d.proc_util = [(30, 100, 3, 0.0)]
    (g,) = gpus.sample()
    assert g.procs == [idle(10, GB), idle(20, GB), GpuProc(30, GB, 1.0, 0.03)]


def test_a_device_without_process_samples_says_unknown_not_zero() -> None:
    devices = two_gpus({0: (1, GB), 1: (2, GB)})
    devices[0].nvml_errors["nvmlDeviceGetProcessUtilization"] = NOT_SUPPORTED
    devices[1].proc_util = [(2, 25, 5, 0.0)]
    _, gpus = collect(devices)
    first, second = gpus.sample()
    assert first.procs == [GpuProc(1, GB, None, None)] and first.error is None
    assert second.procs == [GpuProc(2, GB, 0.25, 0.05)]
    # NotSupported does not come and go: the device is not asked again.
    del devices[0].nvml_errors["nvmlDeviceGetProcessUtilization"]
    devices[0].proc_util = [(1, 50, 50, 0.0)]
    assert gpus.sample()[0].procs == [GpuProc(1, GB, None, None)]


def test_another_nvml_error_costs_the_shares_of_that_sample_only() -> None:
    d = Device(compute_procs=[(1, GB)], proc_util=[(1, 60, 6, 0.0)])
    d.nvml_errors["nvmlDeviceGetProcessUtilization"] = pynvml.NVML_ERROR_GPU_IS_LOST
    _, gpus = collect([d])
    (g,) = gpus.sample()
    assert g.procs == [GpuProc(1, GB, None, None)] and g.error is None and g.util is not None
    del d.nvml_errors["nvmlDeviceGetProcessUtilization"]
    assert gpus.sample()[0].procs == [GpuProc(1, GB, 0.6, 0.06)]


def test_process_shares_can_be_turned_off() -> None:
    """LLMAOS_AGENT_IO=off (the bench's baseline) asks NVML for no process samples."""
    me = os.getpid()
    devices = two_gpus({0: (me, GB)})
    devices[0].proc_util = [(me, 80, 8, 0.0)]
    on, off = Sampler(nvml=NvmlStandIn(devices)), Sampler(nvml=NvmlStandIn(devices), io=False)
    try:
        assert on.sample().gpus[0].procs == [GpuProc(me, GB, 0.8, 0.08)]
        assert off.sample().gpus[0].procs == [GpuProc(me, GB, None, None)]
    finally:
        on.close()
        off.close()


def test_gpu_mem_by_pid() -> None:
    samples = [
        GpuSample(index=0, uuid="a", name="a", procs=[GpuProc(1, 100), GpuProc(2, None)]),
        GpuSample(index=1, uuid="b", name="b", procs=[GpuProc(1, 50), GpuProc(3, 7)]),
        GpuSample(index=2, uuid="c", name="c", error="broken"),
    ]
    # Summed over devices; unknown memory is not counted as zero.
    assert gpu_mem_by_pid(samples) == {1: 150, 3: 7}
    assert gpu_mem_by_pid([]) == {}


def test_gpu_memory_reaches_the_process_table() -> None:
    """End to end on this host: the stand-in's process is this test, with real psutil."""
    me = os.getpid()
    devices = two_gpus({0: (me, 2 * GB), 1: (me, 1 * GB)})
    sampler = Sampler(nvml=NvmlStandIn(devices))
    try:
        sample = sampler.sample()
        assert [g.uuid for g in sample.gpus] == [d.uuid for d in devices]
        table = sampler.processes(sample)
        assert table[me].gpu_mem == 3 * GB
        assert table[os.getppid()].gpu_mem is None
        caps = sampler.capabilities(read_only=False)
        assert caps.nvml and caps.nvml_reason is None
    finally:
        sampler.close()


# ------------------------------------------------------- the real library here


def nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_real_pynvml_without_a_driver() -> None:
    if nvml_works():
        pytest.skip("NVML works on this host; tests/test_gpu_real.py covers it")
    with pytest.raises(pynvml.NVMLError) as info:
        pynvml.nvmlInit()
    gpus = GpuCollector()
    assert not gpus.available
    assert gpus.count == 0
    assert gpus.sample() == []
    assert gpus.reason is not None
    assert "NVML" in gpus.reason and str(info.value) in gpus.reason
    if isinstance(info.value, pynvml.NVMLError_LibraryNotFound):
        assert "library" in gpus.reason.lower()
    gpus.close()


def test_without_nvidia_ml_py_the_reason_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` now raises ImportError
    with pytest.raises(ImportError):
        __import__("pynvml")
    gpus = GpuCollector()
    assert not gpus.available and gpus.sample() == []
    assert gpus.reason is not None
    assert "nvidia-ml-py" in gpus.reason and "pip install" in gpus.reason


def test_sampler_reports_why_gpus_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    sampler = Sampler()
    try:
        caps = sampler.capabilities(read_only=True)
        assert caps.nvml is False and caps.nvml_reason and "nvidia-ml-py" in caps.nvml_reason
        assert sampler.sample().gpus == []
    finally:
        sampler.close()


# ------------------------------------------------- the stand-in vs the real API


def public_names(obj: object) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def test_standin_names_exist_in_pynvml() -> None:
    nv = NvmlStandIn()
    names = public_names(nv)
    assert names, "the stand-in exposes nothing"
    missing = [n for n in names if not hasattr(pynvml, n)]
    assert missing == [], f"the stand-in has names pynvml lacks: {missing}"
    for n in names:
        ours, real = getattr(nv, n), getattr(pynvml, n)
        if not callable(real) or inspect.isclass(real):
            assert ours is real or ours == real, f"{n}: {ours!r} != pynvml's {real!r}"


def test_standin_covers_what_the_collector_calls() -> None:
    source = inspect.getsource(sys.modules[GpuCollector.__module__])
    used = {n for n in public_names(pynvml) if f".{n}" in source and n.startswith(("nvml", "NVML"))}
    assert used, "the collector calls no NVML function?"
    assert used <= set(public_names(NvmlStandIn())), used - set(public_names(NvmlStandIn()))


@pytest.mark.parametrize(
    "name", [n for n in public_names(NvmlStandIn()) if inspect.isfunction(getattr(pynvml, n))]
)
def test_standin_functions_take_what_pynvml_takes(name: str) -> None:
    ours = inspect.signature(getattr(NvmlStandIn(), name)).parameters
    real = inspect.signature(getattr(pynvml, name)).parameters
    assert len(ours) == len(real)
    assert list(ours) == list(real)
    assert [p.default is p.empty for p in ours.values()] == [
        p.default is p.empty for p in real.values()
    ]


def test_standin_result_types_are_pynvml_types() -> None:
    nv = NvmlStandIn([Device(compute_procs=[(5, 10), (6, None)])])
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(nv.nvmlDeviceGetUtilizationRates(h), pynvml.c_nvmlUtilization_t)
    assert isinstance(nv.nvmlDeviceGetMemoryInfo(h), pynvml.c_nvmlMemory_t)
    v2 = nv.nvmlDeviceGetMemoryInfo(h, pynvml.nvmlMemory_v2)
    assert isinstance(v2, pynvml.c_nvmlMemory_v2_t) and v2.version == pynvml.nvmlMemory_v2
    assert isinstance(nv.nvmlDeviceGetName(h), str)
    assert isinstance(nv.nvmlDeviceGetUUID(h), str)
    procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
    assert all(isinstance(p, pynvml.nvmlFriendlyObject) for p in procs)
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(5, 10), (6, None)]
    nv.nvmlShutdown()


def test_standin_process_samples_are_pynvmls_and_filtered_by_timestamp() -> None:
    """As the driver answers: samples newer than the timestamp (microseconds since the
    epoch) as pynvml's structs, and NotFound when there is none."""
    nv = NvmlStandIn([Device(proc_util=[(5, 40, 4, 0.0), (6, 10, 1, 10.0)]), Device()])
    nv.nvmlInit()
    h, empty = nv.nvmlDeviceGetHandleByIndex(0), nv.nvmlDeviceGetHandleByIndex(1)
    every = nv.nvmlDeviceGetProcessUtilization(h, 0)
    assert all(isinstance(s, pynvml.c_nvmlProcessUtilizationSample_t) for s in every)
    assert sorted((s.pid, s.smUtil, s.memUtil) for s in every) == [(5, 40, 4), (6, 10, 1)]
    recent = nv.nvmlDeviceGetProcessUtilization(h, int((time.time() - 5) * 1e6))
    assert [s.pid for s in recent] == [5]
    with pytest.raises(pynvml.NVMLError_NotFound):
        nv.nvmlDeviceGetProcessUtilization(empty, 0)
    with pytest.raises(pynvml.NVMLError_NotFound):
        nv.nvmlDeviceGetProcessUtilization(h, int((time.time() + 5) * 1e6))
    nv.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlDeviceGetProcessUtilization(h, 0)


def test_standin_raises_the_real_error_classes() -> None:
    nv = NvmlStandIn([Device(nvml_errors={"nvmlDeviceGetPowerUsage": NOT_SUPPORTED})])
    # Before init: the same error the real library gives (checked on the real one too).
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlShutdown()
    nv.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetHandleByIndex(-1)
    h = nv.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported) as info:
        nv.nvmlDeviceGetPowerUsage(h)
    assert str(info.value) == "Not Supported" and info.value.value == NOT_SUPPORTED
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetTemperature(h, 99)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetName(object())  # type: ignore[arg-type]  # not a handle at all
    # A handle from another NVML session is not this one's.
    other = NvmlStandIn([Device()])
    other.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetName(other.nvmlDeviceGetHandleByIndex(0))
    # Init is counted, like the real library's.
    nv.nvmlInit()
    nv.nvmlShutdown()
    assert nv.nvmlDeviceGetCount() == 1
    nv.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlDeviceGetHandleByIndex(0)
