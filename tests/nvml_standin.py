"""An NVML stand-in for machines without an NVIDIA GPU: the one fake at a hardware boundary.

It behaves like the real ``pynvml`` module (from nvidia-ml-py) as far as the GPU
collector uses it, and it is built out of the real module's own parts:

- the errors are the real ``pynvml.NVMLError`` classes, raised the way pynvml
  raises them (``pynvml.NVMLError(code)`` becomes e.g. ``NVMLError_NotSupported``);
- results are the real result structs (``c_nvmlUtilization_t``, ``c_nvmlMemory_t``
  or ``c_nvmlMemory_v2_t``) and process lists are what pynvml returns: friendly
  objects made from ``c_nvmlProcessInfo_t``, ``usedGpuMemory`` None where the driver
  reports "not available";
- process utilisation samples are the real ``c_nvmlProcessUtilizationSample_t``, returned
  as pynvml returns them (those newer than the caller's timestamp, in microseconds since
  the epoch), with ``NVML_ERROR_NOT_FOUND`` when there are none, as drivers answer;
- like the real library, every call before ``nvmlInit`` fails with
  ``NVML_ERROR_UNINITIALIZED``, init is reference-counted, and a bad index or a
  foreign handle fails with ``NVML_ERROR_INVALID_ARGUMENT``.

The stand-in's only public names are pynvml's (tests/test_gpu.py checks every one
of them, and each function's parameters, against the installed pynvml); it is
configured through :class:`Device` and read back through :func:`init_count`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pynvml

NOT_AVAILABLE = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
"""What the driver puts in ``usedGpuMemory`` when it cannot say (WDDM on Windows)."""


@dataclass
class Device:
    """One GPU as the stand-in reports it, in NVML's own units."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    util_gpu: int = 0  # percent
    util_mem: int = 0  # percent
    mem_total: int = 80 * 1024**3  # bytes
    mem_used: int = 0  # bytes
    temp_c: int = 30
    power_mw: int = 70_000  # milliwatts
    power_limit_mw: int = 700_000  # milliwatts
    # (pid, used bytes or None for "not available")
    compute_procs: list[tuple[int, int | None]] = field(default_factory=list)
    graphics_procs: list[tuple[int, int | None]] = field(default_factory=list)
    # utilisation samples: (pid, SM percent, memory percent, age in seconds at the call)
    proc_util: list[tuple[int, int, int, float]] = field(default_factory=list)
    # function name -> NVML error code it returns on this device (e.g. NOT_SUPPORTED)
    nvml_errors: dict[str, int] = field(default_factory=dict)
    # function name -> any other exception it raises on this device (a broken binding)
    raises: dict[str, BaseException] = field(default_factory=dict)


class _Handle:
    """An opaque device handle, as ``c_nvmlDevice_t`` is to the caller."""

    __slots__ = ("_index", "_owner")

    def __init__(self, owner: NvmlStandIn, index: int) -> None:
        self._owner = owner
        self._index = index

    def __repr__(self) -> str:
        return f"<stand-in nvmlDevice {self._index}>"


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


def _procs(entries: Iterable[tuple[int, int | None]]) -> list[Any]:
    out = []
    for pid, used in entries:
        info = pynvml.c_nvmlProcessInfo_t(
            pid=pid,
            usedGpuMemory=NOT_AVAILABLE if used is None else used,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )
        # What pynvml itself does with each entry of the driver's array.
        obj = pynvml.nvmlStructToFriendlyObject(info)
        if obj.usedGpuMemory == NOT_AVAILABLE:
            obj.usedGpuMemory = None
        out.append(obj)
    return out


class NvmlStandIn:
    """A pynvml-like object over a list of :class:`Device`."""

    # The real module's error base class and the constants the collector passes in.
    NVMLError = pynvml.NVMLError
    NVMLLibraryMismatchError = pynvml.NVMLLibraryMismatchError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_UNINITIALIZED = pynvml.NVML_ERROR_UNINITIALIZED
    NVML_ERROR_INVALID_ARGUMENT = pynvml.NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED

    def __init__(self, devices: Iterable[Device] = (), *, init_error: int | None = None) -> None:
        """``init_error``: the NVML error code ``nvmlInit`` fails with (no driver, ...)."""
        self._devices = list(devices)
        self._init_error = init_error
        self._refcount = 0

    # ------------------------------------------------------------- lifecycle

    def nvmlInit(self) -> None:
        if self._init_error is not None:
            raise _error(self._init_error)
        self._refcount += 1

    def nvmlShutdown(self) -> None:
        self._ready()
        self._refcount -= 1

    # --------------------------------------------------------------- devices

    def nvmlDeviceGetCount(self) -> int:
        self._ready()
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._ready()
        if not isinstance(index, int) or not 0 <= index < len(self._devices):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._check(self._devices[index], "nvmlDeviceGetHandleByIndex")
        return _Handle(self, index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._dev(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._dev(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        d = self._dev(handle, "nvmlDeviceGetUtilizationRates")
        return pynvml.c_nvmlUtilization_t(gpu=d.util_gpu, memory=d.util_mem)

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> Any:
        d = self._dev(handle, "nvmlDeviceGetMemoryInfo")
        free = d.mem_total - d.mem_used
        if not version:
            return pynvml.c_nvmlMemory_t(total=d.mem_total, free=free, used=d.mem_used)
        return pynvml.c_nvmlMemory_v2_t(
            version=version, total=d.mem_total, reserved=0, free=free, used=d.mem_used
        )

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        d = self._dev(handle, "nvmlDeviceGetTemperature")
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return d.temp_c

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._dev(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._dev(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[Any]:
        return _procs(self._dev(handle, "nvmlDeviceGetComputeRunningProcesses").compute_procs)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[Any]:
        return _procs(self._dev(handle, "nvmlDeviceGetGraphicsRunningProcesses").graphics_procs)

    def nvmlDeviceGetProcessUtilization(self, handle: _Handle, timeStamp: int) -> list[Any]:
        d = self._dev(handle, "nvmlDeviceGetProcessUtilization")
        now = int(time.time() * 1_000_000)
        out = []
        for pid, sm, mem, age in d.proc_util:
            ts = now - int(age * 1_000_000)
            if ts > timeStamp:
                out.append(pynvml.c_nvmlProcessUtilizationSample_t(
                    pid=pid, timeStamp=ts, smUtil=sm, memUtil=mem, encUtil=0, decUtil=0
                ))  # fmt: skip
        if not out:
            # The driver's answer when no sample is newer than timeStamp.
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return out

    # -------------------------------------------------------------- internals

    def _ready(self) -> None:
        if self._refcount <= 0:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)

    def _dev(self, handle: object, fn: str) -> Device:
        self._ready()
        if not isinstance(handle, _Handle) or handle._owner is not self:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        d = self._devices[handle._index]
        self._check(d, fn)
        return d

    @staticmethod
    def _check(d: Device, fn: str) -> None:
        if fn in d.raises:
            raise d.raises[fn]
        if fn in d.nvml_errors:
            raise _error(d.nvml_errors[fn])


def init_count(nv: NvmlStandIn) -> int:
    """How many ``nvmlInit`` calls are not yet matched by ``nvmlShutdown``."""
    return nv._refcount


def two_gpus(
    procs: Mapping[int, tuple[int, int | None]] | None = None,
) -> list[Device]:
    """Two distinct devices; ``procs`` maps a device index to its one compute process."""
    procs = procs or {}
    devices = [
        Device(
            name="NVIDIA H100 80GB HBM3",
            uuid="GPU-6f2b0c1e-8d1a-4f6a-9c3e-000000000000",
            util_gpu=37,
            util_mem=12,
            mem_total=85_520_809_984,
            mem_used=20_000_000_000,
            temp_c=41,
            power_mw=123_456,
            power_limit_mw=700_000,
        ),
        Device(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-0c9e2a4d-51b7-4c33-8e10-111111111111",
            util_gpu=100,
            util_mem=80,
            mem_total=42_949_672_960,
            mem_used=1_073_741_824,
            temp_c=67,
            power_mw=399_950,
            power_limit_mw=400_000,
        ),
    ]
    for i, p in procs.items():
        devices[i].compute_procs.append(p)
    return devices
