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
    """The training order of one epoch, a function of (seed, epoch) alone, as in torch's DistributedSampler.

    Lightning calls `set_epoch(epoch)` as each epoch starts (and runner.EpochSeeds as a resumed fit starts); the
    order is drawn from a generator seeded from (seed, epoch) when the iterator starts, so a run resumed at
    epoch k draws the same order for it as an uninterrupted run, whatever the earlier epochs drew. With
    `weights` (lesion-balanced): n weighted draws with replacement; without: a permutation.
    """

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, ORDER_STREAM))
        if self.weights is None:
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=gen)
        return iter(order.tolist())


def training_sampler(dataset: SliceDataset, seed: int, lesion_balanced: bool) -> EpochSampler:
    """A shuffle, or with `lesion_balanced` lesion slices weighted n_clean / n_lesion, so batches are about half
    lesion slices."""
    if not lesion_balanced:
        return EpochSampler(len(dataset), seed)
    n_lesion = int(dataset.lesion.sum())
    n_clean = len(dataset) - n_lesion
    weights = np.ones(len(dataset))
    if n_lesion and n_clean:
        weights[dataset.lesion] = n_clean / n_lesion
    return EpochSampler(len(dataset), seed, weights)
