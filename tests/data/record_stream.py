"""Record what a real agent daemon sends a console, for the snapshot tests and demos.

Runs the real daemon (real psutil, this machine's processes) with the NVML
stand-in's two GPUs whose load moves over time, attaches as a client over the
real socket and writes every line it receives to ``recorded_stream.ndjson``.
Re-run it only when the protocol changes, then update the snapshots:

    python tests/data/record_stream.py && pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from llmaos_agent.daemon import Daemon  # noqa: E402
from llmaos_agent.paths import AgentPaths  # noqa: E402
from tests.nvml_standin import NvmlStandIn, two_gpus  # noqa: E402

INTERVAL = 0.25
WARM_S = 3.0
SAMPLES = 12


async def record(out: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="llma-rec-", dir="/tmp"))
    paths = AgentPaths(runtime=home / "run", state=home / "state")
    devices = two_gpus({0: (os.getpid(), 18 * 1024**3), 1: (os.getppid(), 2 * 1024**3)})
    daemon = Daemon(paths, interval=INTERVAL, proc_interval=2 * INTERVAL, nvml=NvmlStandIn(devices))
    task = asyncio.ensure_future(daemon.run())

    async def wobble() -> None:
        step = 0
        while True:
            step += 1
            devices[0].util_gpu = int(60 + 35 * math.sin(step / 3))
            devices[1].util_gpu = int(20 + 15 * math.cos(step / 4))
            await asyncio.sleep(INTERVAL)

    wob = asyncio.ensure_future(wobble())
    try:
        await asyncio.sleep(WARM_S)
        reader, writer = await asyncio.open_unix_connection(str(paths.socket), limit=1 << 21)
        lines: list[bytes] = []
        samples = 0
        while samples < SAMPLES:
            line = await asyncio.wait_for(reader.readline(), 10)
            lines.append(line)
            samples += b'"method":"sample"' in line
        writer.close()
        out.write_bytes(b"".join(lines))
        print(f"wrote {len(lines)} lines, {sum(map(len, lines))} bytes to {out}")
    finally:
        wob.cancel()
        daemon.stop()
        await asyncio.wait_for(task, 10)


if __name__ == "__main__":
    asyncio.run(record(HERE / "recorded_stream.ndjson"))
