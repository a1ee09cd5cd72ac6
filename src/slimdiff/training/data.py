"""Training data from the slice cache: one fold's train or val rows, and the lesion-balancing sampler."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

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


def lesion_balanced_sampler(dataset: SliceDataset, seed: int) -> WeightedRandomSampler:
    """Lesion slices weighted n_clean / n_lesion, so batches are about half lesion slices."""
    n_lesion = int(dataset.lesion.sum())
    n_clean = len(dataset) - n_lesion
    weights = np.ones(len(dataset))
    if n_lesion and n_clean:
        weights[dataset.lesion] = n_clean / n_lesion
    gen = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(dataset), replacement=True, generator=gen)
