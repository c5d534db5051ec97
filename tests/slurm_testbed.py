"""A real two-node Slurm cluster on the SSH testbed: slurmctld and munged on this machine,
one slurmd in each of two testbed hosts (network namespaces, :mod:`tests.testbed`).

It reuses the one-node fixture's parts (:class:`tests.slurm_cluster.SlurmCluster`: the
private munged, the private ``slurm.conf`` named by ``SLURM_CONF``, the daemons' spawning,
waiting, log tails and stray killing) and changes only the topology:

- The testbed hosts are named ``a`` and ``b`` (their UTS hostnames too); the nodes are
  ``NodeName=a NodeAddr=<a's namespace address>`` and the same for ``b``, so slurmctld
  reaches each slurmd over the testbed's bridge, as a controller reaches its nodes.
- slurmctld runs in the root namespace: ``SlurmctldHost=localhost(<bridge address>)``
  (22.05 accepts ``localhost`` as this machine's name; the address in parentheses is what
  the slurmds dial, from inside their namespaces).
- Each slurmd is started inside its host's namespaces (``nsenter`` into the host's init,
  as the testbed starts sshd), with ``-N`` its node name. Its spool, pid and log files
  are per node (``%n`` in ``slurm.conf``); the slurmd port is the same for both (each
  listens in its own namespace).
- One munged for all: its socket is a path under /tmp, which the hosts share with this
  machine (a pathname Unix socket is reached across network namespaces), so every daemon
  signs with the same private key, as a cluster's hosts share one ``munge.key``.

A host's load average is the machine's (namespaces do not split it), so both nodes
report the same ``CPULoad``: a test that needs one node hot and the other cool sets the
load on the console's node record itself and says so.

Distinct from the one-node fixture in the same pytest session: its own temporary
directory (state, spool, logs, ``slurm.conf``), its own free ports, its own munged, and
a testbed prefix of its own; teardown cancels the jobs, stops the slurmds and slurmctld,
kills strays and removes the namespaces.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, slurm_available
from tests.testbed import Testbed, TestHost, testbed_available

NODES = ("a", "b")


class TwoNodeCluster(SlurmCluster):
    """slurmctld here, slurmd ``a`` and ``b`` in the testbed ``tb``'s hosts of those names."""

    def __init__(self, tb: Testbed, root: Path | None = None) -> None:
        super().__init__(root, priority="basic", gpus=0)
        self.tb = tb
        self.hosts: dict[str, TestHost] = {n: tb.host(n) for n in NODES}
        assert tb.subnet is not None
        self.ctld_addr = str(tb.subnet.network_address + 1)  # the bridge, in the root namespace
        self.partition = "two"
        self.node = NODES[0]  # what SlurmCluster.node_state reads; see state_of for either

    def state_of(self, node: str) -> str:
        """A node's state in sinfo's words, as :meth:`SlurmCluster.node_state` reads it."""
        saved, self.node = self.node, node
        try:
            return self.node_state()
        finally:
            self.node = saved

    def _write_conf(self) -> None:
        r = self.root
        nodes = ",".join(NODES)
        lines = [
            "ClusterName=llmaos2",
            f"SlurmctldHost=localhost({self.ctld_addr})",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            # %n: the node's name, so two slurmds on one filesystem keep apart.
            f"SlurmdSpoolDir={r / 'spool' / '%n'}",
            f"SlurmctldPidFile={r / 'state' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'spool' / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={self.logs / 'slurmctld.log'}",
            f"SlurmdLogFile={self.logs / 'slurmd-%n.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "PriorityType=priority/basic",
            "EnforcePartLimits=ALL",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            "MailProg=/bin/true",
            *(
                f"NodeName={n} NodeAddr={self.hosts[n].addr} {self.topology} State=UNKNOWN"
                for n in NODES
            ),
            f"PartitionName={self.partition} Nodes={nodes} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o644)
        (self.conf.parent / "gres.conf").unlink(missing_ok=True)

    def _start_slurm(self, deadline: float) -> None:
        for n in NODES:
            (self.root / "spool" / n).mkdir(mode=0o755, exist_ok=True)
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait(self._ctld_up, deadline, "slurmctld did not answer scontrol ping", "slurmctld")
        for n in NODES:
            # nsenter without -p execs: the Popen's pid is the slurmd, in the host's namespaces.
            argv = ["nsenter", "-t", str(self.hosts[n].pid), "-n", "-m", "-u", "--"]
            self._spawn(f"slurmd-{n}", [*argv, "slurmd", "-D", "-N", n])
        self._wait(
            lambda: all(self.state_of(n) == "idle" for n in NODES),
            deadline,
            f"nodes {', '.join(NODES)} did not become idle",
            "slurmctld",
            *(f"slurmd-{n}" for n in NODES),
        )

    def _stop_slurm(self) -> None:
        for n in NODES:
            self._stop(f"slurmd-{n}")
        self._stop("slurmctld")


@contextlib.contextmanager
def two_node_cluster() -> Iterator[TwoNodeCluster]:
    """A testbed of hosts ``a`` and ``b`` and the cluster on it, both torn down on leaving
    (the cluster first: its slurmds live in the testbed's namespaces)."""
    with Testbed(n=2, names=list(NODES)) as tb:
        c = TwoNodeCluster(tb)
        c.start()  # stops what it started if it fails
        try:
            yield c
        finally:
            c.stop()


def two_nodes_available() -> str | None:
    """Why the two-node cluster cannot run here, or None."""
    return slurm_available() or testbed_available()


@pytest.fixture(scope="module")
def cluster2() -> Iterator[TwoNodeCluster]:
    """The two-node cluster for a test module; skips (fails under
    LLMAOS_REQUIRE_INTEGRATION) without root, Slurm or network namespaces."""
    from tests.conftest import need

    why = two_nodes_available()
    need(why is None, why or "")
    with two_node_cluster() as c:
        yield c
