"""Find subjects in a raw cohort and read their volumes, refusing anything that is not what it claims.

Two layouts are understood:

* ``bids``: OpenNeuro ds004199 (FCD type II). ``participants.tsv`` (read with or without a UTF-8
  byte-order mark; the published one has it) with ``participant_id`` and ``group`` (``fcd`` | ``hc``);
  one ``sub-X/anat/sub-X[_acq-Y]_FLAIR.nii[.gz]`` per subject and, for patients, its lesion ROI
  ``*_FLAIR_roi.nii[.gz]`` in the same folder. Sessions (``sub-X/ses-Y/anat``) are searched too. The ROI
  is paired by the entities that matter, subject and session (its folder): the FLAIR's own name with
  ``_roi`` wins; otherwise the folder's only ROI is taken even if its ``acq-`` differs (ds004199's
  sub-00048 has an ``acq-T2sel`` FLAIR and an ``acq-32ch10`` ROI), with a warning, and the grid checks
  of :func:`load_volume` decide whether it really belongs to the FLAIR. Several candidate ROIs are an
  error. T1w volumes and JSON sidecars are not read.
* ``nnunet``: the upstream layout. ``imagesTr/<id>_<modality:04d>.nii.gz`` with ``labelsTr/<id>.nii.gz``;
  images without a label are controls; ``imagesTs``/``labelsTs`` are the predefined test set. The root may
  be one dataset folder or hold several ``Dataset*`` folders (e.g. patients and controls).

Every problem is a :class:`DataError` that names the file and says what is wrong with it.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from slimdiff.config import ConfigError
from slimdiff.errors import SlimdiffInputError

log = logging.getLogger(__name__)

PATIENT_GROUPS = {"fcd", "patient", "patients", "epilepsy", "lesion"}
CONTROL_GROUPS = {"hc", "control", "controls", "healthy"}


class DataError(SlimdiffInputError):
    """A raw input that cannot be used; the message starts with the offending path."""

    def __init__(self, path: str | Path, problem: str, subject: str | None = None):
        self.path, self.problem, self.subject = str(path), problem, subject
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Subject:
    subject_id: str
    group: str  # "fcd" or "hc"
    image: Path | None  # None: listed but no FLAIR found (reported when loaded)
    mask: Path | None = None
    brain_mask: Path | None = None
    predefined_split: str | None = None  # "test" for nnU-Net imagesTs
    source: Path | None = None  # the file that declared the subject (participants.tsv, imagesTr/...)

    @property
    def is_patient(self) -> bool:
        return self.group == "fcd"


@dataclass
class Volume:
    """A subject's arrays in their own voxel grid, with the affine they share."""

    image: np.ndarray
    mask: np.ndarray | None  # bool
    affine: np.ndarray


def discover(raw_dir: str | Path, layout: str, ingest: dict) -> list[Subject]:
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(raw_dir, "raw data directory does not exist")
    if layout == "bids":
        subjects = _discover_bids(raw_dir, ingest)
    elif layout == "nnunet":
        subjects = _discover_nnunet(raw_dir, ingest)
    else:
        raise ConfigError(f"unknown layout {layout!r}: expected 'bids' or 'nnunet'")
    if not subjects:
        raise DataError(raw_dir, f"no subjects found for layout {layout!r}")
    return subjects


def _discover_bids(root: Path, ingest: dict) -> list[Subject]:
    tsv = root / "participants.tsv"
    on_disk = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
    if tsv.exists():
        table = read_participants(tsv)
        if "participant_id" not in table.columns:
            raise DataError(tsv, "has no participant_id column")
        ids = table["participant_id"].str.strip()
        dupes = sorted(set(ids[ids.duplicated()]))
        if dupes:
            raise DataError(tsv, f"duplicate subjects: {', '.join(dupes)}")
        groups = dict(zip(ids, table["group"].str.strip().str.lower(), strict=True)) if "group" in table else {}
        listed = list(ids)
        extra = sorted(set(on_disk) - set(listed))
        if extra:
            log.warning("%s: subjects on disk but not listed, ignored: %s", tsv, ", ".join(extra))
    else:
        log.warning("%s: not found; using the sub-* folders and inferring groups from ROI files", tsv)
        listed, groups = on_disk, {}

    subjects = []
    for sid in listed:
        flairs = _bids_files(root / sid, sid, "_FLAIR")
        if len(flairs) > 1:
            raise DataError(root / sid, f"several FLAIR volumes, cannot choose: {', '.join(p.name for p in flairs)}")
        image = flairs[0] if flairs else None
        mask = brain = None
        if image is not None:
            stem, ext = split_nifti(image.name)
            mask = _pair_roi(image, _bids_files(root / sid, sid, "_FLAIR_roi"))
            if ingest.get("brain_mask_suffix"):
                candidate = image.with_name(stem.replace("_FLAIR", ingest["brain_mask_suffix"]) + ext)
                brain = candidate if candidate.exists() else None
        group = _group(groups.get(sid), mask is not None, tsv)
        subjects.append(Subject(sid, group, image, mask, brain, source=tsv if tsv.exists() else root / sid))
    return subjects


def read_participants(tsv: Path) -> pd.DataFrame:
    """participants.tsv as strings. The published ds004199 file starts with a UTF-8 byte-order mark; pandas'
    parsers drop it on their own today, ``utf-8-sig`` says so explicitly (a reader that keeps it would name
    the first column "\\ufeffparticipant_id" and lose every subject)."""
    try:
        table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(tsv, f"cannot read as a UTF-8 tab-separated table ({type(exc).__name__}: {exc})") from None
    table.columns = table.columns.str.strip()
    return table


_NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def split_nifti(name: str) -> tuple[str, str]:
    """("sub-X_acq-Y_FLAIR", ".nii.gz") from a NIfTI file name; the extension is "" for anything else.

    Public: the preprocessing stage and the cohort selection name their files (masks, sidecars) from it too."""
    for ext in _NIFTI_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    return name, ""


def _bids_files(subject_dir: Path, sid: str, suffix: str) -> list[Path]:
    """The subject's NIfTI files under ``anat`` (any session) whose name ends in `suffix` (``_FLAIR`` or
    ``_FLAIR_roi``). Matching the whole suffix keeps T1w volumes, JSON sidecars and ROIs of other
    modalities out, and ``_FLAIR`` alone never matches ``_FLAIR_roi``."""
    found = []
    for path in subject_dir.glob(f"**/anat/{sid}_*"):
        stem, ext = split_nifti(path.name)
        if ext and stem.endswith(suffix) and path.is_file():
            found.append(path)
    return sorted(found)


def _pair_roi(image: Path, rois: list[Path]) -> Path | None:
    """The lesion ROI that belongs to FLAIR `image`, among the subject's `rois`, or None.

    Subject and session are what tie an ROI to its FLAIR, so only ROIs in the FLAIR's own folder are
    candidates (the subject has one FLAIR, see the caller). The FLAIR's own name with ``_roi`` wins. Other
    entities, ``acq-`` above all, are labels the curators did not always keep in step (ds004199's sub-00048:
    ``acq-T2sel`` FLAIR, ``acq-32ch10`` ROI), so a single candidate with another name is accepted with a
    warning; whether it really lies on the FLAIR's grid is checked when the volumes are read. Two or more
    candidates cannot be told apart by name and are an error.
    """
    stem, _ = split_nifti(image.name)
    here = [p for p in rois if p.parent == image.parent]
    elsewhere = [p for p in rois if p.parent != image.parent]
    if elsewhere:
        log.warning(
            "%s: ROI files outside the FLAIR's folder (another session?) are not paired with it: %s",
            image,
            ", ".join(str(p) for p in elsewhere),
        )
    exact = [p for p in here if split_nifti(p.name)[0] == f"{stem}_roi"]
    if len(exact) == 1:
        others = [p.name for p in here if p != exact[0]]
        if others:
            log.warning(
                "%s: other ROI files beside its own %s are ignored: %s", image, exact[0].name, ", ".join(others)
            )
        return exact[0]
    candidates = exact or here
    if len(candidates) > 1:
        raise DataError(
            image, f"several lesion ROI files for this FLAIR, cannot choose: {', '.join(p.name for p in candidates)}"
        )
    if candidates:
        log.warning(
            "%s: no ROI named %s_roi; pairing the subject's only FLAIR ROI %s (the names differ in an entity "
            "such as acq-; its shape and affine are checked against the FLAIR when read)",
            image,
            stem,
            candidates[0].name,
        )
        return candidates[0]
    return None


def _group(declared: str | None, has_roi: bool, tsv: Path) -> str:
    if declared is None or declared in ("", "n/a"):
        return "fcd" if has_roi else "hc"
    if declared in PATIENT_GROUPS:
        return "fcd"
    if declared in CONTROL_GROUPS:
        return "hc"
    raise DataError(tsv, f"unknown group {declared!r} (expected one of fcd, hc)")


_NNUNET_IMAGE = re.compile(r"^(?P<id>.+)_(?P<mod>\d{4})\.nii(\.gz)?$")


def _discover_nnunet(root: Path, ingest: dict) -> list[Subject]:
    datasets = (
        [root]
        if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir()
        else sorted(p for p in root.glob("Dataset*") if p.is_dir())
    )
    modality = int(ingest.get("nnunet_modality", 0))
    subjects: dict[str, Subject] = {}
    for ds in datasets:
        for images, labels, split in (("imagesTr", "labelsTr", None), ("imagesTs", "labelsTs", "test")):
            for image in sorted((ds / images).glob("*.nii*")):
                match = _NNUNET_IMAGE.match(image.name)
                if not match:
                    raise DataError(image, "name does not follow <id>_<modality:04d>.nii.gz")
                if int(match["mod"]) != modality:
                    continue
                sid = match["id"]
                label = next((p for p in (ds / labels).glob(f"{sid}.nii*")), None)
                if sid in subjects:
                    raise DataError(image, f"duplicate subject {sid!r} (also {subjects[sid].image})")
                group = "fcd" if label is not None else "hc"
                subjects[sid] = Subject(sid, group, image, label, None, split, source=image)
    return [subjects[k] for k in sorted(subjects)]


def read_nifti(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI fully (so a truncated file fails here, not later) and return (data, affine).

    Public so that every reader of raw volumes (the cache, the preprocessing stage) refuses the same broken
    files with the same one-line DataError."""
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(path, f"cannot read {what} as NIfTI ({type(exc).__name__}: {exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(path, f"{what} must be a 3D volume, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise DataError(path, f"{what} contains {int((~np.isfinite(data)).sum())} NaN or Inf voxels")
    return data, img.affine


def check_same_grid(path: Path, what: str, shape, affine, ref_shape, ref_affine, ref_path: Path) -> None:
    """A DataError naming `path` unless its shape and affine are those of the image at `ref_path` (a mask on
    another grid would be silently misaligned)."""
    if tuple(shape) != tuple(ref_shape):
        raise DataError(path, f"{what} shape {tuple(shape)} does not match image {ref_path.name} {tuple(ref_shape)}")
    if not np.allclose(affine, ref_affine, atol=1e-3, rtol=1e-4):
        raise DataError(path, f"{what} affine does not match image {ref_path.name}:\n{affine}\nvs\n{ref_affine}")


def load_volume(subject: Subject, ingest: dict) -> Volume:
    """Read and check one subject's FLAIR, lesion mask and optional brain mask."""
    if subject.image is None:
        where = subject.source or subject.subject_id
        raise DataError(where, f"subject {subject.subject_id} is listed but has no FLAIR file", subject.subject_id)
    image, affine = read_nifti(subject.image, "FLAIR image")

    mask = None
    if subject.is_patient:
        if subject.mask is None:
            raise DataError(subject.image, "patient (group fcd) without a lesion mask (_roi / labelsTr file)")
        raw_mask, mask_affine = read_nifti(subject.mask, "lesion mask")
        check_same_grid(subject.mask, "lesion mask", raw_mask.shape, mask_affine, image.shape, affine, subject.image)
        values = np.unique(raw_mask)
        if not np.isin(values, (0.0, 1.0)).all():
            shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
            raise DataError(subject.mask, f"lesion mask is not binary (values {shown})")
        mask = raw_mask > 0.5
        if not mask.any():
            raise DataError(subject.mask, "lesion mask of a patient is empty")

    if subject.brain_mask is not None:
        brain, brain_affine = read_nifti(subject.brain_mask, "brain mask")
        check_same_grid(subject.brain_mask, "brain mask", brain.shape, brain_affine, image.shape, affine, subject.image)
        image = image * (brain > 0)
    elif not ingest.get("skull_stripped", True):
        raise DataError(
            subject.image,
            "volumes are declared not skull-stripped (data.ingest.skull_stripped: false) but no brain mask "
            f"was found (data.ingest.brain_mask_suffix: {ingest.get('brain_mask_suffix')!r})",
        )
    return Volume(image=image, mask=mask, affine=affine)
