"""Export generated pairs for segmentation work: an nnU-Net raw dataset or plain NIfTI pairs.

Masks are binarised at tau (default 0); each 2D slice is written as a one-slice NIfTI volume with the
cache's in-plane spacing, in RAS (x = R-L, y = P-A), so any viewer shows it the right way round.

Every pair gets a case id that names where it came from, so samples of several runs, folds, replicas or seeds
can share one dataset without replacing each other:

    {dataset}_{run}_f{fold}_r{replica}_s{seed}_z{zz}_c{class}_k{kkkk}

(run, dataset name: letters, digits, '_' and '-' kept, '.' -> 'p', anything else -> '-'; a value the sample
file does not record is 'NA'). nnU-Net takes the id up to the `_0000` channel suffix, so the id needs no other
rule; without dots it also survives tools that cut a file name at its first dot. Two samples with the same id
are refused, not silently written over each other.

The output folder must be new or empty. `append=True` adds the new cases to a dataset written before (same
format, dataset name and tau), refuses any case id already there, and recounts `numTraining` from the files
present; the folder is rebuilt beside the old one and swapped in only when complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from slimdiff.errors import MissingInputError, OutputExistsError, SlimdiffInputError
from slimdiff.generation.outputs import read_samples
from slimdiff.io import atomic_dir, read_json, write_text

log = logging.getLogger(__name__)

FORMATS = ("nnunet", "nifti")


def case_token(value) -> str:
    """A value as a file-name-safe part of a case id (see the module doc)."""
    if value is None:
        return "NA"
    text = re.sub(r"[^A-Za-z0-9_-]", "-", str(value).replace(".", "p"))
    return text or "NA"


def case_id(dataset_name: str, meta: dict, z_bin: int, cls: int, k: int) -> str:
    run, fold, replica, seed = (meta.get(key) for key in ("run", "fold", "replica", "seed"))
    return (
        f"{case_token(dataset_name)}_{case_token(run)}_f{case_token(fold)}_r{case_token(replica)}"
        f"_s{case_token(seed)}_z{int(z_bin):02d}_c{int(cls)}_k{int(k):04d}"
    )


def case_files(fmt: str, case: str) -> tuple[str, str]:
    """(image, label) paths of a case, relative to the dataset folder."""
    if fmt == "nnunet":
        return f"imagesTr/{case}_0000.nii.gz", f"labelsTr/{case}.nii.gz"
    return f"{case}_image.nii.gz", f"{case}_mask.nii.gz"


def _dataset_json(dataset_name: str, tau: float, count: int) -> dict:
    return {
        "channel_names": {"0": "FLAIR"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": count,
        "file_ending": ".nii.gz",
        "name": dataset_name,
        "description": f"SLIM-Diff synthetic FLAIR/FCD-mask pairs, masks binarised at tau={tau}",
    }


def _check_appendable(out: Path, fmt: str, dataset_name: str, tau: float) -> None:
    """An existing dataset may take more cases only when it has the same format, dataset name and tau."""
    dataset_json = out / "dataset.json"
    if fmt == "nifti":
        if dataset_json.exists():
            raise SlimdiffInputError(f"{out}: holds an nnU-Net dataset (dataset.json); cannot append NIfTI pairs")
        return
    if not dataset_json.is_file() or not (out / "imagesTr").is_dir() or not (out / "labelsTr").is_dir():
        raise SlimdiffInputError(
            f"{out}: not an nnU-Net dataset written by slimdiff-export (needs dataset.json, imagesTr/ and labelsTr/)"
        )
    found, wanted = read_json(dataset_json), _dataset_json(dataset_name, tau, 0)
    for key in ("name", "description"):
        if found.get(key) != wanted[key]:
            raise SlimdiffInputError(
                f"{dataset_json}: {key} is {found.get(key)!r}, this export would write {wanted[key]!r}; "
                "append only with the same --dataset-name and --tau, or export to a new folder"
            )


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _count_nnunet_cases(root: Path, shown: Path) -> int:
    """The number of image/label pairs; an image without its label (or the reverse) is an error."""
    labels = {p.name[: -len(".nii.gz")] for p in (root / "labelsTr").glob("*.nii.gz")}
    images = {p.name[: -len("_0000.nii.gz")] for p in (root / "imagesTr").glob("*_0000.nii.gz")}
    if labels != images:
        odd = sorted(labels ^ images)
        raise SlimdiffInputError(
            f"{shown}: imagesTr/ and labelsTr/ disagree on {len(odd)} case(s), e.g. {odd[0]!r}; "
            "dataset.json cannot count them"
        )
    return len(labels)


def export_samples(
    npz_paths: list[str | Path],
    out_dir: str | Path,
    fmt: str = "nnunet",
    tau: float = 0.0,
    dataset_name: str = "SlimDiffSynthetic",
    only_lesion: bool = False,
    append: bool = False,
) -> int:
    """Write the pairs of the sample files into `out_dir`; return how many this call added."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use nnunet or nifti")
    paths = sorted(dict.fromkeys(Path(p).resolve() for p in npz_paths))  # a file named twice counts once
    if not paths:
        raise MissingInputError("no sample files to export")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    existing = out.is_dir() and any(out.iterdir())
    if existing and not append:
        raise OutputExistsError(
            f"{out}: not empty; export to a new or empty folder, or pass --append to add these cases to it"
        )
    if existing:
        _check_appendable(out, fmt, dataset_name, tau)

    count, sources = 0, {}
    with atomic_dir(out) as tmp:
        if existing:
            top = str(out)
            shutil.copytree(
                out,
                tmp,
                copy_function=_link_or_copy,
                dirs_exist_ok=True,
                ignore=lambda d, names: ["dataset.json"] if d == top and "dataset.json" in names else [],
            )
        if fmt == "nnunet":
            (tmp / "imagesTr").mkdir(exist_ok=True)
            (tmp / "labelsTr").mkdir(exist_ok=True)
        for path in paths:
            s = read_samples(path)
            spacing = s["meta"].get("spacing_mm") or [1.0, 1.0, 1.0]
            affine = np.diag([*spacing[:3], 1.0])
            for i in range(len(s["seed"])):
                mask = (s["masks"][i].astype(np.float32) > tau).astype(np.uint8)
                if only_lesion and not mask.any():
                    continue
                case = case_id(dataset_name, s["meta"], s["z_bin"][i], s["class"][i], s["k"][i])
                if case in sources:
                    raise SlimdiffInputError(
                        f"{path}: sample {i} has case id {case}, as a sample of {sources[case]} does: both record "
                        "the same run, fold, replica, seed, z-bin, class and k (a copy of the same samples?)"
                    )
                sources[case] = path
                image_name, label_name = case_files(fmt, case)
                if (tmp / image_name).exists() or (tmp / label_name).exists():
                    raise OutputExistsError(
                        f"{out / label_name}: case {case} is already in the dataset; it is not written over "
                        "(these samples were exported there before?)"
                    )
                image = s["images"][i].astype(np.float32)
                nib.save(nib.Nifti1Image(image[:, :, None], affine), tmp / image_name)
                nib.save(nib.Nifti1Image(mask[:, :, None], affine), tmp / label_name)
                count += 1
        if fmt == "nnunet":
            total = _count_nnunet_cases(tmp, out)
            write_text(tmp / "dataset.json", json.dumps(_dataset_json(dataset_name, tau, total), indent=2) + "\n")
            log.info("%s: %d cases in the dataset (%d added)", out, total, count)
    return count
