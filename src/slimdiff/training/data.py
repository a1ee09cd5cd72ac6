"""Training data from the slice cache: one fold's train or val rows, and the per-epoch seeded (lesion-balancing)
sampler."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from slimdiff.config import ConfigError
from slimdiff.data.cache import Cache
from slimdiff.data.splits import fold_membership


class SliceDataset(Dataset):
    """x0 = [image, mask] (2,H,W) in [-1, 1] and the conditioning token, read from the memory-mapped cache."""

    def __init__(self, cache: Cache, fold: int, role: str, max_slices: int | None = None, seed: int = 0):
        """`max_slices`: a seeded subset of at most this many rows, lesion and lesion-free slices in proportion
        (a cheaper validation set that still holds lesion slices for the mask-Dice diagnostic)."""
        if fold >= len(cache.splits["folds"]):
            raise ConfigError(f"fold {fold} requested but {cache.path}/splits.json has {len(cache.splits['folds'])}")
        member = fold_membership(cache.index, fold)
        chosen = cache.index[member == role]
        if len(chosen) == 0:
            raise ConfigError(f"{cache.path}: fold {fold} has no {role} slices")
        if max_slices is not None and len(chosen) > max_slices:
            share = max_slices / len(chosen)
            chosen = chosen.groupby("class", group_keys=False).sample(frac=share, random_state=seed)
        self.rows = np.sort(chosen["row"].to_numpy())
        self.tokens = cache.index.set_index("row").loc[self.rows, "token"].to_numpy()
        self.lesion = cache.index.set_index("row").loc[self.rows, "class"].to_numpy().astype(bool)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.rows[i]
        x0 = np.stack([self.cache.images[r], self.cache.masks[r].astype(np.float32)])
        return torch.from_numpy(x0), torch.tensor(self.tokens[i], dtype=torch.long)


# Random streams of one epoch, each seeded by epoch_seed(training seed, epoch, stream).
TRAINING_STREAM = 0  # the global torch/numpy/python RNGs during the epoch's steps (noise, t, coin, dropout)
ORDER_STREAM = 1  # the epoch's sample order


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """The seed of one random stream of one epoch: (seed, epoch, stream) mixed by numpy's SeedSequence, so no
    two triples share it (seed + epoch would give seed 33's epoch 1 the draws of seed 34's epoch 0)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


class EpochSampler(Sampler[int]):
    """The training order of one epoch, a function of (seed, epoch) alone, as in torch's DistributedSampler; under
    DDP, this rank's share of it.

    Lightning calls `set_epoch(epoch)` as each epoch starts (and runner.EpochSeeds as a resumed fit starts); the
    order is drawn from a generator seeded from (seed, epoch) when the iterator starts, so a run resumed at
    epoch k draws the same order for it as an uninterrupted run, whatever the earlier epochs drew. With
    `weights` (lesion-balanced): n weighted draws with replacement; without: a permutation.

    Distributed (`num_replicas` W > 1): every rank draws the same single-process order and keeps the positions
    rank, rank + W, rank + 2W, ... (upstream's DistributedWeightedRandomSampler), each rank the same number,
    n // W, so no rank waits at a collective for a batch another rank never gets. The shares are disjoint as
    positions, and their union is the single-process draw of the same seed and epoch, less its last n mod W
    positions. Rank r's k-th batch of b is then rows r, r + W, ... of the single-process k-th batch of W * b:
    runner/module draw each step's random numbers for the whole W * b batch and keep the same rows, so a DDP step
    is the single-process step on the effective batch.
    """

    def __init__(
        self, n: int, seed: int, weights: np.ndarray | None = None, num_replicas: int = 1, rank: int = 0
    ) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} of {num_replicas} replicas is not a valid rank")
        if n < num_replicas:
            raise ConfigError(f"{n} training slices cannot be shared out among training.devices = {num_replicas} ranks")
        self.n, self.seed, self.epoch = n, seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.num_replicas

    def draw(self) -> torch.Tensor:
        """The single-process order of this epoch (every rank draws all of it)."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, ORDER_STREAM))
        if self.weights is None:
            return torch.randperm(self.n, generator=gen)
        return torch.multinomial(self.weights, self.n, replacement=True, generator=gen)

    def __iter__(self) -> Iterator[int]:
        order = self.draw()
        share = order[self.rank : len(self) * self.num_replicas : self.num_replicas]
        return iter(share.tolist())


class ShardedBatches(Sampler[list[int]]):
    """Validation batches under DDP: the single-process batches of `batch_size` (in order, the last one short),
    dealt out whole, batch g to rank g mod W, so every rank scores complete batches with the batch-size
    dependent stratified timesteps and the noise seeded by the batch's global index g (module.py) exactly as
    one process would, and the sums reduced across ranks are the single-process epoch's.

    Every rank gets the same number of batches, ceil(batches / W): a rank whose turn falls past the end gets
    batch 0 again, which the module recognises by its global index and skips (a rank with no batch at all would
    skip validation, and its hooks, and leave the others waiting at the reduction).
    """

    def __init__(self, n: int, batch_size: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.n, self.batch_size, self.num_replicas, self.rank = n, batch_size, num_replicas, rank
        self.batches = -(-n // batch_size)

    def __len__(self) -> int:
        return -(-self.batches // self.num_replicas)

    def global_index(self, local: int) -> int:
        return local * self.num_replicas + self.rank

    def __iter__(self) -> Iterator[list[int]]:
        for local in range(len(self)):
            g = self.global_index(local)
            g = g if g < self.batches else 0  # a stand-in, skipped
            yield list(range(g * self.batch_size, min((g + 1) * self.batch_size, self.n)))


def training_sampler(
    dataset: SliceDataset, seed: int, lesion_balanced: bool, num_replicas: int = 1, rank: int = 0
) -> EpochSampler:
    """A shuffle, or with `lesion_balanced` lesion slices weighted n_clean / n_lesion, so batches are about half
    lesion slices; under DDP this rank's share (EpochSampler)."""
    if not lesion_balanced:
        return EpochSampler(len(dataset), seed, num_replicas=num_replicas, rank=rank)
    n_lesion = int(dataset.lesion.sum())
    n_clean = len(dataset) - n_lesion
    weights = np.ones(len(dataset))
    if n_lesion and n_clean:
        weights[dataset.lesion] = n_clean / n_lesion
    return EpochSampler(len(dataset), seed, weights, num_replicas, rank)
