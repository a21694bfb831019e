"""P x K identity batch sampler for the triplet loss: every batch is P identities with K images each.

One class serves single-process and distributed training (fast-reid's approach): every rank generates the
same stream of batches from the shared (seed, epoch), and rank r keeps batches r, r + W, r + 2W, ... so the
ranks see disjoint batches of one epoch and together see exactly the single-process stream.

    sampler = PKSampler([r.pid for r in records], p=4, k=16, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader: ...
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from occreid.errors import OccreidError


class PKSampler:
    """Yields lists of p * k dataset indices: p distinct identities x k images each, identity-grouped.

    How the stream is drawn (one numpy generator seeded with (seed, epoch)):
      - identities come from a chain of random permutations, so each identity is visited once before any is
        visited twice (a batch never repeats an identity; at a permutation boundary the repeat is deferred);
      - an identity with >= k images gives the next k of its own shuffled cycle of images (no repeats within a
        visit, all images used before any repeats across visits);
      - an identity with n < k images gives all n images plus k - n drawn with replacement, shuffled.
    Batch i of the stream depends only on the seed and epoch, not on the epoch length.

    Length (per rank): `num_batches` if given, else the epoch of BoT's identity sampler, on which the paper's
    30/70/120-epoch recipe is built: about one pass over the training images, sum over identities of
    max(1, n_images // k) groups of k, divided by p and split between the ranks (at least 1 batch). Every
    rank gets the same number of batches.
    Each `__iter__` uses the epoch set by `set_epoch` and then advances it by one, so iterating again without
    calling `set_epoch` gives the next epoch's batches rather than a repeat.
    """

    def __init__(
        self,
        pids: Sequence[int],
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_batches: int | None = None,
    ) -> None:
        if p < 1 or k < 1:
            raise OccreidError(f"data.p and data.k must be >= 1, got p={p}, k={k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if num_batches is not None and num_batches < 1:
            raise OccreidError(f"the number of batches per epoch must be >= 1, got {num_batches}")
        by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            by_pid[int(pid)].append(index)
        self.pids = sorted(by_pid)
        self.indices_of = [np.asarray(by_pid[pid], dtype=np.int64) for pid in self.pids]
        if len(self.pids) < p:
            raise OccreidError(
                f"data.p={p} identities per batch but the training set has only {len(self.pids)} identities; "
                f"lower data.p"
            )
        self.p, self.k = p, k
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        if num_batches is None:
            groups = sum(max(1, len(indices) // k) for indices in self.indices_of)
            num_batches = max(1, groups // p // world_size)
        self.num_batches = num_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pin the next iteration to `epoch` (the same epoch gives the same batches on every rank)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        stream = self.stream(epoch, self.num_batches * self.world_size)
        for i, batch in enumerate(stream):
            if i % self.world_size == self.rank:
                yield batch

    def stream(self, epoch: int, num_batches: int) -> Iterator[list[int]]:
        """The first `num_batches` batches of the shared (all-rank) stream of `epoch`."""
        rng = np.random.default_rng([self.seed, epoch])
        num_ids = len(self.pids)
        id_queue: list[int] = []
        # Per identity: a shuffled cycle of its images and the position reached in it.
        cycles: list[np.ndarray | None] = [None] * num_ids
        cursor = [0] * num_ids
        for _ in range(num_batches):
            while len(id_queue) < 2 * self.p:  # enough to find p distinct ids across a permutation boundary
                id_queue.extend(rng.permutation(num_ids).tolist())
            chosen: list[int] = []
            for pos, ident in enumerate(id_queue):
                if ident not in chosen:
                    chosen.append(ident)
                    id_queue[pos] = -1
                    if len(chosen) == self.p:
                        break
            id_queue = [i for i in id_queue if i >= 0]
            batch: list[int] = []
            for ident in chosen:
                batch.extend(self._images(ident, rng, cycles, cursor))
            yield batch

    def _images(self, ident: int, rng: np.random.Generator, cycles: list, cursor: list[int]) -> list[int]:
        """k dataset indices of identity `ident`."""
        indices = self.indices_of[ident]
        if len(indices) < self.k:
            extra = rng.choice(indices, size=self.k - len(indices), replace=True)
            return rng.permutation(np.concatenate([indices, extra])).tolist()
        out: list[int] = []
        while len(out) < self.k:
            if cycles[ident] is None or cursor[ident] >= len(indices):
                cycle = rng.permutation(indices)
                if out:  # a cycle ended mid-visit: the new one starts with images not yet in this visit
                    seen = np.isin(cycle, out)
                    cycle = np.concatenate([cycle[~seen], cycle[seen]])
                cycles[ident], cursor[ident] = cycle, 0
            take = min(self.k - len(out), len(indices) - cursor[ident])
            out.extend(cycles[ident][cursor[ident] : cursor[ident] + take].tolist())
            cursor[ident] += take
        return out
