"""``proc.detail``: one process as the OS layer reads it (:meth:`llmaos_agent.system.HostOS.
detail`), with its GPU use from the daemon's last sample, cut to the wire's bounds.

Everything here is the process's own text (its argv, cwd, cgroup path, any user may set
them): bytes that are not UTF-8 become U+FFFD, as in the process table, so no process can
stop the answer's encoding; the console cleans it before drawing like all host text.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmaos_agent.collect.containers import container_id_of
from llmaos_agent.collect.processes import cpulist
from llmaos_agent.protocol import (
    MAX_CMDLINE,
    GpuSample,
    ProcDetail,
    ProcGpu,
    Unread,
)
from llmaos_agent.system import ProcInfo

__all__ = ["gpu_use", "to_wire"]


def gpu_use(pid: int, gpus: Sequence[GpuSample]) -> list[ProcGpu]:
    """``pid``'s rows in a sample's GPUs: the memory and shares it had there."""
    return [
        ProcGpu(index=g.index, uuid=g.uuid, used_mem=gp.used_mem, sm=gp.sm, mem=gp.mem)
        for g in gpus
        for gp in g.procs
        if gp.pid == pid
    ]


def to_wire(info: ProcInfo, gpus: Sequence[GpuSample]) -> ProcDetail:
    """``info`` as the protocol sends it."""
    argv = [_utf8(a) for a in info.argv] if info.argv is not None else []
    if len(argv) > MAX_CMDLINE:  # a command line of NULs alone
        argv, info.argv_cut = argv[:MAX_CMDLINE], True
    total = 0
    for i, a in enumerate(argv):  # mending keeps the length; cut again in case
        if total + len(a) > MAX_CMDLINE:
            argv = [*argv[:i], a[: max(0, MAX_CMDLINE - total)]]
            info.argv_cut = True
            break
        total += len(a)
    text = _utf8(info.cgroup) if info.cgroup is not None else None
    cgroup = text.split("\n", 1)[0][:4096] if text is not None else None
    affinity = cpulist(info.affinity) if info.affinity else None
    return ProcDetail(
        pid=info.pid,
        ppid=info.ppid,
        name=_utf8(info.name)[:256],
        user=_utf8(info.user)[:256] if info.user is not None else None,
        state=info.state[:8],
        create_time=info.create_time,
        argv=argv,
        argv_cut=info.argv_cut,
        cwd=_utf8(info.cwd)[:4096] if info.cwd is not None else None,
        threads=info.threads,
        open_files=info.open_files,
        nice=info.nice,
        affinity=affinity,
        cgroup=cgroup,
        # Any line may name it (cgroup v1 has one per hierarchy; the first is often not it).
        container=container_id_of(text) if text else None,
        rss=info.rss,
        gpus=gpu_use(info.pid, gpus),
        unread=[Unread(field=k, reason=_utf8(v)[:4096]) for k, v in info.unread.items()][:32],
    )


def _utf8(text: str) -> str:
    """Lone surrogates (bytes that did not decode) as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text
