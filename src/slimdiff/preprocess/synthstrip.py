"""SynthStrip brain extraction (Hoopes et al. 2022, NeuroImage 260:119474): FreeSurfer's contrast-agnostic model.

Why this backend: SynthStrip was trained on synthetic images of every contrast, so it strips FLAIR, T1, T2 and
lesioned brains alike; HD-BET's v1 weights saw T1/T2/FLAIR of tumour patients only.

What comes from where:

* the network's architecture from the PyPI package ``nipreps-synthstrip`` (0.0.1, Apache-2.0, code derived
  from FreeSurfer's ``mri_synthstrip``; optional extra ``pip install slimdiff[synthstrip]``): its
  ``StripModel`` with default arguments is the model of ``synthstrip.1.pt``, so it is imported, not rewritten;
* the weights from the user: ``synthstrip.1.pt`` ships with FreeSurfer 7.3+ (``$FREESURFER_HOME/models``) under
  the FreeSurfer software licence and is not redistributed by nipreps-synthstrip or by this project. Its sha256
  is a config key (``preprocess.brain_extraction.synthstrip.sha256``) and is checked before every use, so the
  pipeline never runs on another file than the one its results record;
* the steps around the network are written here from the method's description (the paper and FreeSurfer's
  documentation): resample to a 1 mm isotropic grid in LIA orientation whose sides are multiples of 64 (the
  U-Net halves the grid six times), between 192 and 320 voxels; scale intensities to [0, 1] by the minimum and
  the 99th percentile; the network predicts a signed distance (mm) to the brain surface; resample it back to
  the image's grid and keep voxels closer than ``border_mm`` inside, the largest connected part, holes filled.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from slimdiff.io import file_sha256
from slimdiff.preprocess.errors import BackendMissingError, WeightsError

log = logging.getLogger(__name__)

PACKAGE = "nipreps.synthstrip"
PIP = "nipreps-synthstrip==0.0.1"
# LIA voxel axes, 1 mm: voxel i runs toward Left (-x), j toward Inferior (-z), k toward Anterior (+y).
LIA = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
OUTSIDE_MM = 100.0  # distance given to voxels of the image outside the network's grid: far from any brain


def require_package() -> None:
    """A one-line error saying how to install the architecture's package, before any work is done."""
    try:
        found = importlib.util.find_spec(PACKAGE) is not None
    except ModuleNotFoundError:  # the namespace package `nipreps` itself is absent
        found = False
    if not found:
        raise BackendMissingError(
            "preprocess.brain_extraction.backend is 'synthstrip' but the package nipreps-synthstrip (SynthStrip's "
            f"architecture) is not installed; install it with `pip install {PIP}` "
            "(or `pip install slimdiff[synthstrip]`)"
        )


def package_version() -> str:
    from importlib.metadata import version

    return version("nipreps-synthstrip")


def verify_weights(path: str | Path | None, expected_sha256: str | None) -> str:
    """The sha256 of the user's weights file, which must exist and equal the configured one."""
    if not path:
        raise WeightsError(
            "preprocess.brain_extraction.synthstrip.weights is not set: give the path of FreeSurfer's "
            "synthstrip.1.pt ($FREESURFER_HOME/models/synthstrip.1.pt in FreeSurfer 7.3+)"
        )
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"{path}: SynthStrip weights file not found (preprocess.brain_extraction.synthstrip.weights)"
        )
    digest = file_sha256(path)
    if not expected_sha256:
        raise WeightsError(
            f"{path}: preprocess.brain_extraction.synthstrip.sha256 is not set; pin the file you checked "
            f"(its sha256 is {digest})"
        )
    if digest != expected_sha256.lower():
        raise WeightsError(
            f"{path}: sha256 {digest} is not the configured {expected_sha256} "
            "(preprocess.brain_extraction.synthstrip.sha256); another or a damaged weights file"
        )
    return digest


def load_model(path: str | Path, device: str = "cpu"):
    """nipreps-synthstrip's StripModel with the weights of `path` (a checkpoint dict with ``model_state_dict``,
    as FreeSurfer writes it, or a bare state dict), in eval mode. A file of another architecture is an error."""
    require_package()
    import torch
    from nipreps.synthstrip.model import StripModel

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsError(f"{path}: cannot read as a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a SynthStrip checkpoint (no model_state_dict)")
    model = StripModel()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{path}: weights do not fit SynthStrip's architecture ({first})") from None
    return model.to(device).eval()


def network_grid(shape: Sequence[int], affine: np.ndarray, min_size: int = 192, max_size: int = 320):
    """(shape, affine) of the network's input grid: 1 mm LIA voxels covering the image, sides multiples of 64
    within [min_size, max_size], centred on the image's centre."""
    shape = np.asarray(shape[:3], float)
    ends = [(-0.5, n - 0.5) for n in shape]  # the outer faces of the first and last voxels
    corners = np.array([[i, j, k] for i in ends[0] for j in ends[1] for k in ends[2]])
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    extent = world.max(0) - world.min(0)  # mm along x, y, z
    lia_extent = np.abs(LIA.T) @ extent  # along the grid's own axes (x, z, y)
    out_shape = np.clip(np.ceil(lia_extent / 64.0) * 64, min_size, max_size).astype(int)
    centre = affine[:3, :3] @ ((shape - 1) / 2) + affine[:3, 3]
    out = np.eye(4)
    out[:3, :3] = LIA
    out[:3, 3] = centre - LIA @ ((out_shape - 1) / 2)
    return tuple(int(s) for s in out_shape), out


def resample(volume: np.ndarray, affine: np.ndarray, out_shape, out_affine: np.ndarray, cval: float = 0.0):
    """`volume` (on `affine`'s grid) sampled linearly at the voxel centres of (`out_shape`, `out_affine`)."""
    to_input = np.linalg.inv(affine) @ out_affine  # output voxel -> input voxel
    volume = np.asarray(volume, np.float32)
    return ndimage.affine_transform(
        volume, to_input[:3, :3], to_input[:3, 3], output_shape=tuple(out_shape), order=1, cval=cval
    )


def mask_from_distance(distance: np.ndarray, border_mm: float = 1.0) -> np.ndarray:
    """The brain: voxels whose predicted distance to the surface is below `border_mm`, the largest connected
    part (a speck in the neck is not brain), holes filled; empty if nothing qualifies."""
    labels, n = ndimage.label(distance < border_mm)
    if n == 0:
        return np.zeros(distance.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)


def brain_mask(
    image: np.ndarray,
    affine: np.ndarray,
    weights: str | Path | None,
    sha256: str | None,
    border_mm: float = 1.0,
    device: str = "cpu",
    min_size: int = 192,
) -> tuple[np.ndarray, dict]:
    """(brain mask bool on `image`'s grid, provenance) of one volume. `min_size` is the smallest side of the
    network's grid (192 as FreeSurfer; the tests use 64 on tiny volumes)."""
    require_package()
    digest = verify_weights(weights, sha256)
    import torch

    model = load_model(weights, device)
    shape, grid = network_grid(image.shape, affine, min_size)
    x = resample(image, affine, shape, grid)
    x -= x.min()
    top = float(np.percentile(x, 99))
    x = np.clip(x / top, 0.0, 1.0) if top > 0 else x
    with torch.no_grad():
        distance = model(torch.from_numpy(np.ascontiguousarray(x[None, None])).to(device)).cpu().numpy()[0, 0]
    back = resample(distance, grid, image.shape[:3], affine, cval=OUTSIDE_MM)
    mask = mask_from_distance(back, border_mm)
    info = {
        "tool": "SynthStrip (nipreps-synthstrip architecture, user-supplied weights)",
        "version": package_version(),
        "weights_sha256": {Path(weights).name: digest},
        "network_grid": list(shape),
        "border_mm": border_mm,
    }
    return mask, info
