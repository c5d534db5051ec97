"""``llmaos-agent`` as a user runs it: sample, version, stop, attach's failures, bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from llmaos_agent import __version__
from llmaos_agent.attach import EXIT_NO_DAEMON
from llmaos_agent.metrics import beta, beta_max
from llmaos_agent.protocol import PROTOCOL_VERSION, HostFacts, Sample

from .bare import agent_argv, agent_env, bare_mode
from .conftest import agent_daemons

TIMEOUT = 20.0


def agent(*args: str) -> list[str]:
    """The installed ``llmaos-agent`` script, as a user runs it (the module as a fallback);
    under ``LLMAOS_TEST_AGENT_PYTHON=bare`` the module on a bare python3 (tests/bare.py).
    Run it with ``env=agent_env()``."""
    script = Path(sys.executable).with_name("llmaos-agent")
    if script.exists() and not bare_mode():
        return [str(script), *args]
    return agent_argv(*args)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agent(*args), env=agent_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


class Report(msgspec.Struct, forbid_unknown_fields=True):
    """What ``sample --json`` prints, decoded as strictly as the wire."""

    host: HostFacts
    sample: Sample
    beta_cpu: float
    beta_gpu: float


def test_sample_json(agent_home: Path) -> None:
    proc = subprocess.Popen(
        agent("sample", "--json", "--interval", "0.2"),
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert out.endswith(b"\n") and out.count(b"\n") == 1, "one line of JSON"
    report = msgspec.json.decode(out, type=Report)

    cores = os.cpu_count()
    assert report.host.cores == cores
    assert report.host.os
    sample = report.sample
    assert len(sample.cpu) == cores
    assert all(0.0 <= x <= 1.0 for x in sample.cpu)
    assert sample.mem.total > 0 and sample.mem.used <= sample.mem.total
    assert 0.0 <= report.beta_cpu <= beta_max(len(sample.cpu)) + 1e-9
    assert report.beta_cpu == pytest.approx(beta(sample.cpu), abs=1e-3)
    assert report.beta_gpu == 0.0 or sample.gpus

    assert sample.procs is not None and sample.procs.full
    by_pid = {p.pid: p for p in sample.procs.upsert}
    assert proc.pid in by_pid, "the table includes the sampling command itself"
    assert os.getpid() in by_pid
    me = by_pid[proc.pid]
    assert me.ppid == os.getpid()
    assert "sample" in me.cmd
    # Sampling needs no daemon, and starts none.
    assert agent_daemons(agent_home) == []


def test_sample_text(agent_home: Path) -> None:
    res = run("sample", "--interval", "0.1")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("cores %:")
    assert len(lines[0].split()) == 2 + (os.cpu_count() or 1)
    assert lines[1].startswith("beta_cpu ")


def test_version() -> None:
    res = run("version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"llmaos-agent {__version__} protocol {PROTOCOL_VERSION}"
    flag = run("--version")
    assert flag.returncode == 0
    assert __version__ in flag.stdout
    module = subprocess.run(
        agent_argv("version"),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert module.stdout == res.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sample", "--interval", "0"], "between 0.05 and 3600"),
        (["sample", "--interval", "nan"], "between 0.05 and 3600"),
        (["sample", "--interval", "soon"], "not a number of seconds: 'soon'"),
        (["daemon", "--interval", "0"], "between 0.05 and 3600"),
        (["daemon", "--proc-interval", "-1"], "between 0.05 and 3600"),
        (["daemon", "--interval", "7200"], "between 0.05 and 3600"),
        (["attach", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice"),
        ([], "required: cmd"),
    ],
)
def test_bad_arguments_exit_2(agent_home: Path, args: list[str], says: str) -> None:
    res = run(*args)
    assert res.returncode == 2
    assert "usage: llmaos-agent" in res.stderr
    assert says in res.stderr
    assert res.stdout == ""
    assert agent_daemons(agent_home) == []


def test_stop_without_a_daemon(agent_home: Path) -> None:
    res = run("stop")
    assert res.returncode == 1
    assert "no daemon is running" in res.stderr


def test_attach_no_start_without_a_daemon(agent_home: Path) -> None:
    res = subprocess.run(
        agent("attach", "--no-start"),
        env=agent_env(),
        input="",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert res.returncode == EXIT_NO_DAEMON
    assert "no daemon" in res.stderr
    assert res.stdout == ""
    assert agent_daemons(agent_home) == []


def test_attach_refuses_a_runtime_dir_others_can_write(agent_home: Path) -> None:
    run_dir = agent_home / "run"
    run_dir.mkdir()
    run_dir.chmod(0o777)
    res = subprocess.run(
        agent("attach"),
        env=agent_env(),
        input="",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert res.returncode == 2
    assert "writable by others" in res.stderr
    assert agent_daemons(agent_home) == []
    daemon = run("daemon")
    assert daemon.returncode == 2
    assert "writable by others" in daemon.stderr
