"""The GPU collector against the real NVML, where an NVIDIA GPU and driver exist.

Also checks the stand-in (tests/nvml_standin.py) against the real driver's behaviour:
the same result types, the same errors for a bad index and before init.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from llmaos_agent.collect.gpu import GpuCollector
from llmaos_agent.protocol import GpuSample

pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")


def _nvml_error() -> str | None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return str(exc)
    pynvml.nvmlShutdown()
    return None


_WHY = _nvml_error()
pytestmark = pytest.mark.skipif(
    _WHY is not None, reason=f"no NVIDIA GPU here: pynvml.nvmlInit() failed ({_WHY})"
)


@pytest.fixture
def nvml() -> Iterator[object]:
    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


@pytest.fixture
def gpus() -> Iterator[GpuCollector]:
    collector = GpuCollector()
    try:
        yield collector
    finally:
        collector.close()


def test_collector_sees_every_device(nvml: object, gpus: GpuCollector) -> None:
    assert gpus.available, gpus.reason
    assert gpus.reason is None
    assert gpus.count == pynvml.nvmlDeviceGetCount()
    samples = gpus.sample()
    assert [g.index for g in samples] == list(range(gpus.count))
    for g in samples:
        h = pynvml.nvmlDeviceGetHandleByIndex(g.index)
        assert g.uuid == pynvml.nvmlDeviceGetUUID(h)
        assert g.name == pynvml.nvmlDeviceGetName(h)


def test_values_are_in_range(gpus: GpuCollector) -> None:
    for g in gpus.sample():
        assert g.error is None, g.error
        if g.util is not None:
            assert 0.0 <= g.util <= 1.0
        if g.mem_total is not None:
            assert g.mem_total > 0
            assert g.mem_used is not None and 0 <= g.mem_used <= g.mem_total
        if g.temp_c is not None:
            assert 0 <= g.temp_c <= 125
        if g.power_w is not None:
            assert 0.0 <= g.power_w <= 2000.0
        if g.power_limit_w is not None:
            assert 0.0 < g.power_limit_w <= 2000.0
        for p in g.procs:
            assert p.pid >= 0
            assert p.used_mem is None or p.used_mem >= 0


def test_samples_are_valid_on_the_wire(gpus: GpuCollector) -> None:
    samples = gpus.sample()
    assert msgspec.json.decode(msgspec.json.encode(samples), type=list[GpuSample]) == samples


def test_memory_matches_the_driver(nvml: object, gpus: GpuCollector) -> None:
    for g in gpus.sample():
        mem = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(g.index))
        assert g.mem_total == mem.total
        # Used memory moves as other work runs; within 5% of the card is the same reading.
        assert g.mem_used is not None and abs(g.mem_used - mem.used) <= 0.05 * mem.total


def test_close_then_a_new_collector_works() -> None:
    first = GpuCollector()
    n = first.count
    first.close()
    assert first.sample() == []
    second = GpuCollector()
    try:
        assert second.available and second.count == n
    finally:
        second.close()


# ------------------------------------------- the stand-in's model of the driver


def test_driver_results_have_the_types_the_standin_returns(nvml: object) -> None:
    if pynvml.nvmlDeviceGetCount() == 0:
        pytest.skip("NVML initialises but reports no device")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(pynvml.nvmlDeviceGetUtilizationRates(h), pynvml.c_nvmlUtilization_t)
    assert isinstance(pynvml.nvmlDeviceGetMemoryInfo(h), pynvml.c_nvmlMemory_t)
    assert isinstance(pynvml.nvmlDeviceGetName(h), str)
    assert isinstance(pynvml.nvmlDeviceGetUUID(h), str)
    assert isinstance(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU), int)
    for getter in (
        pynvml.nvmlDeviceGetComputeRunningProcesses,
        pynvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        try:
            procs = getter(h)
        except pynvml.NVMLError_NotSupported:
            continue
        for p in procs:
            assert isinstance(p, pynvml.nvmlFriendlyObject)
            assert isinstance(p.pid, int)
            assert p.usedGpuMemory is None or isinstance(p.usedGpuMemory, int)


def test_driver_errors_are_the_ones_the_standin_raises(nvml: object) -> None:
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetHandleByIndex(pynvml.nvmlDeviceGetCount())
    if pynvml.nvmlDeviceGetCount():
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetTemperature(h, 99)


def test_driver_before_init_is_uninitialized() -> None:
    # No nvml fixture: the library is loaded (by the skip check) but not initialised.
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
