"""Synthetic FCD type II cohort built from the MNI152 2009 template that ships inside nilearn.

Real FCD data cannot be downloaded here, so the embedded default makes a cohort with real anatomy and
enough subject-to-subject variation to exercise the same ingest path as OpenNeuro ds004199:

* anatomy: nilearn's MNI152 2009a grey/white-matter probability maps and brain extent (1 mm);
* FLAIR-like contrast: CSF dark, grey matter brighter than white matter;
* per subject: a smooth random elastic warp, a small rotation/scale/shift, a multiplicative bias field,
  Rician noise and a global intensity scale, written on a voxel grid with random spacing and a random
  orientation code, so resampling and reorientation in the cache really happen;
* patients: one FCD type II lesion across the grey/white junction (cortical thickening, blurred junction,
  hyperintense subcortical signal, sometimes a tapering transmantle tail toward the lateral ventricle),
  by default 0.5 to 15 cm^3 (a config range), with its ROI mask.

Every subject draws from its own generator seeded by (seed, subject index), so the cohort does not depend
on how many processes build it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel import orientations
from scipy import ndimage
from tqdm import tqdm

from slimdiff.config import ConfigError
from slimdiff.errors import MissingInputError, OutputExistsError
from slimdiff.io import atomic_dir, write_text

log = logging.getLogger(__name__)

# FLAIR-like tissue levels (relative units) and their per-subject jitter.
CSF_LEVEL, GM_LEVEL, WM_LEVEL = 0.12, 0.80, 0.58
ORIENTATIONS = ("RAS", "LPS", "LAS", "RPI", "ASL", "PIR")
# Defaults of data.synthetic (config/schema.yaml): FCD type II volumes as reported for ds004199, and the
# subcortical hyperintensity in the same relative units as the tissue levels.
LESION_VOLUME_ML = (0.5, 15.0)
LESION_CONTRAST = 0.40
# Where an as-acquired cohort keeps each subject's true brain mask (outside the sub-* folders the ingest reads).
TRUTH_DIR = "derivatives/truth"


@dataclass(frozen=True)
class Template:
    """MNI152 2009a probability maps on the template's 1 mm grid (RAS)."""

    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    junction_ijk: np.ndarray  # candidate lesion centres: cortical grey/white junction voxels
    ventricle_ijk: np.ndarray  # lateral-ventricle voxels, targets of transmantle tails
    brain_bbox_mm: np.ndarray  # (2, 3) world min/max of the brain


def _nilearn_file(kind: str) -> Path:
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    if not path.exists():
        raise MissingInputError(f"{path}: MNI152 template file missing from the installed nilearn package")
    return path


@functools.cache
def load_template() -> Template:
    t1_img = nib.load(_nilearn_file("t1"))
    affine = t1_img.affine
    brain = (np.asarray(t1_img.dataobj) > 0).astype(np.float32)
    gm = np.asarray(nib.load(_nilearn_file("gm")).dataobj, dtype=np.float32) / 255.0
    wm = np.asarray(nib.load(_nilearn_file("wm")).dataobj, dtype=np.float32) / 255.0
    gm *= brain
    wm *= brain

    ijk = np.indices(brain.shape, dtype=np.float32).reshape(3, -1)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape((3, *brain.shape))
    x, y, z = world
    # Cortical junction in the cerebrum: both tissues present after light smoothing, away from the
    # midline and above the cerebellum/brainstem.
    gm_s, wm_s = ndimage.gaussian_filter(gm, 1.0), ndimage.gaussian_filter(wm, 1.0)
    junction = (gm_s > 0.35) & (wm_s > 0.35) & (np.abs(x) > 15) & (z > -20) & (brain > 0)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * brain
    ventricle = (csf > 0.85) & (np.abs(x) < 28) & (z > 0) & (z < 30) & (y > -45) & (y < 25)
    inside = np.argwhere(brain > 0)
    lo = affine[:3, :3] @ inside.min(0) + affine[:3, 3]
    hi = affine[:3, :3] @ inside.max(0) + affine[:3, 3]
    return Template(
        gm=gm,
        wm=wm,
        brain=brain,
        affine=affine,
        junction_ijk=np.argwhere(junction),
        ventricle_ijk=np.argwhere(ventricle),
        brain_bbox_mm=np.stack([lo, hi]),
    )


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    ax, ay, az = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int, sigma: float) -> np.ndarray:
    """Unit-std smooth random field: coarse Gaussian noise, smoothed, upsampled linearly (a cubic upsampling
    was two thirds of a subject's time, for no visible difference in a field this smooth)."""
    coarse_shape = tuple(max(2, -(-s // coarse)) for s in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma, mode="wrap")
    field = ndimage.zoom(field, [s / c for s, c in zip(shape, coarse_shape, strict=True)], order=1)
    field = field[tuple(slice(0, s) for s in shape)]
    return (field - field.mean()) / (field.std() + 1e-8)


@dataclass
class Lesion:
    """Lesion maps on a crop of the template grid; `origin` is the crop's first template voxel."""

    origin: np.ndarray
    roi: np.ndarray  # binary lesion (core + tail)
    d_gm: np.ndarray  # change of the grey-matter map
    d_wm: np.ndarray  # change of the white-matter map
    hyper: np.ndarray  # additive FLAIR hyperintensity weight
    volume_ml: float
    gm_fraction: float  # share of lesion voxels that are mostly grey matter: across the junction if in (0, 1)
    transmantle: bool
    centre_mm: np.ndarray


def make_lesion(rng: np.random.Generator, tpl: Template, volume_ml: tuple[float, float] = LESION_VOLUME_ML) -> Lesion:
    """An irregular FCD type II lesion straddling the cortical grey/white junction, log-uniform in volume."""
    centre = tpl.junction_ijk[rng.integers(len(tpl.junction_ijk))]
    volume = float(np.exp(rng.uniform(*np.log(np.array(volume_ml) * 1000.0))))  # mm^3 = voxels
    radius = (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0)
    transmantle = bool(rng.random() < 0.4)
    vent = tpl.ventricle_ijk[np.argmin(((tpl.ventricle_ijk - centre) ** 2).sum(1))]

    lo, crop = _lesion_crop(tpl.gm.shape, centre, vent if transmantle else centre, radius)
    gm, wm = tpl.gm[crop], tpl.wm[crop]
    tissue = (gm + wm) > 0.35
    rel = np.indices(gm.shape, dtype=np.float32).reshape(3, -1) - (centre - lo)[:, None]  # offsets from the centre
    roi = _lesion_core(rng, rel, tissue, volume, radius)
    if transmantle:
        roi = roi | _transmantle_tail(rel, vent - centre, radius, tissue, wm)
    d_gm, d_wm, hyper = _lesion_tissue_changes(roi, gm, wm)

    lesion_gm = gm[roi] > 0.5
    return Lesion(
        origin=lo,
        roi=roi,
        d_gm=d_gm,
        d_wm=d_wm,
        hyper=hyper,
        volume_ml=float(roi.sum()) / 1000.0,
        gm_fraction=float(lesion_gm.mean()) if roi.any() else 0.0,
        transmantle=transmantle,
        centre_mm=tpl.affine[:3, :3] @ centre + tpl.affine[:3, 3],
    )


def _lesion_crop(grid_shape, centre: np.ndarray, end: np.ndarray, radius: float) -> tuple[np.ndarray, tuple]:
    """The crop of the template grid (first voxel, slices) that holds the lesion from `centre` to `end`."""
    pad = int(np.ceil(2.2 * radius)) + 6
    lo = np.minimum(centre, end) - pad
    hi = np.maximum(centre, end) + pad + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, grid_shape)
    return lo, tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _lesion_core(rng: np.random.Generator, rel: np.ndarray, tissue: np.ndarray, volume: float, radius: float):
    """The lesion's core: about `volume` tissue voxels of a randomly stretched, rotated, noisy ball, one piece."""
    axes = np.exp(rng.uniform(-0.35, 0.35, 3))
    local = (_rotation(rng, 180.0).T @ rel) / axes[:, None]
    dist = np.sqrt((local**2).sum(0)).reshape(tissue.shape)
    noise = ndimage.gaussian_filter(rng.standard_normal(tissue.shape), 2.5)
    score = dist + 0.45 * radius * noise / (noise.std() + 1e-8)
    score[~tissue] = np.inf
    n_core = min(int(round(volume)), int(np.isfinite(score).sum()))
    core = np.zeros(tissue.shape, bool)
    core.flat[np.argsort(score, axis=None)[:n_core]] = True
    core = ndimage.binary_opening(core, iterations=1) | (core & (dist < 0.5 * radius))
    labels, n = ndimage.label(core)
    if n > 1:  # keep the component that holds most of the lesion
        core = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return core


def _transmantle_tail(rel: np.ndarray, to_ventricle: np.ndarray, radius: float, tissue: np.ndarray, wm: np.ndarray):
    """A tail through white matter, 85 % of the way toward the ventricle, narrowing from 0.45 radius to 1 voxel."""
    seg = to_ventricle.astype(np.float32)
    length2 = float(seg @ seg) + 1e-6
    t = np.clip((seg @ rel) / length2, 0.0, 0.85)
    closest = t[None, :] * seg[:, None]
    d_seg = np.sqrt(((rel - closest) ** 2).sum(0)).reshape(wm.shape)
    taper = (0.45 * radius * (1.0 - t / 0.85) + 1.0 * (t / 0.85)).reshape(wm.shape)
    return (d_seg < taper) & tissue & (wm > 0.3)


def _lesion_tissue_changes(roi: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> tuple[np.ndarray, ...]:
    """Changes of the grey- and white-matter maps, and the hyperintensity weight, that draw the lesion (float32)."""
    soft = ndimage.gaussian_filter(roi.astype(np.float32), 1.2)
    # Cortical thickening: grey-matter signal extends into the white matter under the lesion.
    gm_thick = gm + 0.55 * soft * wm
    wm_thick = wm * (1.0 - 0.55 * soft)
    # Blurred grey/white boundary inside the lesion.
    gm_new = (1 - soft) * gm_thick + soft * ndimage.gaussian_filter(gm_thick, 1.8)
    wm_new = (1 - soft) * wm_thick + soft * ndimage.gaussian_filter(wm_thick, 1.8)
    # Hyperintense subcortical signal, strongest in the white-matter part and along the tail.
    hyper = soft * np.clip(wm, 0.0, 1.0)
    return (gm_new - gm).astype(np.float32), (wm_new - wm).astype(np.float32), hyper.astype(np.float32)


@dataclass
class SyntheticSubject:
    flair: nib.Nifti1Image
    roi: nib.Nifti1Image | None
    info: dict
    brain_mask: nib.Nifti1Image | None = None  # the true brain mask of an as-acquired head (None when stripped)
    # Pure white matter (probability >= 0.9, away from the lesion) of an as-acquired head: where the benchmark
    # measures N4's and the KDE peak's effect on white-matter intensities against a known answer.
    wm_mask: nib.Nifti1Image | None = None


def participant_ids(patients: int, controls: int, **_) -> list[str]:
    """The cohort's subject names (patients first), as write_cohort writes them."""
    return [f"sub-{i + 1:05d}" for i in range(patients + controls)]


def make_subject(
    seed: int,
    index: int,
    patient: bool,
    voxel_mm: tuple[float, float],
    lesion_volume_ml: tuple[float, float] = LESION_VOLUME_ML,
    lesion_contrast: float = LESION_CONTRAST,
    variability: float = 1.0,
    as_acquired: bool = False,
) -> SyntheticSubject:
    """One subject, fully determined by its arguments. `as_acquired`: a head as the scanner writes it (see
    :func:`_as_acquired_intensities`) instead of a skull-stripped brain; the same brain either way."""
    rng = np.random.default_rng([seed, index])
    tpl = load_template()
    spacing, shape, out_affine = _scanner_grid(rng, tpl, voxel_mm, 30.0 if as_acquired else 14.0)
    warp = _head_warp(rng, tpl, spacing, shape, out_affine, variability)

    gm, wm, brain = warp.sample(tpl.gm), warp.sample(tpl.wm), warp.sample(tpl.brain)
    hyper = np.zeros(shape, np.float32)
    roi = None
    info: dict = {"group": "fcd" if patient else "hc"}
    if patient:
        lesion = make_lesion(rng, tpl, lesion_volume_ml)
        gm, wm, hyper, roi = _add_lesion(lesion, warp, gm, wm)
        info.update(
            lesion_volume_ml=round(float(roi.sum() * np.prod(spacing)) / 1000.0, 3),
            lesion_gm_fraction=round(lesion.gm_fraction, 3),
            transmantle=lesion.transmantle,
            lesion_centre_mni=";".join(f"{v:.0f}" for v in lesion.centre_mm),
        )

    flair = _flair_intensities(rng, brain, gm, wm, hyper, spacing, lesion_contrast)
    if as_acquired:  # its own generator: the stripped cohort's random stream stays as it was
        flair = _as_acquired_intensities(np.random.default_rng([seed, index, 1]), flair, brain, spacing)
    code, flair_img, roi_img = _in_random_orientation(rng, flair, roi, out_affine)
    info.update(orientation=code, voxel_mm=";".join(f"{s:.3f}" for s in spacing))
    truth = wm_truth = None
    if as_acquired:  # a given orientation code draws nothing from rng: the cohort stays as it was
        truth = _in_random_orientation(rng, (brain >= 0.5).astype(np.uint8), None, out_affine, code)[1]
        pure_wm = (np.clip(wm, 0, 1) >= 0.9) & (brain >= 0.5)
        if roi is not None:
            pure_wm &= ~ndimage.binary_dilation(roi, iterations=2)
        wm_truth = _in_random_orientation(rng, pure_wm.astype(np.uint8), None, out_affine, code)[1]
    return SyntheticSubject(flair=flair_img, roi=roi_img, info=info, brain_mask=truth, wm_mask=wm_truth)


def _scanner_grid(rng: np.random.Generator, tpl: Template, voxel_mm: tuple[float, float], margin_mm: float = 14.0):
    """(spacing, shape, affine): random voxel size, RAS-aligned field of view around the brain, randomly shifted."""
    spacing = rng.uniform(voxel_mm[0], voxel_mm[1], 3)
    fov_lo = tpl.brain_bbox_mm[0] - margin_mm + rng.uniform(-4, 4, 3)
    fov_hi = tpl.brain_bbox_mm[1] + margin_mm + rng.uniform(-4, 4, 3)
    shape = tuple(int(np.ceil(n)) for n in (fov_hi - fov_lo) / spacing)
    out_affine = np.eye(4)
    out_affine[:3, :3] = np.diag(spacing)
    out_affine[:3, 3] = fov_lo
    return spacing, shape, out_affine


@dataclass
class _Warp:
    """Where each voxel of the subject's grid lies in the template, in template voxel coordinates."""

    tpl_ijk: np.ndarray  # (3, n voxels)
    shape: tuple[int, ...]

    def sample(self, volume: np.ndarray, origin: np.ndarray | None = None, order: int = 1) -> np.ndarray:
        """A template-grid volume (or a crop of it starting at `origin`) on the subject's grid."""
        coords = self.tpl_ijk if origin is None else self.tpl_ijk - origin[:, None]
        return ndimage.map_coordinates(volume, coords, order=order, cval=0.0).reshape(self.shape)


def _head_warp(rng: np.random.Generator, tpl: Template, spacing, shape, out_affine, variability: float) -> _Warp:
    """Head pose and shape: template point = A (subject point - c) + c + shift + elastic displacement.

    `variability` scales every pose and shape amplitude (1 = +-6 deg, +-8 % size, +-4 mm, 2.5 mm elastic).
    """
    centre = tpl.brain_bbox_mm.mean(0)
    scale = (1.0 + variability * rng.uniform(-0.08, 0.08)) * np.exp(variability * rng.uniform(-0.04, 0.04, 3))
    a_mat = _rotation(rng, 6.0 * variability) @ np.diag(1.0 / scale)
    shift = variability * rng.uniform(-4.0, 4.0, 3)
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = out_affine[:3, :3] @ ijk + out_affine[:3, 3:4]
    tpl_world = a_mat @ (world - centre[:, None]) + centre[:, None] + shift[:, None]
    coarse = max(2, int(round(18.0 / spacing.mean())))
    for axis in range(3):
        tpl_world[axis] += 2.5 * variability * _smooth_field(rng, shape, coarse, 1.0).ravel()
    inv = np.linalg.inv(tpl.affine)
    return _Warp(inv[:3, :3] @ tpl_world + inv[:3, 3:4], shape)


def _add_lesion(lesion: Lesion, warp: _Warp, gm: np.ndarray, wm: np.ndarray):
    """(gm, wm, hyperintensity, roi) of the subject with the lesion drawn in."""
    gm = gm + warp.sample(lesion.d_gm, lesion.origin)
    wm = wm + warp.sample(lesion.d_wm, lesion.origin)
    hyper = warp.sample(lesion.hyper, lesion.origin)
    roi_weight = warp.sample(lesion.roi.astype(np.float32), lesion.origin)
    # On a coarse grid a thin lesion may never reach 0.5: then keep its strongest voxels.
    roi = roi_weight >= min(0.5, 0.5 * float(roi_weight.max()))
    return gm, wm, hyper, roi


def _flair_intensities(rng: np.random.Generator, brain, gm, wm, hyper, spacing, lesion_contrast: float) -> np.ndarray:
    """int16 FLAIR-like image: jittered tissue levels, lesion hyperintensity, bias field, gain, Rician noise."""
    levels = np.array([CSF_LEVEL, GM_LEVEL, WM_LEVEL]) * rng.uniform(0.95, 1.05, 3)
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    signal = brain * (levels[0] * csf + levels[1] * gm + levels[2] * wm) + lesion_contrast * hyper
    shape = signal.shape
    bias = np.exp(0.12 * _smooth_field(rng, shape, max(2, int(round(60.0 / spacing.mean()))), 1.0))
    gain = rng.uniform(400.0, 1500.0)
    sigma = rng.uniform(0.015, 0.035) * levels[2]
    real = signal * bias + sigma * rng.standard_normal(shape)
    imag = sigma * rng.standard_normal(shape)
    noisy = np.sqrt(real**2 + imag**2)  # magnitude of complex Gaussian noise: Rician
    noisy[brain < 0.5] = 0.0  # skull-stripped, like the paper's inputs
    return np.round(noisy * gain).astype(np.int16)


def _as_acquired_intensities(rng: np.random.Generator, stripped: np.ndarray, brain, spacing) -> np.ndarray:
    """The stripped FLAIR (int16) inside a head as acquired: a CSF rim, dark skull and bright scalp around the
    brain (at jittered thicknesses, in mm from the brain's edge), a stronger smooth multiplicative bias field
    over the whole head, Rician background noise and another scanner scale and offset."""
    outside = ndimage.distance_transform_edt(brain < 0.5, sampling=spacing)
    rim, skull, scalp = rng.uniform(1.5, 3.0), rng.uniform(4.0, 7.0), rng.uniform(4.0, 7.0)
    head = np.where(outside <= rim, 0.12, 0.0) + np.where((outside > rim) & (outside <= rim + skull), 0.04, 0.0)
    head += np.where((outside > rim + skull) & (outside <= rim + skull + scalp), rng.uniform(0.8, 1.0), 0.0)
    level = float(np.median(stripped[brain >= 0.5])) / WM_LEVEL  # the stripped image's gain
    head = ndimage.gaussian_filter(head * (brain < 0.5), 0.6 / np.asarray(spacing)) * level
    bias = np.exp(0.25 * _smooth_field(rng, stripped.shape, max(2, int(round(80.0 / np.mean(spacing)))), 1.0))
    sigma = 0.02 * level * WM_LEVEL
    real = (stripped.astype(np.float64) + head) * bias + sigma * rng.standard_normal(stripped.shape)
    noisy = np.hypot(real, sigma * rng.standard_normal(stripped.shape))
    scale = rng.uniform(0.5, 3.0)
    return np.clip(np.round(noisy * scale + rng.uniform(0, 20)), 0, np.iinfo(np.int16).max).astype(np.int16)


def _in_random_orientation(
    rng: np.random.Generator, flair: np.ndarray, roi: np.ndarray | None, out_affine, code: str | None = None
):
    """(orientation code, FLAIR image, ROI image or None), stored in a random orientation code (or `code`) so
    that the cache's reorientation is exercised."""
    code = ORIENTATIONS[rng.integers(len(ORIENTATIONS))] if code is None else code
    transform = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), orientations.axcodes2ornt(code))
    affine = out_affine @ orientations.inv_ornt_aff(transform, flair.shape)
    flair_img = nib.Nifti1Image(orientations.apply_orientation(flair, transform), affine)
    flair_img.header.set_xyzt_units("mm")
    roi_img = None
    if roi is not None:
        roi_img = nib.Nifti1Image(orientations.apply_orientation(roi.astype(np.uint8), transform), affine)
        roi_img.header.set_xyzt_units("mm")
    return code, flair_img, roi_img


def _build_one(args: tuple[int, int, bool, dict, str, str]) -> dict:
    seed, index, patient, look, participant, out_dir = args
    subject = make_subject(seed, index, patient, **look)
    anat = Path(out_dir) / participant / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    # as acquired: ds004199's names carry an acq- entity; the true brain mask goes where the ingest never looks
    stem = f"{participant}_acq-T2sel" if look.get("as_acquired") else participant
    nib.save(subject.flair, anat / f"{stem}_FLAIR.nii.gz")
    if subject.roi is not None:
        nib.save(subject.roi, anat / f"{stem}_FLAIR_roi.nii.gz")
    if subject.brain_mask is not None:
        truth = Path(out_dir) / TRUTH_DIR / participant / "anat"
        truth.mkdir(parents=True, exist_ok=True)
        nib.save(subject.brain_mask, truth / f"{participant}_desc-brain_mask.nii.gz")
        if subject.wm_mask is not None:
            nib.save(subject.wm_mask, truth / f"{participant}_label-WM_mask.nii.gz")
    return {"participant_id": participant, **subject.info}


def _replaceable(out_dir: Path) -> bool:
    """A folder write_cohort may replace: absent, empty, or a synthetic cohort written before."""
    if not out_dir.is_dir():
        return not out_dir.exists()
    if not any(out_dir.iterdir()):
        return True
    try:
        generated_by = json.loads((out_dir / "dataset_description.json").read_text()).get("GeneratedBy", [])
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(g, dict) and g.get("Name") == "slimdiff-synth" for g in generated_by)


def write_cohort(
    out_dir: str | Path,
    patients: int = 16,
    controls: int = 8,
    seed: int = 20261126,
    voxel_mm: tuple[float, float] = (0.9, 1.1),
    threads: int = 1,
    lesion_volume_ml: tuple[float, float] = LESION_VOLUME_ML,
    lesion_contrast: float = LESION_CONTRAST,
    variability: float = 1.0,
    as_acquired: bool = False,
) -> pd.DataFrame:
    """Write a ds004199-layout cohort to `out_dir` and return participants.tsv.

    A cohort written there before is replaced atomically; any other non-empty folder is refused.
    """
    if patients + controls == 0:
        raise ConfigError("synthetic cohort: need at least one patient or control")
    for name, (lo, hi) in (("voxel_mm", voxel_mm), ("lesion_volume_ml", lesion_volume_ml)):
        if not 0 < lo <= hi:
            raise ConfigError(f"synthetic cohort: {name} must be 0 < lo <= hi, got {[lo, hi]}")
    look = {
        "voxel_mm": tuple(voxel_mm),
        "lesion_volume_ml": tuple(lesion_volume_ml),
        "lesion_contrast": float(lesion_contrast),
        "variability": float(variability),
        "as_acquired": bool(as_acquired),
    }
    out_dir = Path(out_dir)
    if not _replaceable(out_dir):
        raise OutputExistsError(
            f"{out_dir}: exists and is not a synthetic cohort written before, so it is not replaced; "
            "choose a new or empty folder"
        )
    load_template()  # build once in the parent; forked workers inherit it
    with atomic_dir(out_dir) as tmp:
        ids = participant_ids(patients, controls)
        jobs = [(seed, i, i < patients, look, sid, str(tmp)) for i, sid in enumerate(ids)]
        workers = max(1, min(threads, len(jobs), os.cpu_count() or 1))
        if workers == 1:
            rows = [_build_one(j) for j in tqdm(jobs, desc="synthetic subjects", unit="subj")]
        else:
            with ProcessPoolExecutor(workers) as pool:
                rows = list(tqdm(pool.map(_build_one, jobs), total=len(jobs), desc="synthetic subjects", unit="subj"))
        table = pd.DataFrame(rows)
        rng = np.random.default_rng([seed, 10**6])
        table.insert(2, "age", rng.integers(4, 60, len(table)))
        table.insert(3, "sex", rng.choice(["F", "M"], len(table)))
        write_text(tmp / "participants.tsv", table.to_csv(sep="\t", index=False, na_rep="n/a"))
        write_text(
            tmp / "dataset_description.json",
            '{\n  "Name": "SLIM-Diff synthetic FCD type II cohort (MNI152 2009a based)",\n'
            '  "BIDSVersion": "1.9.0",\n  "DatasetType": "raw",\n'
            f'  "GeneratedBy": [{{"Name": "slimdiff-synth", "Description": "seed {seed}"}}]\n}}\n',
        )
    log.info("wrote %d subjects (%d patients, %d controls) to %s", len(table), patients, controls, out_dir)
    return table
