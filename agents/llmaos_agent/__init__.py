"""llmaos-agent: the host agent of llmaos-tui.

Samples cores, memory, GPUs and processes on one host and serves them over a
local endpoint; the console reaches it over SSH through ``llmaos-agent attach``.
Depends on the standard library, psutil and msgspec only; NVML and Docker are
used when present.
"""

__version__ = "0.1.0"
