import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import dead_pid, phantom, phantom_config, tiny_data_config, write_bids_subject, write_participants
from nibabel import orientations

from slimdiff.data.cache import CacheError, build_cache, load_cache
from slimdiff.data.slices import z_bin
from slimdiff.data.splits import fold_membership
from slimdiff.io import writer_tag


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return load_cache(tiny_cache)


def test_arrays_shapes_and_ranges(cache):
    n = len(cache.index)
    assert cache.images.shape == (n, 32, 32) and cache.images.dtype == np.float32
    assert cache.masks.shape == (n, 32, 32) and cache.masks.dtype == np.int8
    assert cache.images.min() >= -1.0 and cache.images.max() <= 1.0
    assert cache.images.max() > 0.9, "percentile scaling should reach the top of [-1, 1]"
    assert set(np.unique(cache.masks)) <= {-1, 1}
    assert cache.index["row"].tolist() == list(range(n))


def test_labels_agree_with_the_arrays(cache):
    idx = cache.index
    area = (np.asarray(cache.masks) > 0).sum(axis=(1, 2))
    assert np.array_equal(area, idx["lesion_area_px"].to_numpy())
    assert np.array_equal(idx["class"].to_numpy(), (area > 0).astype(int))
    n_bins, z_range = cache.meta["z_bins"], tuple(cache.meta["z_range"])
    assert np.array_equal(idx["z_bin"].to_numpy(), z_bin(idx["z"].to_numpy(), z_range, n_bins))
    assert np.array_equal(idx["token"].to_numpy(), idx["z_bin"] + n_bins * idx["class"])
    assert idx["z"].between(*z_range).all()
    assert (idx.loc[idx["class"] == 1, "lesion_area_px"] >= 2).all()
    assert (idx.loc[idx["group"] == "hc", "class"] == 0).all()
    assert set(idx["z_bin"]) == set(range(n_bins))


def test_auto_z_range_comes_from_the_lesions(cache):
    info = cache.meta["z_range_info"]
    assert info["mode"] == "auto"
    lo, hi = info["lesion_extent"]
    assert cache.meta["z_range"] == [lo + 1, hi - 1]


def test_splits_disjoint_and_folds_cover_the_pool(cache):
    splits = cache.splits
    subjects = set(cache.index["subject"])
    test = set(splits["test"])
    assert len(test) == 1 and test <= subjects
    pool = subjects - test
    vals = [set(f["val"]) for f in splits["folds"]]
    assert len(vals) == 2
    assert set().union(*vals) == pool and sum(map(len, vals)) == len(pool)
    for f in splits["folds"]:
        assert set(f["train"]) | set(f["val"]) == pool and not set(f["train"]) & set(f["val"])
        member = fold_membership(cache.index, f["fold"])
        for role in ("train", "val", "test"):
            rows = cache.index[member == role]
            expected = {"train": set(f["train"]), "val": set(f["val"]), "test": test}[role]
            assert set(rows["subject"]) == expected
    # every subject's rows sit in exactly one place per fold
    assert cache.index.groupby("subject")["split"].nunique().max() == 1


def test_meta_records_config_versions_and_counts(cache):
    meta = cache.meta
    assert meta["config"]["cache"]["roi_size"] == [32, 32, 32]
    assert "monai" in meta["versions"] and "torch" in meta["versions"]
    assert meta["counts"]["slices"] == len(cache.index)
    assert meta["counts"]["patients"] == 4 and meta["counts"]["controls"] == 2


def test_build_is_deterministic(synthetic_cohort, tmp_path, cache):
    """...and a build removes what one killed with SIGKILL left in the folder (its scratch folders)."""
    left = [f".staging.{writer_tag(dead_pid())}.ab12.tmp", f".arrays.{writer_tag(dead_pid())}.cd34.tmp"]
    for name in left:
        (tmp_path / "again" / name).mkdir(parents=True)
        (tmp_path / "again" / name / "images.npy").write_bytes(b"half")
    build_cache(synthetic_cohort, tmp_path / "again", tiny_data_config(), threads=1)
    assert not [p.name for p in (tmp_path / "again").iterdir() if p.name.startswith(".")]
    again = load_cache(tmp_path / "again")
    pd.testing.assert_frame_equal(again.index, cache.index)
    assert np.array_equal(again.images, cache.images) and np.array_equal(again.masks, cache.masks)
    assert again.splits == cache.splits


def test_orientation_and_voxel_grid_do_not_change_the_slices(tmp_path):
    """The same anatomy stored LPS and RAS must give the same cached slices."""
    image, mask, affine = phantom(seed=4)
    root = tmp_path / "raw"
    write_bids_subject(root, "sub-ras", image, mask, affine)
    transform = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), orientations.axcodes2ornt("PSL"))
    aff2 = affine @ orientations.inv_ornt_aff(transform, image.shape)
    img2 = orientations.apply_orientation(image, transform)
    msk2 = orientations.apply_orientation(mask, transform)
    write_bids_subject(root, "sub-psl", np.ascontiguousarray(img2), np.ascontiguousarray(msk2), aff2)
    assert "".join(nib.aff2axcodes(aff2)) == "PSL"
    write_participants(root, [("sub-ras", "fcd"), ("sub-psl", "fcd")])
    cfg = phantom_config(splits__n_folds=1, splits__test_fraction=0.0, splits__val_fraction=0.5)
    build_cache(root, tmp_path / "cache", cfg)
    c = load_cache(tmp_path / "cache")
    a = c.index[c.index["subject"] == "sub-ras"]["row"].to_numpy()
    b = c.index[c.index["subject"] == "sub-psl"]["row"].to_numpy()
    assert len(a) == len(b) > 0
    assert np.allclose(c.images[a], c.images[b], atol=1e-4)
    assert np.array_equal(c.masks[a], c.masks[b])


def test_incomplete_cache_is_refused(cache, tmp_path):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(cache.path, copy)
    (copy / "cache_meta.json").unlink()
    with pytest.raises(CacheError, match="not a complete cache"):
        load_cache(copy)
    shutil.copy(cache.path / "cache_meta.json", copy / "cache_meta.json")
    (copy / "index.csv").write_text((copy / "index.csv").read_text().replace("fcd", "hc", 1))
    with pytest.raises(CacheError, match="index.csv"):
        load_cache(copy)


def test_qc_figures(cache, tmp_path):
    from slimdiff.data.qc import write_qc

    write_qc(cache.path, tmp_path / "qc", examples_per_zbin=4)
    for name in ("zbin_montage.png", "cohort_stats.png"):
        assert (tmp_path / "qc" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    counts = pd.read_csv(tmp_path / "qc" / "cohort_stats.csv")
    assert counts["class0_slices"].sum() + counts["class1_slices"].sum() == len(cache.index)
    assert len(counts) == cache.meta["z_bins"]


def test_predefined_test_subjects(phantom_cohort, tmp_path):
    cfg = phantom_config(splits__test_subjects=["sub-p1"])
    build_cache(phantom_cohort, tmp_path / "c", cfg)
    splits = json.loads((tmp_path / "c" / "splits.json").read_text())
    assert splits["test"] == ["sub-p1"] and splits["test_method"] == "predefined"
    with pytest.raises(ValueError, match="sub-zz"):
        build_cache(phantom_cohort, tmp_path / "d", phantom_config(splits__test_subjects=["sub-zz"]))


def test_controls_excluded_by_default(phantom_cohort, tmp_path):
    cfg = phantom_config(ingest__include_controls=False, splits__test_fraction=0.0)
    build_cache(phantom_cohort, tmp_path / "c", cfg)
    index = load_cache(tmp_path / "c").index
    assert set(index["group"]) == {"fcd"} and "sub-c0" not in set(index["subject"])
