"""One host sample from all collectors, with the process table on its own, slower clock."""

from __future__ import annotations

import time
from typing import Any

from llmaos_agent.collect.cpu import CpuCollector, load_average
from llmaos_agent.collect.gpu import GpuCollector, gpu_mem_by_pid
from llmaos_agent.collect.host import capabilities, host_facts
from llmaos_agent.collect.memory import memory
from llmaos_agent.collect.processes import ProcessCollector
from llmaos_agent.protocol import Capabilities, HostFacts, Proc, Sample


class Sampler:
    def __init__(self, *, nvml: Any | None = None) -> None:
        self.cpu = CpuCollector()
        self.gpu = GpuCollector(nvml)
        self.procs = ProcessCollector()
        self.seq = 0

    def facts(self) -> HostFacts:
        return host_facts()

    def capabilities(self, *, read_only: bool) -> Capabilities:
        return capabilities(
            affinity=self.procs.has_affinity,
            cpu_num=self.procs.has_cpu_num,
            nvml_reason=self.gpu.reason,
            read_only=read_only,
        )

    def sample(self) -> Sample:
        """Cores, memory, load and GPUs; no processes (see :meth:`processes`)."""
        self.seq += 1
        return Sample(
            t=round(time.time(), 3),
            seq=self.seq,
            cpu=self.cpu.per_core(),
            mem=memory(),
            load=load_average(),
            gpus=self.gpu.sample(),
        )

    def processes(self, sample: Sample) -> dict[int, Proc]:
        return self.procs.snapshot(gpu_mem_by_pid(sample.gpus))

    def close(self) -> None:
        self.gpu.close()
