"""One host sample from all collectors, with the process table and the containers on their
own, slower clocks.

Issue 16's figures (network and disk rates, CPU temperatures, per-process GPU shares) are
collected unless ``LLMAOS_AGENT_IO=off`` is set in the daemon's environment
(:data:`llmaos_agent.collect.io.OFF_ENV`), which is how bench/agent_overhead.py measures
what they cost."""

from __future__ import annotations

import sys
import time
from typing import Any

from llmaos_agent.collect.containers import ContainerCollector, ContainerInfo, default_socket
from llmaos_agent.collect.cpu import CpuCollector, load_average
from llmaos_agent.collect.gpu import GpuCollector, gpu_mem_by_pid
from llmaos_agent.collect.host import capabilities, docker_status, host_facts
from llmaos_agent.collect.io import IoCollector, enabled
from llmaos_agent.collect.memory import memory
from llmaos_agent.collect.processes import ProcessCollector
from llmaos_agent.collect.self_cost import EVERY, SelfCost
from llmaos_agent.protocol import (
    MAX_PORTS,
    Capabilities,
    Container,
    DiskRate,
    HostFacts,
    NetRate,
    Proc,
    Sample,
    replace,
)

_STATES = frozenset({"created", "running", "paused", "restarting", "removing", "exited", "dead"})


class Sampler:
    def __init__(
        self, *, nvml: Any | None = None, docker_socket: str | None = None, io: bool | None = None
    ) -> None:
        """``io``: collect issue 16's figures; None: unless the environment says off."""
        self.cpu = CpuCollector()
        io = enabled() if io is None else io
        self.io = IoCollector() if io else None
        self.gpu = GpuCollector(nvml, proc_util=io)
        self.procs = ProcessCollector()
        self.self_cost = SelfCost()
        self.seq = 0
        self.docker_socket = docker_socket or default_socket()
        # Made only once an engine answers: a host without Docker pays nothing for it.
        self.containers: ContainerCollector | None = None
        self.docker_reason: str | None = "not checked yet"

    def facts(self) -> HostFacts:
        return host_facts()

    def capabilities(self, *, read_only: bool) -> Capabilities:
        caps = capabilities(
            affinity=self.procs.has_affinity,
            cpu_num=self.procs.has_cpu_num,
            nvml_reason=self.gpu.reason,
            read_only=read_only,
        )
        if self.docker_reason == "not checked yet":
            return caps  # the plain /_ping probe's word until the collector has asked
        return replace(caps, docker=self.docker_reason is None, docker_reason=self.docker_reason)

    def sample(self) -> Sample:
        """Cores, memory, load, GPUs, network, disks and temperatures, and every
        :data:`~llmaos_agent.collect.self_cost.EVERY` samples the agent's own cost; no
        processes (see :meth:`processes`)."""
        self.seq += 1
        net: list[NetRate] = []
        disk: list[DiskRate] = []
        temps: list[int] = []
        names: list[str] = []
        if self.io is not None:
            (net, disk), (temps, names) = self.io.rates(), self.io.temps()
        return Sample(
            t=round(time.time(), 3),
            seq=self.seq,
            cpu=self.cpu.per_core(),
            mem=memory(),
            load=load_average(),
            gpus=self.gpu.sample(),
            net=net,
            disk=disk,
            temps=temps,
            temp_names=names,
            agent=self.self_cost.read() if self.seq % EVERY == 0 else None,
        )

    def processes(self, sample: Sample) -> dict[int, Proc]:
        return self.procs.snapshot(gpu_mem_by_pid(sample.gpus))

    # ---------------------------------------------------------- containers

    def refresh_containers(self) -> bool:
        """List the engine's containers (one engine call; blocking: run it off the loop).

        The collector is made the first time an engine answers; until then, and whenever
        it stops answering, :attr:`docker_reason` says why there are no containers."""
        if self.containers is None:
            up, why = docker_status(self.docker_socket)
            if not up and sys.platform != "win32":
                self.docker_reason = why
                return False
            # The stdlib client on Unix sockets: the SDK would cost the agent ~15 MB.
            self.containers = ContainerCollector(
                self.docker_socket, use_sdk=None if sys.platform == "win32" else False
            )
        ok = self.containers.refresh()
        self.docker_reason = self.containers.reason
        if ok:
            # Image names a list lacks are looked up here, off the loop, not in snapshot().
            self.containers.snapshot(None)
        return ok

    def containers_running(self) -> bool:
        """Whether a listed container has processes whose load comes from the table."""
        c = self.containers
        return c is not None and self.docker_reason is None and c.any_running

    def container_list(self, table: dict[int, Proc] | None) -> list[Container]:
        """The last listed containers, with their load from ``table`` (the process pass)."""
        if self.containers is None or self.docker_reason is not None:
            return []
        return [to_wire(c) for c in self.containers.snapshot(table)]

    def close(self) -> None:
        self.procs.close()
        self.gpu.close()
        if self.containers is not None:
            self.containers.close()


def to_wire(c: ContainerInfo) -> Container:
    """A collector's container as the protocol sends it, cut to the protocol's bounds.

    ``uptime`` travels as ``started`` (whole seconds), which stays the same from one pass
    to the next, so a running container is not re-sent for its uptime alone."""
    started = round(time.time() - c.uptime) if c.uptime is not None else None
    health = c.health if c.health in ("healthy", "unhealthy", "starting") else None
    return Container(
        id=c.id[:256],
        name=c.name[:256],
        image=c.image[:256],
        image_id=c.image_id[:256],
        state=c.state if c.state in _STATES else "?",  # type: ignore[arg-type]
        status=c.status[:256],
        created=c.created,
        health=health,  # type: ignore[arg-type]
        ports=[p[:256] for p in c.ports[:MAX_PORTS]],
        volumes=[v[:4096] for v in c.volumes[:MAX_PORTS]],
        gpus=max(-1, min(64, c.gpus)),
        project=c.project[:256] if c.project else None,
        service=c.service[:256] if c.service else None,
        orchestrator=c.orchestrator,
        cpu=max(0.0, c.cpu),
        mem=max(0, c.mem),
        pids=c.pids,
        started=float(started) if started is not None else None,
    )
