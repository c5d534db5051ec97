"""Container move: the console's journaled move against ``docker save | docker load`` by hand.

    python bench/container_move.py                    # 200 MB image, 50 MB volume, 3 runs
    python bench/container_move.py --image-mb 200 --volume-mb 50 --runs 5 --json out.json

Two testbed hosts (network namespaces, each with its own sshd and dockerd; needs root,
docker.io, openssh-server, busybox-static). On host1: an image of busybox plus IMAGE_MB of
random bytes (incompressible), and a container running busybox httpd (under docker-init)
with a named volume holding VOLUME_MB of random bytes and a published port. Each run, in
alternating order:

- **move**: ``MoveEngine.move`` from host1 to host2, the engines reached through SSH
  forwards of their sockets (asyncssh), the target lacking the image; each step's time as
  the engine reports it. Verification waits ``--settle`` seconds by design: it is shown
  on its own line and the ratio is given with and without it.
- **baseline**: what an operator would type, through OpenSSH:
  ``ssh host1 docker save IMG | ssh host2 docker load``, then ``ssh host2 docker create``
  and ``docker start`` with the same port and volume (the issue's baseline); and the fuller
  one that also stops the source and copies the volume
  (``ssh host1 docker run --rm -v VOL:/v IMG tar c -C /v . | ssh host2 docker run --rm -i
  -v VOL:/v IMG tar x -C /v``), which is what the move does too.

- **cli** and **tui**: the same move as an operator makes it, with the defaults they get
  (verify settles 3 s): ``llmaos-tui move NAME --from host1 --to host2 --json`` in a
  subprocess with a HOME whose hosts file names the two hosts (wall time of the command,
  start-up included), and the console (``LlmaosApp.run_test``, SSH links to both agents)
  with its move dialog opened on the container, timed from Enter to the dialog's outcome
  (the pre-check, on the links' forwards, is its own figure; the move's own SSH
  connections, opened after Enter, are in the time). Both go through ``ops.moves.Moves``
  and stream over connections of the move's own: one path, so one speed.

Between runs host2 is emptied and host1's container and volume are made again (not timed).
Figures: the median of the runs, each run's in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmaos_tui.fleet.inventory import HostSpec  # noqa: E402
from llmaos_tui.fleet.ssh import SshOptions  # noqa: E402
from llmaos_tui.ops.audit import AuditLog  # noqa: E402
from llmaos_tui.ops.container_move import MoveEngine, Progress  # noqa: E402
from llmaos_tui.ops.docker_forward import Engine, local_engine, open_engine  # noqa: E402
from llmaos_tui.ops.journal import MoveJournal  # noqa: E402
from tests import images  # noqa: E402
from tests.testbed import Testbed, TestHost, docker_available  # noqa: E402

IMAGE = "bench/app:1"
NAME = "benchapp"
VOLUME = "benchdata"
PORT = 18100


def _ssh(tb: Testbed, h: TestHost, *argv: str) -> list[str]:
    return ["ssh", "-F", str(tb.ssh_config), h.name, *argv]


def _check(cp: subprocess.CompletedProcess[bytes] | subprocess.CompletedProcess[str]) -> None:
    if cp.returncode != 0:
        err = cp.stderr.decode() if isinstance(cp.stderr, bytes) else cp.stderr
        raise SystemExit(f"{' '.join(map(str, cp.args))}: {err.strip()}")


def _pipe(left: list[str], right: list[str]) -> None:
    """``left | right``, both argv lists; raise on either failing."""
    a = subprocess.Popen(left, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        b = subprocess.run(right, stdin=a.stdout, capture_output=True, check=False, timeout=600)
    finally:
        if a.stdout is not None:
            a.stdout.close()
        a.wait()
    if a.returncode != 0:
        raise SystemExit(
            f"{' '.join(left)}: {a.stderr.read().decode().strip() if a.stderr else ''}"
        )
    _check(b)


def _clean(d: Any, keep: tuple[str, ...] = ()) -> None:
    for c in d.api.containers(all=True):
        d.api.remove_container(c["Id"], v=True, force=True)
    for v in d.api.volumes().get("Volumes") or []:
        d.api.remove_volume(v["Name"], force=True)
    for i in d.api.images():
        if not set(i.get("RepoTags") or []) & set(keep):
            d.api.remove_image(i["Id"], force=True)


def _make_source(d1: Any, volume_mb: int) -> None:
    d1.containers.run(
        IMAGE,
        ["httpd", "-f", "-p", "80", "-h", "/data"],
        name=NAME,
        detach=True,
        # A service answers SIGTERM; busybox httpd as PID 1 would not (the kernel drops
        # signals PID 1 has no handler for), and every stop would then measure the stop
        # timeout instead of the move. docker-init (`docker run --init`) forwards it.
        init=True,
        volumes={VOLUME: {"bind": "/data"}},
        ports={"80/tcp": PORT},
    )
    code, out = d1.containers.get(NAME).exec_run(
        ["dd", "if=/dev/urandom", "of=/data/blob.bin", "bs=1048576", f"count={volume_mb}"]
    )
    if code != 0:
        raise SystemExit(f"filling the volume failed: {out.decode()}")


def run_move(tb: Testbed, opts: SshOptions, tmp: Path, settle: float) -> dict[str, Any]:
    h1, h2 = tb.hosts
    spec = [HostSpec(name=h.name, host=h.addr, user="root", port=h.port) for h in (h1, h2)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:  # as `llmaos-tui move` opens them: both at once
        engines: list[Engine] = list(pool.map(lambda s: open_engine(s, opts), spec))
    connect = time.monotonic() - t0
    marks: dict[str, float] = {}

    def progress(p: Progress) -> None:
        if p.state in ("start", "skip"):
            marks.setdefault(p.step, time.monotonic())

    try:
        eng = MoveEngine(
            engines[0],
            engines[1],
            MoveJournal(tmp / "moves.sqlite"),
            AuditLog(tmp / "audit.jsonl"),
            settle=settle,
            stop_timeout=1,
        )
        t1 = time.monotonic()
        res = eng.move(NAME, progress=progress)
        total = time.monotonic() - t1
    finally:
        for e in engines:
            e.close()
    if res.outcome != "moved":
        raise SystemExit(f"the move did not complete: {res.message}")
    steps = {k: round(v, 3) for k, v in res.timings.items()}
    return {
        "connect_s": round(connect, 3),
        "total_s": round(total + connect, 3),
        "total_without_settle_s": round(total + connect - settle, 3),
        "steps_s": steps,
        "image_bytes": res.image_bytes,
        "volume_bytes": res.volume_bytes,
    }


def cli_home(tb: Testbed, tmp: Path) -> Path:
    """A HOME whose hosts file names the two hosts, as an operator's would."""
    home = tmp / "home"
    cfg = home / ".config" / "llmaos-tui"
    cfg.mkdir(parents=True, exist_ok=True)
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text(tb.known_hosts.read_text())
    (cfg / "hosts.toml").write_text(
        "".join(
            f'[hosts.{h.name}]\nhost = "{h.addr}"\nuser = "root"\nport = {h.port}\n'
            f'identity = "{tb.client_key}"\npython = "{sys.executable}"\n'
            for h in tb.hosts
        )
    )
    return home


def run_cli(tb: Testbed, home: Path) -> dict[str, Any]:
    h1, h2 = tb.hosts
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_STATE_HOME": str(home / ".state")}  # fmt: skip
    env.pop("SSH_AUTH_SOCK", None)
    argv = [sys.executable, "-m", "llmaos_tui", "move", NAME, "--from", h1.name, "--to",
            h2.name, "--json"]  # fmt: skip
    t = time.monotonic()
    cp = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=600)
    total = time.monotonic() - t
    _check(cp)
    res = json.loads(cp.stdout)
    if res["outcome"] != "moved":
        raise SystemExit(f"the cli move did not complete: {res['message']}")
    steps = {k: round(v, 3) for k, v in res["timings"].items()}
    return {"total_s": round(total, 3), "steps_sum_s": round(sum(steps.values()), 3),
            "steps_s": steps}  # fmt: skip


def run_tui(tb: Testbed, tmp: Path) -> dict[str, Any]:
    return asyncio.run(_tui_move(tb, tmp))


async def _tui_move(tb: Testbed, tmp: Path) -> dict[str, Any]:
    from llmaos_tui.app import LlmaosApp
    from llmaos_tui.fleet.ssh import SshLink
    from llmaos_tui.ops.move_model import MoveResult
    from llmaos_tui.screens.move import MoveScreen
    from tests.helpers import wait_for

    h1, h2 = tb.hosts
    options = SshOptions(known_hosts=tb.known_hosts, client_keys=[str(tb.client_key)],
                         config=[], use_agent=False, connect_timeout=5.0)  # fmt: skip
    links = [
        SshLink(
            HostSpec(name=h.name, host=h.addr, user="root", port=h.port, python=sys.executable),
            options=options,
        )
        for h in tb.hosts
    ]
    app = LlmaosApp(links, cursor_blink=False, audit=AuditLog(tmp / "audit-tui.jsonl"),
                    journal=MoveJournal(tmp / "moves-tui.sqlite"))  # fmt: skip
    results: list[MoveResult] = []
    move = app.moves.move

    async def kept(*a: Any, **kw: Any) -> MoveResult:
        res = await move(*a, **kw)
        results.append(res)
        return res

    app.moves.move = kept  # type: ignore[method-assign]
    async with app.run_test(size=(140, 45)) as pilot:
        src, dst = app.fleet.hosts[h1.name], app.fleet.hosts[h2.name]

        def listed() -> bool:
            return bool(dst.up and dst.docker and src.up and src.docker) and any(
                c.name == NAME for c in src.containers.values()
            )

        await wait_for(listed, 120, "both hosts up and the container listed")
        c = next(c for c in src.containers.values() if c.name == NAME)
        t0 = time.monotonic()
        screen = MoveScreen(app.fleet, h1.name, c)
        app.push_screen(screen)
        await wait_for(lambda: screen.plan_for == h2.name, 120, "the pre-check")
        if screen.refusals:
            raise SystemExit(f"the tui pre-check refused: {screen.refusals}")
        t1 = time.monotonic()
        await pilot.press("enter")
        await wait_for(lambda: screen.finished is not None, 600, "the move to end")
        t2 = time.monotonic()
    if screen.finished != "moved" or not results:
        raise SystemExit(f"the tui move did not complete: {screen.finished}")
    steps = {k: round(v, 3) for k, v in results[-1].timings.items()}
    return {"total_s": round(t2 - t1, 3), "precheck_s": round(t1 - t0, 3),
            "steps_sum_s": round(sum(steps.values()), 3), "steps_s": steps}  # fmt: skip


def run_baseline(tb: Testbed) -> dict[str, Any]:
    h1, h2 = tb.hosts
    out: dict[str, float] = {}
    t = time.monotonic()
    _pipe(_ssh(tb, h1, "docker", "save", IMAGE), _ssh(tb, h2, "docker", "load", "-q"))
    out["save_load_s"] = time.monotonic() - t
    t = time.monotonic()
    cp = subprocess.run(
        _ssh(tb, h2, "docker", "create", "--init", "--name", NAME, "-p", f"{PORT}:80", "-v",
             f"{VOLUME}:/data", IMAGE, "httpd", "-f", "-p", "80", "-h", "/data"),
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    _check(cp)
    _check(subprocess.run(_ssh(tb, h2, "docker", "start", NAME), capture_output=True,
                          text=True, check=False, timeout=300))  # fmt: skip
    out["create_start_s"] = time.monotonic() - t
    # The fuller baseline: stop the source and copy the volume as the move does.
    t = time.monotonic()
    _check(subprocess.run(_ssh(tb, h1, "docker", "stop", "-t", "1", NAME), capture_output=True,
                          text=True, check=False, timeout=300))  # fmt: skip
    out["stop_s"] = time.monotonic() - t
    t = time.monotonic()
    _pipe(
        _ssh(tb, h1, "docker", "run", "--rm", "-v", f"{VOLUME}:/v", IMAGE, "tar", "c", "-C",
             "/v", "."),
        _ssh(tb, h2, "docker", "run", "--rm", "-i", "-v", f"{VOLUME}:/v", IMAGE, "tar", "x",
             "-C", "/v"),
    )  # fmt: skip
    out["volume_copy_s"] = time.monotonic() - t
    res = {k: round(v, 3) for k, v in out.items()}
    res["total_s"] = round(out["save_load_s"] + out["create_start_s"], 3)
    res["total_full_s"] = round(sum(out.values()), 3)
    return res


RUNNERS = ("move", "baseline", "cli", "tui")


def run_all(
    args: argparse.Namespace, kinds: list[str], tmp: Path
) -> dict[str, list[dict[str, Any]]]:
    """Every run of every kind, on one testbed; each kind's rows."""
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with Testbed(n=2, docker=True) as tb:
        h1, h2 = tb.hosts
        d1 = local_engine(h1.name, h1.docker_socket).client
        d2 = local_engine(h2.name, h2.docker_socket).client
        t = time.monotonic()
        images.import_image(h1.docker_socket, IMAGE, pad_bytes=args.image_mb << 20)
        size = d1.api.inspect_image(IMAGE)["Size"]
        print(f"image {IMAGE}: {size / 1e6:.0f} MB, imported in {time.monotonic() - t:.1f} s")
        opts = SshOptions(known_hosts=tb.known_hosts, client_keys=[str(tb.client_key)],
                          config=[], use_agent=False, deploy=False)  # fmt: skip
        home = cli_home(tb, tmp)
        run = {
            "move": lambda: run_move(tb, opts, tmp, args.settle),
            "baseline": lambda: run_baseline(tb),
            "cli": lambda: run_cli(tb, home),
            "tui": lambda: run_tui(tb, tmp),
        }
        for i in range(args.runs):
            # Each run in another order (rotated), so no kind always comes first.
            for kind in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                _clean(d1, (IMAGE,))
                _clean(d2)
                _make_source(d1, args.volume_mb)
                rows[kind].append(run[kind]())
                print(f"run {i + 1} {kind + ':':9} {json.dumps(rows[kind][-1])}", flush=True)
        _clean(d1)
        _clean(d2)
        d1.close()
        d2.close()
    return rows


def _med(rows: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in rows)), 3)


def summarize(args: argparse.Namespace, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians of each kind's figures, and the ratios between kinds measured."""
    summary: dict[str, Any] = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "image_mb": args.image_mb,
        "volume_mb": args.volume_mb,
        "runs": args.runs,
        "settle_s": args.settle,
    }
    for kind, got in rows.items():
        summary[kind] = {k: _med(got, k) for k in got[0] if k != "steps_s"}
        summary[kind]["steps_s"] = {
            s: round(statistics.median(m["steps_s"].get(s, 0.0) for m in got), 3)
            for s in got[0]["steps_s"]
        } if "steps_s" in got[0] else {}  # fmt: skip
    if rows.get("cli") and rows.get("tui"):
        cli, tui = summary["cli"], summary["tui"]
        summary["tui_over_cli"] = round(tui["total_s"] / cli["total_s"], 2)
        summary["tui_over_cli_steps"] = round(tui["steps_sum_s"] / cli["steps_sum_s"], 2)
    if rows.get("move") and rows.get("baseline"):
        mv, base = summary["move"], summary["baseline"]
        summary["ratio"] = round(mv["total_s"] / base["total_s"], 2)
        summary["ratio_without_settle"] = round(mv["total_without_settle_s"] / base["total_s"], 2)
        summary["ratio_full"] = round(mv["total_s"] / base["total_full_s"], 2)
        summary["ratio_full_without_settle"] = round(
            mv["total_without_settle_s"] / base["total_full_s"], 2
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-mb", type=int, default=200)
    p.add_argument("--volume-mb", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--settle", type=float, default=1.0, help="the move's verify wait (s)")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--kinds", default=",".join(RUNNERS),
                   help="which rows, comma-separated: " + ", ".join(RUNNERS))  # fmt: skip
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(RUNNERS):
        p.error(f"--kinds: choose among {', '.join(RUNNERS)}")
    reason = docker_available() or images.busybox_available()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"llmaos-bench-move-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = run_all(args, kinds, tmp)
    summary = summarize(args, rows)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, **rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
