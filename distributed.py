"""Many processes started by torchrun: who this process is, the process group's set-up and teardown,
barriers, sums over the processes, and output lines that stay whole.

Used by training (each process trains on its share of every batch) and by ``super_resolve.py`` (each
process upscales its share of the inputs). Started without torchrun, a :class:`Group` is a single process
and every method is a no-op that costs nothing.
"""
import os
import sys
from dataclasses import dataclass


def whole_lines():
    """Have stdout and stderr write each line in one piece. torchrun starts its processes unbuffered
    (``python -u``), where print writes the text and the newline apart, and another process's line can land
    between them in the pipe or terminal they share (seen: two "wrote" lines run together on one line)."""
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True, write_through=False)


@dataclass(frozen=True)
class Group:
    """This process's place among the ``world`` processes of one job: its ``rank`` (0 to world - 1) and its
    ``local_rank`` on its machine (which GPU it takes)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls):
        """The group torchrun described in the environment (WORLD_SIZE, RANK, LOCAL_RANK); not joined yet."""
        env = os.environ
        return cls(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))

    @property
    def main(self):
        """Whether this is the first process, the one that writes a job's shared files and summary lines."""
        return self.rank == 0

    def join(self, backend="gloo"):
        """Join the process group (``backend``: "gloo" for CPU tensors, "nccl" for CUDA ones), lines whole."""
        if self.world > 1:
            import torch.distributed as dist
            whole_lines()
            dist.init_process_group(backend)
        return self

    def barrier(self):
        """Wait until every process is here."""
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def all_reduce(self, tensor):
        """``tensor`` summed over the processes, in place (on the backend's device); itself in one process."""
        if self.world > 1:
            import torch.distributed as dist
            dist.all_reduce(tensor)
        return tensor

    def totals(self, *counts):
        """Each of the whole numbers ``counts`` summed over the processes (gloo, on the CPU)."""
        if self.world == 1:
            return [int(c) for c in counts]
        import torch
        return self.all_reduce(torch.tensor([int(c) for c in counts])).tolist()

    def same_everywhere(self, tensor):
        """Whether every process holds a bitwise identical ``tensor``."""
        if self.world == 1:
            return True
        import torch
        import torch.distributed as dist
        gathered = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(gathered, tensor)
        return all(torch.equal(tensor, g) for g in gathered)

    def share(self, items):
        """This process's part of ``items``: every ``world``-th, from its rank on; together, each once."""
        return items[self.rank::self.world]

    def leave(self, wait=True):
        """Leave the process group, with ``wait`` after every process has come here: then none closes its
        connections while another still reads from them (gloo aborts a process that finds a connection closed
        under it). Without ``wait`` (on the way out of an error, where the others may never come) at once."""
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                if wait:
                    dist.barrier()
                dist.destroy_process_group()
