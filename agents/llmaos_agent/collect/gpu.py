"""NVIDIA GPUs through NVML, when the library is present.

NVML is loaded only if ``pynvml`` (from nvidia-ml-py) is installed, the NVML
library is there (outside Windows it is looked for first, so a host without an
NVIDIA driver never loads pynvml: 1.6 MB) and ``nvmlInit`` succeeds; otherwise the
collector reports why and samples nothing. A field the
device does not support becomes None ("n/a"); an error on one device marks that
device, never the sample.

Each GPU process also gets its share of the SM time and of the memory bandwidth, from NVML's
process utilisation samples (``nvmlDeviceGetProcessUtilization``, what nvitop shows): the
latest sample per pid of the last :data:`PROC_UTIL_WINDOW_S` seconds, 0 for a process with
none (NVML keeps samples only of processes that used the GPU: ``NVMLError_NotFound`` when
none did), None on a device that does not keep them (``NVMLError_NotSupported``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from llmaos_agent.protocol import GpuProc, GpuSample

T = TypeVar("T")

PROC_UTIL_WINDOW_S = 2.0
"""How far back a process's utilisation sample may be and still count: NVML samples every
fraction of a second, so a process with none this recent has been idle."""


NOT_INSTALLED = "nvidia-ml-py is not installed (pip install 'llmaos-tui[gpu]')"
NVML_LIBRARY = "libnvidia-ml.so.1"
"""What pynvml loads outside Windows (``CDLL("libnvidia-ml.so.1")``), and so do we first."""


def load_nvml() -> ModuleType | str:
    """The pynvml module, or the reason it cannot be had."""
    try:
        installed = importlib.util.find_spec("pynvml") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return NOT_INSTALLED
    if sys.platform != "win32":
        missing = nvml_library_missing()
        if missing is not None:
            # Worded as pynvml's nvmlInit would say it (NVMLError_LibraryNotFound).
            return f"NVML unavailable: NVML Shared Library Not Found ({missing})"
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return NOT_INSTALLED


def nvml_library_missing(name: str = NVML_LIBRARY) -> str | None:
    """None when the NVML library loads, else why not. Loading it is what pynvml does
    next anyway (the same handle, so it costs nothing more); failing costs nothing.

    On Linux a library that is in no place the loader looks (its cache, LD_LIBRARY_PATH,
    the default directories) is missing without loading ctypes (0.4 MB the daemon would
    keep for nothing on a host without a GPU)."""
    if sys.platform.startswith("linux") and not _may_load(name):
        return f"{name}: cannot open shared object file: No such file or directory"
    import ctypes  # noqa: PLC0415 - see above

    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return str(exc) or name
    return None


_LD_DEFAULT = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")


def _may_load(name: str) -> bool:
    """Whether the dynamic loader could find ``name``: in its cache, or as a file in
    LD_LIBRARY_PATH or the default directories; True when unsure (a path, no cache)."""
    if "/" in name:
        return True
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    if any(os.path.exists(os.path.join(d, name)) for d in (*dirs, *_LD_DEFAULT)):
        return True
    try:
        with open("/etc/ld.so.cache", "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return True


class GpuCollector:
    def __init__(self, nvml: Any | None = None, *, proc_util: bool = True) -> None:
        """``nvml`` is a pynvml-like module; by default the real one is loaded.
        ``proc_util``: ask for per-process utilisation (see the module's docstring)."""
        self.available = False
        self.proc_util = proc_util
        self._no_proc_util: set[int] = set()  # devices that said NotSupported
        self.reason: str | None = None
        self._handles: list[Any] = []
        self._static: list[tuple[str, str]] = []
        mod: Any = nvml if nvml is not None else load_nvml()
        if isinstance(mod, str):
            self.reason = mod
            return
        self._nvml = mod
        mismatch = getattr(mod, "NVMLLibraryMismatchError", None)
        self._field_errors: tuple[type[BaseException], ...] = (
            (mod.NVMLError, mismatch) if isinstance(mismatch, type) else (mod.NVMLError,)
        )
        try:
            mod.nvmlInit()
        except mod.NVMLError as exc:
            self.reason = f"NVML unavailable: {exc}"
            return
        try:
            count = mod.nvmlDeviceGetCount()
            for i in range(count):
                h = mod.nvmlDeviceGetHandleByIndex(i)
                self._handles.append(h)
                self._static.append(
                    (
                        _text(self._field(mod.nvmlDeviceGetName, h) or f"GPU {i}"),
                        _text(self._field(mod.nvmlDeviceGetUUID, h) or f"GPU-{i}"),
                    )
                )
        except mod.NVMLError as exc:
            self.reason = f"NVML device enumeration failed: {exc}"
            self._shutdown()
            return
        self.available = True

    @property
    def count(self) -> int:
        return len(self._handles)

    def sample(self) -> list[GpuSample]:
        if not self.available:
            return []
        return [self._device(i, h) for i, h in enumerate(self._handles)]

    def close(self) -> None:
        if self.available:
            self.available = False
            self._shutdown()

    def _shutdown(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    def _field(self, fn: Callable[..., T], *args: Any) -> T | None:
        """One NVML query; NotSupported (and any per-field NVML error) is None.

        So is pynvml's ``NVMLLibraryMismatchError`` (not an ``NVMLError``): an older
        driver that lacks one versioned function costs that field, not the device.
        """
        try:
            return fn(*args)
        except self._field_errors:
            return None

    def _device(self, index: int, h: Any) -> GpuSample:
        nv = self._nvml
        name, uuid = self._static[index]
        try:
            util = self._field(nv.nvmlDeviceGetUtilizationRates, h)
            mem = self._field(nv.nvmlDeviceGetMemoryInfo, h)
            temp = self._field(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
            power = self._field(nv.nvmlDeviceGetPowerUsage, h)
            limit = self._field(nv.nvmlDeviceGetEnforcedPowerLimit, h)
            procs: dict[int, GpuProc] = {}
            for getter in (
                nv.nvmlDeviceGetComputeRunningProcesses,
                nv.nvmlDeviceGetGraphicsRunningProcesses,
            ):
                for p in self._field(getter, h) or []:
                    used = getattr(p, "usedGpuMemory", None)
                    procs[int(p.pid)] = GpuProc(
                        pid=int(p.pid), used_mem=int(used) if used is not None else None
                    )
            if procs and self.proc_util:
                procs = self._with_util(index, h, procs)
            return GpuSample(
                index=index,
                uuid=uuid,
                name=name,
                util=min(max(util.gpu / 100.0, 0.0), 1.0) if util is not None else None,
                mem_used=int(mem.used) if mem is not None else None,
                mem_total=int(mem.total) if mem is not None else None,
                temp_c=int(temp) if temp is not None else None,
                power_w=round(power / 1000.0, 1) if power is not None else None,
                power_limit_w=round(limit / 1000.0, 1) if limit is not None else None,
                procs=sorted(procs.values(), key=lambda p: p.pid),
            )
        except Exception as exc:  # noqa: BLE001 - a broken device marks itself, not the sample
            return GpuSample(
                index=index, uuid=uuid, name=name, error=f"{type(exc).__name__}: {exc}"
            )

    def _with_util(self, index: int, h: Any, procs: dict[int, GpuProc]) -> dict[int, GpuProc]:
        """``procs`` with their SM and memory shares; as they are where the device keeps no
        samples or NVML fails to give them."""
        shares = self._proc_shares(index, h)
        if shares is None:
            return procs
        out: dict[int, GpuProc] = {}
        for pid, p in procs.items():
            sm, mem = shares.get(pid, (0.0, 0.0))
            out[pid] = GpuProc(pid=p.pid, used_mem=p.used_mem, sm=sm, mem=mem)
        return out

    def _proc_shares(self, index: int, h: Any) -> dict[int, tuple[float, float]] | None:
        """pid -> (SM share, memory share) of its latest sample in the window; None where the
        device does not say."""
        if index in self._no_proc_util:
            return None
        nv = self._nvml
        since = max(int((time.time() - PROC_UTIL_WINDOW_S) * 1_000_000), 0)
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(h, since)
        except nv.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_FUNCTION_NOT_FOUND):
                self._no_proc_util.add(index)  # it will not start to: ask no more
                return None
            if code in (nv.NVML_ERROR_NOT_FOUND, 0):
                # No process used the GPU in the window (pynvml raises NVMLError(SUCCESS)
                # when the driver answers "none" without the NotFound code).
                return {}
            return None
        except self._field_errors:  # the function is missing from an older driver
            self._no_proc_util.add(index)
            return None
        latest: dict[int, tuple[int, float, float]] = {}
        for s in samples:
            pid, ts = int(s.pid), int(s.timeStamp)
            if pid not in latest or ts >= latest[pid][0]:
                latest[pid] = (ts, _share(s.smUtil), _share(s.memUtil))
        return {pid: (sm, mem) for pid, (_, sm, mem) in latest.items()}


def _share(percent: int) -> float:
    """NVML's percent as a share in [0, 1] (samples above 100 are the driver's noise)."""
    return round(min(max(int(percent), 0), 100) / 100.0, 2)


def _text(v: str | bytes) -> str:
    # nvidia-ml-py returned bytes before 11.515; newer ones return str.
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def gpu_mem_by_pid(gpus: list[GpuSample]) -> dict[int, int]:
    """GPU memory per pid, summed over devices."""
    out: dict[int, int] = {}
    for g in gpus:
        for p in g.procs:
            if p.used_mem is not None:
                out[p.pid] = out.get(p.pid, 0) + p.used_mem
    return out
