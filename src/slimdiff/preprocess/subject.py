"""One subject through the stage: reorient, extract the brain, N4, mask, KDE; write BIDS derivatives.

Output, built in a temporary folder and swapped into place whole (a killed job leaves nothing that looks
finished)::

    <out>/sub-X/anat/sub-X_desc-preproc_FLAIR.nii.gz      skull-stripped, bias-corrected, normalised (float32)
    <out>/sub-X/anat/sub-X_desc-preproc_FLAIR.json        sidecar: tools, versions, weights sha256, settings, QC
    <out>/sub-X/anat/sub-X_desc-brain_mask.nii.gz         brain mask (uint8)
    <out>/sub-X/anat/sub-X_desc-preproc_FLAIR_roi.nii.gz  lesion ROI, values unchanged, on the FLAIR's grid
    <out>/sub-X/figures/sub-X_desc-brain_mask.png         mask contour on three orthogonal views

The names are those :mod:`slimdiff.data.ingest` reads (the FLAIR ends in ``_FLAIR``, its ROI adds ``_roi``), so
the cache reads the derivatives like a raw cohort. A subject that cannot be preprocessed raises
:class:`PreprocessError`; with ``on_bad_subject: skip`` its folder holds only the sidecar, with the reason.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from slimdiff import provenance
from slimdiff.data.ingest import DataError, Subject, check_same_grid, read_nifti, split_nifti
from slimdiff.io import atomic_dir, write_json
from slimdiff.preprocess import brain, orient
from slimdiff.preprocess.errors import PreprocessError

log = logging.getLogger(__name__)

MIN_MASK_ML = 1.0  # below this a "brain" mask is an extraction failure whatever the QC range says


def names(sid: str) -> dict[str, str]:
    return {
        "flair": f"anat/{sid}_desc-preproc_FLAIR.nii.gz",
        "sidecar": f"anat/{sid}_desc-preproc_FLAIR.json",
        "mask": f"anat/{sid}_desc-brain_mask.nii.gz",
        "roi": f"anat/{sid}_desc-preproc_FLAIR_roi.nii.gz",
        "figure": f"figures/{sid}_desc-brain_mask.png",
    }


# Acquisition fields of the raw FLAIR's JSON sidecar that describe the data, not the processing: copied into the
# derivative's sidecar, which is the one data.cohort reads beside the preprocessed FLAIR (MRAcquisitionType for
# data.cohort.acquisition, SpacingBetweenSlices and SliceThickness for max_slice_spacing_mm). Without them
# `data.cohort.acquisition: [3D]` would exclude every preprocessed subject.
SOURCE_SIDECAR_FIELDS = (
    "MRAcquisitionType",
    "SpacingBetweenSlices",
    "SliceThickness",
    "Manufacturer",
    "ManufacturersModelName",
    "MagneticFieldStrength",
    "PulseSequenceType",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
)


def source_acquisition(image: Path) -> dict:
    """The SOURCE_SIDECAR_FIELDS of the raw FLAIR's sidecar (same name, .json), {} when it has none.

    An unreadable sidecar is a warning, not an error: data.cohort treats it the same way, and a cohort that
    selects nothing by these fields must not stop on one."""
    import json

    from slimdiff.data.cohort import sidecar_path

    side = sidecar_path(Path(image))
    if not side.is_file():
        return {}
    try:
        fields = json.loads(side.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read the JSON sidecar, its acquisition fields are not carried over (%s)", side, exc)
        return {}
    if not isinstance(fields, dict):
        return {}
    return {k: fields[k] for k in SOURCE_SIDECAR_FIELDS if k in fields}


def stage_enabled(cfg: dict) -> bool:
    """Whether the stage runs at all: with every step off it would only copy the files, so it is skipped."""
    return cfg["brain_extraction"]["backend"] != "none" or cfg["n4"]["enabled"] or cfg["kde"]["enabled"]


def process(subject: Subject, cfg: dict) -> tuple[dict[str, nib.Nifti1Image], dict]:
    """(images by name, sidecar) of one subject; `cfg` is the validated `preprocess` section."""
    sid = subject.subject_id
    if subject.image is None:
        raise PreprocessError(subject.source or sid, f"subject {sid} is listed but has no FLAIR file", sid)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data, affine = read_nifti(subject.image, "FLAIR image")
    raw = nib.Nifti1Image(data, affine)
    flair = orient.to_canonical(raw)
    image = np.asarray(flair.dataobj, dtype=np.float32)
    spacing = tuple(float(z) for z in flair.header.get_zooms()[:3])
    roi = None
    if subject.mask is not None:
        roi_data, roi_affine = read_nifti(subject.mask, "lesion mask")
        check_same_grid(subject.mask, "lesion mask", roi_data.shape, roi_affine, data.shape, affine, subject.image)
        roi = np.asarray(orient.to_canonical(nib.Nifti1Image(roi_data, roi_affine)).dataobj)
    timings["read_reorient_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    be = cfg["brain_extraction"]
    mask_path = _mask_file(subject, be["mask_suffix"]) if be["backend"] == "mask-file" else None
    mask, extraction = brain.extract(be["backend"], flair, subject.image, mask_path, be["hd_bet"], be["synthstrip"])
    timings["brain_extraction_s"] = time.perf_counter() - t0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    volume_ml = float(mask.sum()) * voxel_ml
    if volume_ml < MIN_MASK_ML:
        raise PreprocessError(
            subject.image, f"brain mask of {volume_ml:.2f} ml is empty or tiny (backend {be['backend']})", sid
        )

    qc: dict = {"brain_volume_ml": round(volume_ml, 2), "orientation_in": orient.axcodes(affine)}
    qc["voxel_mm"] = [round(s, 4) for s in spacing]
    steps: dict = {"reorient": "RAS (nibabel as_closest_canonical)", "brain_extraction": extraction}
    if cfg["n4"]["enabled"]:
        from slimdiff.preprocess.bias import n4_correct

        t0 = time.perf_counter()
        n4cfg = {k: v for k, v in cfg["n4"].items() if k != "enabled"}
        result = n4_correct(image, mask, spacing, **n4cfg)
        image = result.image
        qc["n4_field_min"], qc["n4_field_max"] = (round(v, 4) for v in result.field_range(mask))
        steps["n4"] = {"tool": "SimpleITK N4BiasFieldCorrectionImageFilter", "settings": n4cfg}
        timings["n4_s"] = time.perf_counter() - t0
    image = np.where(mask, image, 0.0).astype(np.float32)
    if cfg["kde"]["enabled"]:
        from slimdiff.preprocess.kde import kde_normalise

        t0 = time.perf_counter()
        result = kde_normalise(image, mask, cfg["kde"]["peak_value"], cfg["kde"]["modality"])
        image = result.image
        qc["kde_peak_before"], qc["kde_peak_after"] = round(result.peak_before, 4), round(result.peak_after, 4)
        steps["kde"] = {"method": "KDE tissue-mode scaling (intensity-normalization KDENormalize)", **cfg["kde"]}
        timings["kde_s"] = time.perf_counter() - t0
    if roi is not None:
        lesion = roi > 0
        qc["lesion_voxels"] = int(lesion.sum())
        qc["lesion_inside_mask"] = round(float((lesion & mask).sum()) / max(1, int(lesion.sum())), 4)

    header = flair.header.copy()
    header.set_data_dtype(np.float32)
    images = {"flair": nib.Nifti1Image(image, flair.affine, header)}
    images["mask"] = _like(mask.astype(np.uint8), flair)
    if roi is not None:
        images["roi"] = _like(roi.astype(np.uint8) if np.isin(roi, (0, 1)).all() else roi, flair)
    sidecar = {
        **source_acquisition(subject.image),  # BIDS: a derivative's sidecar keeps the source's acquisition fields
        "subject": sid,
        "source": {"flair": str(subject.image), "roi": str(subject.mask) if subject.mask else None},
        "steps": steps,
        "settings": cfg,
        "qc": qc,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "versions": provenance.versions(),
        "created": provenance.timestamp(),
    }
    return images, sidecar


def _like(data: np.ndarray, ref: nib.Nifti1Image) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, ref.affine)
    img.header.set_xyzt_units("mm")
    return img


def _mask_file(subject: Subject, suffix: str) -> Path:
    """The user's brain mask beside the FLAIR: `suffix` replaces ``_FLAIR`` in its name."""
    stem, ext = split_nifti(subject.image.name)
    return subject.image.with_name(stem.replace("_FLAIR", suffix) + ext)


def write_subject(subject: Subject, cfg: dict, out_dir: str | Path, on_bad_subject: str = "stop") -> dict:
    """Preprocess `subject` into `out_dir` (the subject's own folder, replaced whole); return the sidecar.

    A bad subject raises under ``stop``; under ``skip`` the folder holds only the sidecar with ``rejected``."""
    out_dir = Path(out_dir)
    sid = subject.subject_id
    files = names(sid)
    try:
        images, sidecar = process(subject, cfg)
    except DataError as exc:
        if on_bad_subject == "stop":
            raise
        log.warning("skipping subject %s: %s: %s", sid, exc.path, exc.problem)
        sidecar = {"subject": sid, "rejected": {"file": exc.path, "problem": exc.problem}, "settings": cfg}
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / files["sidecar"], sidecar)
        return sidecar
    with atomic_dir(out_dir) as tmp:
        (tmp / "anat").mkdir()
        for name, img in images.items():
            nib.save(img, tmp / files[name])
        write_json(tmp / files["sidecar"], sidecar)
        from slimdiff.preprocess.qc import contour_figure

        # the head as read (reoriented like the derivatives), so the figure shows what the mask left out
        head = np.asarray(orient.to_canonical(nib.load(subject.image)).dataobj, dtype=np.float32)
        contour_figure(
            head[..., 0] if head.ndim == 4 else head,
            np.asarray(images["mask"].dataobj) > 0,
            tmp / files["figure"],
            title=f"{sid}: brain mask ({cfg['brain_extraction']['backend']}), {sidecar['qc']['brain_volume_ml']} ml",
            lesion=np.asarray(images["roi"].dataobj) > 0 if "roi" in images else None,
            output=np.asarray(images["flair"].dataobj),
        )
    return sidecar
