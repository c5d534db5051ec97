"""Make recordings of big hosts (8 to 256 cores, 0 to 16 GPUs) from the recorded stream.

tests/data/recorded_stream.ndjson is a real agent's stream from a 2-core machine with two
stand-in GPUs. Each recording here is that stream with the host widened: the hello says
N cores, every sample has N per-core loads (a fixed pattern around the recorded ones, so
the bars differ from core to core and from sample to sample), the processes' affinity
spans the N cores, and the two recorded GPUs are repeated to make G (none: NVML reported
missing, as on a host without the driver; 16 as on a big box or one split by MIG). The
hello speaks this console's protocol (the sample shapes it reads are the recorded ones).
Nothing else changes, so the process table is the real one. The files are committed;
re-run after the recorded stream changes:

    python tests/data/make_big_recordings.py && pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llmaos_agent.protocol import PROTOCOL_VERSION

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "recorded_stream.ndjson"
OUT = HERE / "big"
CORES = (8, 64, 96, 256)
GPUS = (0, 2, 8, 16)
NO_NVML = "no NVIDIA driver (libnvidia-ml.so.1 not found)"


def name(cores: int, gpus: int) -> str:
    return f"host-{cores}c-{gpus}g"


def path(cores: int, gpus: int) -> Path:
    return OUT / f"{name(cores, gpus)}.ndjson"


def _loads(recorded: list[float], seq: int, cores: int) -> list[float]:
    # A spread a user can tell apart: idle, busy and pinned cores, moving with seq.
    out = []
    for i in range(cores):
        base = recorded[i % len(recorded)] if recorded else 0.0
        wave = ((i * 37 + seq * 11) % 100) / 100
        load = 1.0 if i % 13 == 5 else 0.3 * base + 0.7 * wave * wave
        out.append(round(min(1.0, max(0.0, load)), 3))
    return out


def _gpus(recorded: list[dict[str, Any]], gpus: int) -> list[dict[str, Any]]:
    if not recorded:
        return []
    out = []
    for i in range(gpus):
        g = dict(recorded[i % len(recorded)])
        g["index"] = i
        g["uuid"] = f"GPU-{i:08x}-0000-4000-8000-{gpus:012x}"
        out.append(g)
    return out


def _sample(s: dict[str, Any], cores: int, gpus: int) -> dict[str, Any]:
    s = dict(s)
    s["cpu"] = _loads(s["cpu"], s["seq"], cores)
    s["gpus"] = _gpus(s.get("gpus", []), gpus)
    procs = s.get("procs")
    if procs is not None:
        procs = dict(procs)
        procs["upsert"] = [_proc(p, cores, gpus) for p in procs["upsert"]]
        s["procs"] = procs
    return s


def _proc(p: list[Any], cores: int, gpus: int) -> list[Any]:
    p = list(p)
    if p[7] is not None:
        p[7] = f"0-{cores - 1}"  # the whole (bigger) host, as the recorded "0-1" was
    if p[8] is not None:
        p[8] = p[0] % cores
    if not gpus:
        p[11] = None
    return p


def convert(lines: list[str], cores: int, gpus: int) -> str:
    out = []
    for line in lines:
        msg = json.loads(line)
        method, params = msg.get("method"), msg.get("params")
        if method == "hello":
            host = dict(params["host"], cores=cores, physical_cores=max(1, cores // 2))
            caps = dict(params["caps"])
            if not gpus:
                caps.update(nvml=False, nvml_reason=NO_NVML)
            msg["params"] = dict(params, protocol=PROTOCOL_VERSION, host=host, caps=caps)
        elif method == "history":
            samples = [_sample(s, cores, gpus) for s in params["samples"]]
            msg["params"] = dict(params, samples=samples)
        elif method == "sample":
            msg["params"] = _sample(params, cores, gpus)
        out.append(json.dumps(msg, separators=(",", ":")))
    return "\n".join(out) + "\n"


def main() -> int:
    lines = [ln for ln in SOURCE.read_text().splitlines() if ln.strip()]
    OUT.mkdir(exist_ok=True)
    for cores in CORES:
        for gpus in GPUS:
            text = convert(lines, cores, gpus)
            path(cores, gpus).write_text(text)
            print(f"{path(cores, gpus).relative_to(HERE)}: {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
