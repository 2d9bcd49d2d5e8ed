"""What each rank sees of its node, for the isolation tests: its pid, hostname, network
interfaces and socket-interface choice, and which nodes' /tmp files it can see.

Installed with FT_TRAINER_HOOKS=tests.support.node_facts:install. At the start of training
every rank drops a file named after its host into /tmp, waits for all ranks to have done so
(a barrier), then lists what it sees; the facts go to `<output_dir>/ft-node-facts-rank<r>.json`.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch.distributed as dist
from transformers import TrainerCallback

HOOK = "tests.support.node_facts:install"
PROBE_PREFIX = "ft-isolation-probe-"
PROBED = ("/tmp", "/dev/shm")  # each node's own, when isolated
HOST_FILE_ENV = "FT_TEST_HOST_TMP_FILE"  # a file the test left in the host's /tmp


def facts_path(output_dir: Path, rank: int) -> Path:
    return output_dir / f"ft-node-facts-rank{rank}.json"


class NodeFacts(TrainerCallback):
    def __init__(self, output_dir: str, rank: int):
        self.output_dir, self.rank = Path(output_dir), rank

    def on_train_begin(self, args, state, control, **kwargs):
        host = socket.gethostname()
        for directory in PROBED:
            Path(directory, PROBE_PREFIX + host).write_text(str(self.rank))
        dist.barrier()  # every rank has written its probes before anyone looks
        seen = {directory: sorted(p.name[len(PROBE_PREFIX):]
                                  for p in Path(directory).glob(PROBE_PREFIX + "*"))
                for directory in PROBED}
        host_file = os.environ.get(HOST_FILE_ENV)
        facts = {"pid": os.getpid(), "hostname": host, "rank": self.rank,
                 "interfaces": sorted(os.listdir("/sys/class/net")),
                 "gloo_ifname": os.environ.get("GLOO_SOCKET_IFNAME"),
                 "nccl_ifname": os.environ.get("NCCL_SOCKET_IFNAME"),
                 "probes_seen": seen,
                 "sees_host_tmp_file": bool(host_file) and Path(host_file).is_file(),
                 # pid 1 of the node's pid namespace (the host's init where there is none)
                 "pid_1_command": _command(1),
                 "pid_namespace": os.readlink("/proc/self/ns/pid")}
        path = facts_path(self.output_dir, self.rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(facts))


def _command(pid: int) -> list[str]:
    return [arg.decode() for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]


def install(trainer) -> None:
    trainer.add_callback(NodeFacts(trainer.args.output_dir, trainer.args.process_index))
