"""Slurm as a request engine: a cluster's jobs beside the agents' queues, acted on through
Slurm's own commands (``squeue``, ``scontrol``, ``scancel``, ``sbatch``).

- :mod:`.jobs`: one job as the console shows it (:class:`SlurmJob`), parsed from squeue's
  output with every text field bounded, and Slurm's states and reasons mapped to the
  console's request states;
- :mod:`.runner`: where the commands run, as argv lists: this machine
  (:class:`LocalRunner`) or an inventory host's SSH connection (:class:`SshRunner`);
- :mod:`.nodes`: a cluster's nodes and their state (:class:`SlurmNode`), parsed from
  ``sinfo --json`` (``scontrol show node`` where sinfo has no ``--json``);
- :mod:`.client`: the reads and actions (:class:`SlurmClient`); Slurm's refusals are
  raised as :class:`SlurmRefused` in its own words, a command without an answer in time as
  :class:`SlurmTimedOut` (a change may have been made);
- :mod:`.audited`: a change through the console's audited change path, a timeout audited
  as unknown;
- :mod:`.plan`: a hosts-level balancing plan that moves pending jobs off hot nodes.

No Textual or Rich here: screens draw the jobs and clean their text when drawing.
"""

from llmaos_tui.slurm.client import (
    LogTail,
    PrioResult,
    SlurmClient,
    SlurmRefused,
    SlurmTimedOut,
    SubmitSpec,
)
from llmaos_tui.slurm.jobs import SlurmJob, is_slurm_id, parse_slurm_id, slurm_id
from llmaos_tui.slurm.nodes import SlurmNode, parse_nodes, parse_nodes_json
from llmaos_tui.slurm.runner import LocalRunner, Result, Runner, SshRunner

__all__ = [
    "LocalRunner",
    "LogTail",
    "PrioResult",
    "Result",
    "Runner",
    "SlurmClient",
    "SlurmJob",
    "SlurmNode",
    "SlurmRefused",
    "SlurmTimedOut",
    "SshRunner",
    "SubmitSpec",
    "is_slurm_id",
    "parse_nodes",
    "parse_nodes_json",
    "parse_slurm_id",
    "slurm_id",
]
