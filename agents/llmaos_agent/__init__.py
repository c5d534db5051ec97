"""llmaos-agent: the host agent of llmaos-tui.

Samples cores, memory, GPUs and processes on one host and serves them over a
local endpoint; the console reaches it over SSH through ``llmaos-agent attach``.
On Linux the collectors and process control need the standard library alone (/proc
and os.*, :mod:`llmaos_agent.system`), psutil installed or not; on macOS and Windows
they use psutil, which the console pushes as a wheel where the host lacks it. NVML and
Docker are used when present.
"""

__version__ = "0.1.0"
