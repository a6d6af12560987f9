"""One process's share of a ``basicsr generate`` run started by ``torchrun`` (or alone when there is no launcher).

Every image's noise depends only on (seed, image index), so ranks take every ``world``-th image, write them into
the same staging folders, and rank 0 alone prepares the output, writes the manifest and builds the LMDBs: the output
is the one a single process writes with the same seed.
"""
import os

import torch


class Shard:
    """Rank and world size from the torchrun environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``)."""

    def __init__(self):
        self.world = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', str(self.rank)))
        self._owns_group = False
        if self.world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                dist.init_process_group('gloo')  # only small objects and barriers travel: gloo serves CPUs and GPUs
                self._owns_group = True

    @property
    def main(self):
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def share(self, value):
        """Rank 0's ``value`` on every rank (``value`` is only computed where it is needed: pass None elsewhere)."""
        if self.world == 1:
            return value
        import torch.distributed as dist
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mine(self, indices):
        """This rank's share of ``indices``: every ``world``-th one."""
        return [i for i in indices if i % self.world == self.rank]

    def device(self, device):
        """One GPU per rank: a bare ``cuda`` device becomes ``cuda:<local rank>``."""
        if self.world > 1 and device.type == 'cuda' and device.index is None:
            return torch.device('cuda', self.local_rank % torch.cuda.device_count())
        return device

    def close(self):
        if self._owns_group:
            import torch.distributed as dist
            dist.destroy_process_group()
            self._owns_group = False
