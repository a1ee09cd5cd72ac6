"""The published ds004199 tree ingests as is (#36): a replica with every real file name, the real
participants.tsv (byte-order mark included) and volumes whose geometry follows the real sidecars."""

import logging
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import phantom, tiny_data_config
from ds004199_replica import build_replica, locate_ds004199, read_files, read_flair_meta

from slimdiff.data.ingest import DataError, discover, load_volume, read_participants

INGEST = {"skull_stripped": True, "brain_mask_suffix": None}
ROI_NAME = re.compile(r"^(?P<sid>sub-[^_]+)_.*_FLAIR_roi\.nii\.gz$")


@pytest.fixture(scope="module")
def shared():
    folder = locate_ds004199()
    if folder is None:
        pytest.skip("shared/data/ds004199 (published ds004199 metadata) not found beside or inside the repository")
    return folder


@pytest.fixture(scope="module")
def replica(shared, tmp_path_factory):
    return build_replica(tmp_path_factory.mktemp("ds004199") / "raw", shared, size=12)


def _mismatched_pairs(files: list[str]) -> dict[str, tuple[str, str]]:
    """subject -> (FLAIR name, ROI name) where the ROI is not the FLAIR's name with _roi."""
    names: dict[str, list[str]] = {}
    for rel in files:
        names.setdefault(rel.split("/")[0], []).append(rel.rsplit("/", 1)[-1])
    pairs = {}
    for sid, files_of in names.items():
        flair = [n for n in files_of if n.endswith("_FLAIR.nii.gz")]
        roi = [n for n in files_of if n.endswith("_FLAIR_roi.nii.gz")]
        if roi and roi[0] != flair[0].replace("_FLAIR.nii.gz", "_FLAIR_roi.nii.gz"):
            pairs[sid] = (flair[0], roi[0])
    return pairs


def test_replica_mirrors_the_published_tree(shared, replica):
    on_disk = sorted(str(p.relative_to(replica)) for p in replica.glob("sub-*/**/*") if p.is_file())
    assert on_disk == sorted(read_files(shared))
    assert (replica / "participants.tsv").read_bytes() == (shared / "participants.tsv").read_bytes()
    assert (replica / "participants.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    meta = read_flair_meta(shared)
    for sid in ("sub-00001", "sub-00018", "sub-00053"):  # 3D sagittal, 2D coronal, 2D axial
        flair = next((replica / sid / "anat").glob("*_FLAIR.nii.gz"))
        zooms = nib.load(flair).header.get_zooms()
        assert zooms[2] == pytest.approx(meta[sid].slice_spacing, abs=1e-4)


def test_whole_tree_discovers_and_loads(shared, replica, caplog):
    files = read_files(shared)
    expected_rois = {m["sid"]: name for rel in files if (m := ROI_NAME.match(name := rel.rsplit("/", 1)[-1]))}
    table = pd.read_csv(shared / "participants.tsv", sep="\t", dtype=str, encoding="utf-8-sig")
    declared = dict(zip(table["participant_id"], table["group"], strict=True))
    mismatched = _mismatched_pairs(files)
    assert "sub-00048" in mismatched, "the published tree pairs an acq-T2sel FLAIR with an acq-32ch10 ROI"

    with caplog.at_level(logging.WARNING, logger="slimdiff.data.ingest"):
        subjects = discover(replica, "bids", INGEST)

    patients = [s for s in subjects if s.group == "fcd"]
    controls = [s for s in subjects if s.group == "hc"]
    assert len(subjects) == 170 and len(patients) == 85 and len(controls) == 85
    assert {s.subject_id: s.group for s in subjects} == declared
    assert {s.subject_id: s.mask.name for s in patients if s.mask is not None} == expected_rois
    assert all(s.mask is None for s in controls)
    for s in subjects:  # never a T1w volume or a JSON sidecar
        assert s.image.name.endswith("_FLAIR.nii.gz")
        assert s.mask is None or s.mask.name.endswith("_FLAIR_roi.nii.gz")

    pairing = [r.getMessage() for r in caplog.records if "pairing the subject's only FLAIR ROI" in r.getMessage()]
    assert len(pairing) == len(mismatched)
    for sid, (flair, roi) in mismatched.items():
        assert any(sid in m and flair in m and roi in m for m in pairing), (sid, pairing)

    n_lesions = 0
    for s in subjects:
        vol = load_volume(s, INGEST)
        assert vol.image.shape == nib.load(s.image).shape
        if s.is_patient:
            assert vol.mask is not None and vol.mask.any()
            n_lesions += 1
        else:
            assert vol.mask is None
    assert n_lesions == 85


# ---- focused cases, without the shared folder --------------------------------------------------------------


def _write(path, data, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _patient(root, sid="sub-01", flair_acq="T2sel", rois=("32ch10",), anat="anat", mask_shape=None, shift=0.0):
    """A FLAIR sub-X_acq-<flair_acq>_FLAIR plus one ROI per acq label in `rois`, on the FLAIR's grid unless
    `mask_shape` or `shift` (mm along x) say otherwise; participants.tsv lists the subject as fcd."""
    image, mask, affine = phantom(shape=(20, 20, 20))
    folder = root / sid / anat
    flair = _write(folder / f"{sid}_acq-{flair_acq}_FLAIR.nii.gz", image, affine)
    mask_affine = affine.copy()
    mask_affine[0, 3] += shift
    roi_data = mask if mask_shape is None else np.pad(mask, [(0, 0), (0, 0), (0, mask_shape[2] - 20)])
    written = [_write(folder / f"{sid}_acq-{acq}_FLAIR_roi.nii.gz", roi_data, mask_affine) for acq in rois]
    (root / "participants.tsv").write_text(f"participant_id\tgroup\n{sid}\tfcd\n")
    return flair, written


def test_acq_mismatched_roi_is_paired_with_a_warning(tmp_path, caplog):
    flair, (roi,) = _patient(tmp_path)
    with caplog.at_level(logging.WARNING, logger="slimdiff.data.ingest"):
        (subject,) = discover(tmp_path, "bids", INGEST)
    assert subject.image == flair and subject.mask == roi
    assert any(flair.name in r.getMessage() and roi.name in r.getMessage() for r in caplog.records)
    assert load_volume(subject, INGEST).mask.any()


def test_exact_name_roi_wins(tmp_path):
    flair, rois = _patient(tmp_path, rois=("T2sel", "32ch10"))
    (subject,) = discover(tmp_path, "bids", INGEST)
    assert subject.mask == flair.parent / "sub-01_acq-T2sel_FLAIR_roi.nii.gz"


def test_two_candidate_rois_are_an_error_naming_both(tmp_path):
    flair, rois = _patient(tmp_path, rois=("32ch10", "other"))
    with pytest.raises(DataError) as err:
        discover(tmp_path, "bids", INGEST)
    assert err.value.path == str(flair)
    assert all(r.name in err.value.problem for r in rois)


@pytest.mark.parametrize("bad, words", [({"mask_shape": (20, 20, 24)}, "shape"), ({"shift": 4.0}, "affine")])
def test_acq_mismatched_roi_on_another_grid_fails_the_grid_check(tmp_path, bad, words):
    _, (roi,) = _patient(tmp_path, **bad)
    (subject,) = discover(tmp_path, "bids", INGEST)
    assert subject.mask == roi
    with pytest.raises(DataError, match=words) as err:
        load_volume(subject, INGEST)
    assert err.value.path == str(roi)


def test_roi_pairs_within_its_session_only(tmp_path, caplog):
    flair, (roi,) = _patient(tmp_path, anat="ses-1/anat")
    assert discover(tmp_path, "bids", INGEST)[0].mask == roi
    other_session = tmp_path / "sub-01" / "ses-2" / "anat"
    other_session.mkdir(parents=True)
    roi.rename(other_session / roi.name)
    with caplog.at_level(logging.WARNING, logger="slimdiff.data.ingest"):
        (subject,) = discover(tmp_path, "bids", INGEST)
    assert subject.mask is None
    assert any("another session" in r.getMessage() for r in caplog.records)


def test_t1w_and_sidecars_are_ignored(tmp_path):
    image, _, affine = phantom(shape=(20, 20, 20), lesion=False)
    anat = tmp_path / "sub-c1" / "anat"
    flair = _write(anat / "sub-c1_acq-T2sel_FLAIR.nii.gz", image, affine)
    _write(anat / "sub-c1_acq-iso08_T1w.nii.gz", np.zeros((4, 4, 4), np.int16), np.eye(4))
    for name in ("sub-c1_acq-T2sel_FLAIR.json", "sub-c1_acq-iso08_T1w.json"):
        (anat / name).write_text("{}")
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-c1\thc\n")
    (subject,) = discover(tmp_path, "bids", INGEST)
    assert subject.image == flair and subject.mask is None and subject.group == "hc"


def test_participants_with_a_byte_order_mark(tmp_path):
    _patient(tmp_path)
    tsv = tmp_path / "participants.tsv"
    tsv.write_bytes(b"\xef\xbb\xbf" + b"participant_id\tgroup\tsplit\nsub-01\tfcd\ttrain\n")
    assert list(read_participants(tsv).columns) == ["participant_id", "group", "split"]
    (subject,) = discover(tmp_path, "bids", INGEST)
    assert subject.subject_id == "sub-01" and subject.group == "fcd"


@pytest.mark.parametrize("include_controls", [True, False])
@pytest.mark.slow
def test_cache_builds_from_the_whole_tree(replica, tmp_path, include_controls):
    """End to end through the cache builder (on_bad_subject: stop by default), on a 1 mm grid so the
    tiny volumes keep their shape. brain_min_fraction is lowered because a 12-voxel 0.7 mm axial 2D
    FLAIR covers only ~5% of a 32x32 slice; with the default such subjects silently add no slices."""
    from slimdiff.data.cache import build_cache, load_cache

    cfg = tiny_data_config(
        cache__spacing=[1.0, 1.0, 1.0],
        cache__auto_z_range_offset=0,
        cache__lesion_area_min_px=2,
        cache__brain_min_fraction=0.01,
        ingest__include_controls=include_controls,
    )
    meta = build_cache(replica, tmp_path / "cache", cfg, threads=1)
    cache = load_cache(tmp_path / "cache")
    counts = meta["counts"]
    assert counts["rejected_subjects"] == 0
    assert counts["patients"] == 85 and counts["controls"] == (85 if include_controls else 0)
    patients = cache.index[cache.index["group"] == "fcd"]
    assert patients.groupby("subject")["class"].max().eq(1).all(), "every patient keeps lesion slices"
    assert (cache.index.loc[cache.index["subject"] == "sub-00048", "class"] == 1).any()
