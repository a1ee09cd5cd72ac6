"""Export generated pairs for segmentation work: an nnU-Net raw dataset or plain NIfTI pairs.

Masks are binarised at tau (default 0); each 2D slice is written as a one-slice NIfTI volume with the
cache's in-plane spacing, in RAS (x = R-L, y = P-A), so any viewer shows it the right way round.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from slimdiff.generation.outputs import read_samples
from slimdiff.io import atomic_dir


def export_samples(
    npz_paths: list[str | Path],
    out_dir: str | Path,
    fmt: str = "nnunet",
    tau: float = 0.0,
    dataset_name: str = "SlimDiffSynthetic",
    only_lesion: bool = False,
) -> int:
    if fmt not in ("nnunet", "nifti"):
        raise ValueError(f"unknown export format {fmt!r}: use nnunet or nifti")
    if not npz_paths:
        raise ValueError("no sample files to export")
    count = 0
    with atomic_dir(out_dir) as tmp:
        if fmt == "nnunet":
            (tmp / "imagesTr").mkdir()
            (tmp / "labelsTr").mkdir()
        for path in sorted(map(Path, npz_paths)):
            s = read_samples(path)
            spacing = s["meta"].get("spacing_mm") or [1.0, 1.0, 1.0]
            affine = np.diag([*spacing[:3], 1.0])
            replica = s["meta"].get("replica", 0)
            for i in range(len(s["seed"])):
                mask = (s["masks"][i].astype(np.float32) > tau).astype(np.uint8)
                if only_lesion and not mask.any():
                    continue
                image = s["images"][i].astype(np.float32)
                case = (
                    f"{dataset_name}_r{replica}_z{int(s['z_bin'][i]):02d}_c{int(s['class'][i])}_k{int(s['k'][i]):04d}"
                )
                img = nib.Nifti1Image(image[:, :, None], affine)
                seg = nib.Nifti1Image(mask[:, :, None], affine)
                if fmt == "nnunet":
                    nib.save(img, tmp / "imagesTr" / f"{case}_0000.nii.gz")
                    nib.save(seg, tmp / "labelsTr" / f"{case}.nii.gz")
                else:
                    nib.save(img, tmp / f"{case}_image.nii.gz")
                    nib.save(seg, tmp / f"{case}_mask.nii.gz")
                count += 1
        if fmt == "nnunet":
            dataset = {
                "channel_names": {"0": "FLAIR"},
                "labels": {"background": 0, "lesion": 1},
                "numTraining": count,
                "file_ending": ".nii.gz",
                "name": dataset_name,
                "description": f"SLIM-Diff synthetic FLAIR/FCD-mask pairs, masks binarised at tau={tau}",
            }
            (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return count
