"""Cohort selection and the predefined test split from participants.tsv (#35): configuration, applied before the
cache and recorded in cohort.csv. On a replica of the published ds004199 tree, config/paper.yaml's selection
gives the 78 3D-FLAIR patients and the dataset's own test set."""

import copy
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, phantom, phantom_config, tiny_data_config
from ds004199_replica import build_replica, locate_ds004199, read_flair_meta

from slimdiff.config import load_config, validate_config
from slimdiff.data.cohort import acquisition_geometry, select_cohort
from slimdiff.data.ingest import DataError, Subject, discover

# ---- unit tests on small hand-made trees ---------------------------------------------------------------------


def _tree(root, rows, columns=("participant_id", "group", "mri_diagnosis", "split")):
    """participants.tsv from `rows` (tuples in `columns` order) and one tiny FLAIR (+ ROI for fcd) per row."""
    root.mkdir(parents=True, exist_ok=True)
    image, mask, affine = phantom(shape=(8, 8, 8), spacing=1.0)
    for row in rows:
        sid, group = row[0], row[1]
        anat = root / sid / "anat"
        anat.mkdir(parents=True)
        nib.save(nib.Nifti1Image(image, affine), anat / f"{sid}_FLAIR.nii.gz")
        if group == "fcd":
            nib.save(nib.Nifti1Image(mask, affine), anat / f"{sid}_FLAIR_roi.nii.gz")
    pd.DataFrame(rows, columns=list(columns)).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def _data_cfg(**overrides):
    return tiny_data_config(**overrides)


ROWS = [
    ("sub-01", "fcd", "suspicion", "train"),
    ("sub-02", "fcd", "definite", "test"),
    ("sub-03", "fcd", "suspicion", "test"),
    ("sub-04", "hc", "n/a", "train"),
]


def test_participants_column_filter(tmp_path):
    root = _tree(tmp_path / "raw", ROWS)
    subjects = discover(root, "bids", {})
    cfg = _data_cfg(cohort__participants=[{"column": "mri_diagnosis", "keep": ["suspicion", "n/a"]}])
    kept, table = select_cohort(subjects, root, cfg)
    assert [s.subject_id for s in kept] == ["sub-01", "sub-03", "sub-04"]
    row = table.set_index("subject").loc["sub-02"]
    assert row["status"] == "excluded"
    assert "mri_diagnosis='definite'" in row["reason"] and "data.cohort.participants" in row["reason"]
    assert list(table["participants:mri_diagnosis"]) == ["suspicion", "definite", "suspicion", "n/a"]
    # Two filters: both must hold; controls go by include_controls before any filter.
    cfg = _data_cfg(
        ingest__include_controls=False,
        cohort__participants=[
            {"column": "mri_diagnosis", "keep": ["suspicion"]},
            {"column": "split", "keep": ["test"]},
        ],
    )
    kept, table = select_cohort(subjects, root, cfg)
    assert [s.subject_id for s in kept] == ["sub-03"]
    assert "include_controls" in table.set_index("subject").loc["sub-04", "reason"]


def test_defaults_keep_everyone_and_need_no_participants_tsv(tmp_path):
    root = _tree(tmp_path / "raw", ROWS)
    (root / "participants.tsv").unlink()
    subjects = discover(root, "bids", {})
    kept, table = select_cohort(subjects, root, _data_cfg())
    assert kept == subjects
    assert set(table["status"]) == {"included"} and (table["reason"] == "").all()
    assert set(table["voxel_mm"]) == {"1x1x1"} and set(table["slice_spacing_mm"]) == {"1"}


def _flair(path, zooms, sidecar=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([*zooms, 1.0])), path)
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return path


def test_slice_spacing_from_header_and_sidecar(tmp_path):
    thick = _flair(tmp_path / "a" / "sub-a_FLAIR.nii.gz", (0.7, 0.7, 4.0))  # header only
    resampled = _flair(  # a 2D acquisition published on a 1 mm grid: the sidecar says what it was
        tmp_path / "b" / "sub-b_FLAIR.nii.gz",
        (1.0, 1.0, 1.0),
        {"MRAcquisitionType": "2D", "SliceThickness": 4, "SpacingBetweenSlices": 4.4},
    )
    iso = _flair(tmp_path / "c" / "sub-c_FLAIR.nii.gz", (1.0, 1.0, 1.0), {"MRAcquisitionType": "3D"})

    geo = acquisition_geometry(thick)
    assert geo.voxel_mm == (0.7, 0.7, 4.0) and geo.acquisition is None
    assert geo.header_slice_spacing_mm == geo.slice_spacing_mm == 4.0
    geo = acquisition_geometry(resampled)
    assert geo.header_slice_spacing_mm == 1.0 and geo.sidecar_spacing_mm == 4.4 and geo.slice_spacing_mm == 4.4
    assert geo.acquisition == "2D" and geo.slice_thickness_mm == 4.0
    geo = acquisition_geometry(iso)
    assert geo.slice_spacing_mm == 1.0 and geo.sidecar_spacing_mm is None and geo.acquisition == "3D"

    subjects = [Subject(f"sub-{k}", "fcd", p) for k, p in zip("abc", (thick, resampled, iso), strict=True)]
    kept, table = select_cohort(subjects, tmp_path, _data_cfg(cohort__max_slice_spacing_mm=1.5))
    reasons = table.set_index("subject")["reason"]
    assert [s.subject_id for s in kept] == ["sub-c"]
    assert "slice spacing 4 mm (NIfTI header) > 1.5 mm" in reasons["sub-a"]
    assert "slice spacing 4.4 mm (sidecar SpacingBetweenSlices) > 1.5 mm" in reasons["sub-b"]

    kept, table = select_cohort(subjects, tmp_path, _data_cfg(cohort__acquisition=["3D"]))
    reasons = table.set_index("subject")["reason"]
    assert [s.subject_id for s in kept] == ["sub-c"]
    assert "no MRAcquisitionType" in reasons["sub-a"] and "MRAcquisitionType 2D" in reasons["sub-b"]


def test_test_from_marks_the_predefined_test_set(tmp_path):
    root = _tree(tmp_path / "raw", ROWS)
    cfg = _data_cfg(splits__test_from={"column": "split", "test": ["test"], "train": ["train"]})
    kept, table = select_cohort(discover(root, "bids", {}), root, cfg)
    assert {s.subject_id for s in kept if s.predefined_split == "test"} == {"sub-02", "sub-03"}
    assert list(table["participants:split"]) == ["train", "test", "test", "train"]


@pytest.mark.parametrize(
    "test_from, words",
    [
        ({"column": "fold", "test": ["test"], "train": ["train"]}, ["has no column 'fold'", "data.splits.test_from"]),
        ({"column": "split", "test": ["test"], "train": ["training"]}, ["'split'", "sub-01='train'", "neither"]),
        ({"column": "split", "test": ["Test"], "train": ["train", "test"]}, ["'split'", "no included subject"]),
    ],
)
def test_test_from_refuses_a_missing_column_or_unknown_values(tmp_path, test_from, words):
    root = _tree(tmp_path / "raw", ROWS)
    with pytest.raises(DataError) as err:
        select_cohort(discover(root, "bids", {}), root, _data_cfg(splits__test_from=test_from))
    assert err.value.path == str(root / "participants.tsv")
    for word in words:
        assert word in err.value.problem


def test_a_filter_without_participants_tsv_or_its_column_is_an_error(tmp_path):
    root = _tree(tmp_path / "raw", ROWS)
    subjects = discover(root, "bids", {})
    with pytest.raises(DataError, match=r"participants.tsv: has no column 'diagnosis'"):
        select_cohort(subjects, root, _data_cfg(cohort__participants=[{"column": "diagnosis", "keep": ["x"]}]))
    (root / "participants.tsv").unlink()
    with pytest.raises(DataError, match=r"participants.tsv: not found; data.cohort.participants"):
        select_cohort(subjects, root, _data_cfg(cohort__participants=[{"column": "group", "keep": ["fcd"]}]))


def test_cache_records_the_cohort_and_uses_test_from(phantom_cohort, tmp_path):
    from slimdiff.data.cache import build_cache, load_cache

    tsv = phantom_cohort / "participants.tsv"
    table = pd.read_csv(tsv, sep="\t")
    table["split"] = ["test", "train", "train", "train"]  # sub-p0 is the dataset's test subject
    table.to_csv(tsv, sep="\t", index=False)
    cfg = phantom_config(
        splits__test_from={"column": "split", "test": ["test"], "train": ["train"]},
        cohort__participants=[{"column": "participant_id", "keep": ["sub-p0", "sub-p1", "sub-p2"]}],
    )
    meta = build_cache(phantom_cohort, tmp_path / "cache", cfg)
    cache = load_cache(tmp_path / "cache")
    assert cache.splits["test"] == ["sub-p0"] and cache.splits["test_method"] == "predefined"
    assert all(set(f["train"]) | set(f["val"]) == {"sub-p1", "sub-p2"} for f in cache.splits["folds"])
    cohort = pd.read_csv(tmp_path / "cache" / "cohort.csv", dtype=str, keep_default_na=False).set_index("subject")
    assert cohort.loc["sub-c0", "status"] == "excluded" and "participant_id" in cohort.loc["sub-c0", "reason"]
    assert cohort.loc["sub-p0", "split"] == "test" and cohort.loc["sub-p1", "split"] == "trainval"
    assert meta["cohort"] == {"included": 3, "excluded": 1}


# ---- the published tree, with config/paper.yaml's selection -------------------------------------------------


@pytest.fixture(scope="module")
def shared():
    folder = locate_ds004199()
    if folder is None:
        pytest.skip("shared/data/ds004199 (published ds004199 metadata) not found beside or inside the repository")
    return folder


@pytest.fixture(scope="module")
def replica(shared, tmp_path_factory):
    return build_replica(tmp_path_factory.mktemp("ds004199") / "raw", shared, size=12)


@pytest.fixture(scope="module")
def participants(shared):
    return pd.read_csv(shared / "participants.tsv", sep="\t", dtype=str, encoding="utf-8-sig").set_index(
        "participant_id"
    )


def _paper_data(**cache):
    """config/paper.yaml's data section with a tiny cache geometry (the replica's volumes are 12 voxels)."""
    data = copy.deepcopy(load_config(REPO / "config" / "paper.yaml")["data"])
    data["cache"].update(
        spacing=[1.0, 1.0, 1.0],
        roi_size=[32, 32, 32],
        z_range="auto",
        auto_z_range_offset=0,
        z_bins=4,
        lesion_area_min_px=2,
        brain_min_fraction=0.01,
        **cache,
    )
    return validate_config({"data": data})["data"]


@pytest.fixture(scope="module")
def paper_cache(replica, tmp_path_factory):
    from slimdiff.data.cache import build_cache, load_cache

    out = tmp_path_factory.mktemp("paper_cache") / "cache"
    build_cache(replica, out, _paper_data(), threads=1)
    return load_cache(out)


@pytest.mark.slow
def test_paper_cohort_is_the_78_3d_flair_patients(shared, participants, paper_cache):
    meta = read_flair_meta(shared)
    patients = set(participants.index[participants["group"] == "fcd"])
    flat = {sid for sid in patients if meta[sid].mr_type == "3D"}
    thick = patients - flat
    assert len(patients) == 85 and len(flat) == 78 and len(thick) == 7

    cohort = pd.read_csv(paper_cache.path / "cohort.csv", dtype=str, keep_default_na=False).set_index("subject")
    assert len(cohort) == 170
    assert set(cohort.index[cohort["status"] == "included"]) == flat == set(paper_cache.index["subject"])
    assert (cohort["status"] != "rejected").all()
    for sid in thick:  # listed with the reason, the spacing and the acquisition type
        row = cohort.loc[sid]
        assert row["status"] == "excluded" and "data.cohort.max_slice_spacing_mm" in row["reason"]
        assert float(row["slice_spacing_mm"]) == pytest.approx(meta[sid].slice_spacing, abs=1e-3)
        assert row["acquisition"] == "2D"
    controls = cohort[cohort["group"] == "hc"]
    assert len(controls) == 85 and controls["reason"].str.contains("include_controls").all()
    assert (cohort.loc[sorted(flat), "acquisition"] == "3D").all()


@pytest.mark.slow
def test_paper_test_set_is_the_datasets_own(participants, paper_cache):
    included = set(paper_cache.index["subject"])
    listed_test = set(participants.index[(participants["split"] == "test") & (participants["group"] == "fcd")])
    assert len(listed_test) == 28  # the issue: 28 FCD patients are `test`
    test = listed_test & included
    splits = paper_cache.splits
    assert set(splits["test"]) == test and splits["test_method"] == "predefined"
    train = included - test
    assert all(participants.loc[sorted(train), "split"] == "train")
    for fold in splits["folds"]:  # folds only over the train part, and they cover it
        assert set(fold["train"]) | set(fold["val"]) == train
        assert not (set(fold["train"]) | set(fold["val"])) & test
    assert set(paper_cache.index.loc[paper_cache.index["split"] == "test", "subject"]) == test


@pytest.mark.slow
def test_paper_cohort_report(paper_cache, tmp_path):
    from slimdiff.data.qc import cohort_report

    counts = cohort_report(paper_cache, tmp_path / "cohort.png", tmp_path / "cohort.csv", tmp_path / "counts.csv")
    assert (tmp_path / "cohort.png").stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / "cohort.csv")) == 170
    by = counts.set_index(["status", "criterion"])["subjects"].groupby(level=[0, 1]).sum()
    assert by["excluded", "data.cohort.max_slice_spacing_mm"] == 7
    assert by["excluded", "data.ingest.include_controls"] == 85
    included = counts[counts["status"] == "included"].groupby("split")["subjects"].sum()
    assert included["test"] == len(paper_cache.splits["test"]) and included.sum() == 78


def test_other_readings_of_the_78(replica, participants):
    """acquisition: [3D] picks the same 78; mri_diagnosis: suspicion picks another 78 (selection only, no cache)."""
    subjects = discover(replica, "bids", {})
    spacing, _ = select_cohort(subjects, replica, _paper_data())
    by_type, _ = select_cohort(subjects, replica, _paper_data_cohort(max_slice_spacing_mm=None, acquisition=["3D"]))
    assert {s.subject_id for s in by_type} == {s.subject_id for s in spacing}
    diagnosis = _paper_data_cohort(
        max_slice_spacing_mm=None, participants=[{"column": "mri_diagnosis", "keep": ["suspicion"]}]
    )
    by_diagnosis, _ = select_cohort(subjects, replica, diagnosis)
    suspicion = participants.index[(participants["group"] == "fcd") & (participants["mri_diagnosis"] == "suspicion")]
    assert {s.subject_id for s in by_diagnosis} == set(suspicion)
    assert len(by_diagnosis) == 78 and {s.subject_id for s in by_diagnosis} != {s.subject_id for s in spacing}


def _paper_data_cohort(**cohort):
    data = _paper_data()
    data["cohort"].update(cohort)
    return validate_config({"data": data})["data"]
