"""Every bad input gets a DataError naming the file, and never a cache that looks complete."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import phantom, phantom_config, write_participants

from slimdiff.data.cache import CacheError, build_cache, load_cache
from slimdiff.data.ingest import DataError
from slimdiff.io import JSONFileError


def _flair(root, sid="sub-p0"):
    return root / sid / "anat" / f"{sid}_FLAIR.nii.gz"


def _roi(root, sid="sub-p0"):
    return root / sid / "anat" / f"{sid}_FLAIR_roi.nii.gz"


def truncated(root):
    path = _flair(root)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "cannot read"


def garbage(root):
    _flair(root).write_bytes(b"this is not a nifti file at all" * 10)
    return _flair(root), "cannot read"


def four_d(root):
    image, _, affine = phantom()
    nib.save(nib.Nifti1Image(np.stack([image, image], -1), affine), _flair(root))
    return _flair(root), "3D volume"


def mask_shape(root):
    _, mask, affine = phantom()
    nib.save(nib.Nifti1Image(mask[:-2], affine), _roi(root))
    return _roi(root), "shape"


def mask_affine(root):
    _, mask, affine = phantom()
    shifted = affine.copy()
    shifted[0, 3] += 4.0
    nib.save(nib.Nifti1Image(mask, shifted), _roi(root))
    return _roi(root), "affine"


def non_binary(root):
    _, mask, affine = phantom()
    nib.save(nib.Nifti1Image((mask * 255).astype(np.uint8), affine), _roi(root))
    return _roi(root), "not binary"


def empty_mask(root):
    _, mask, affine = phantom()
    nib.save(nib.Nifti1Image(np.zeros_like(mask), affine), _roi(root))
    return _roi(root), "empty"


def nan_voxels(root):
    image, _, affine = phantom()
    image[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(image, affine), _flair(root))
    return _flair(root), "NaN or Inf"


def inf_voxels(root):
    image, _, affine = phantom()
    image[4, 4, 4] = np.inf
    nib.save(nib.Nifti1Image(image, affine), _flair(root))
    return _flair(root), "NaN or Inf"


def listed_without_files(root):
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table.loc[len(table)] = ["sub-ghost", "fcd"]
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root / "participants.tsv", "sub-ghost is listed but has no FLAIR"


def patient_without_mask(root):
    _roi(root).unlink()
    return _flair(root), "without a lesion mask"


CASES = [
    truncated,
    garbage,
    four_d,
    mask_shape,
    mask_affine,
    non_binary,
    empty_mask,
    nan_voxels,
    inf_voxels,
    listed_without_files,
    patient_without_mask,
]


@pytest.mark.parametrize("breaker", CASES, ids=lambda f: f.__name__)
def test_bad_subject_stops_with_a_clear_error(phantom_cohort, tmp_path, breaker):
    out = tmp_path / "cache"
    build_cache(phantom_cohort, out, phantom_config())  # a good cache first ...
    path, problem = breaker(phantom_cohort)
    with pytest.raises(DataError) as err:  # ... then a rebuild on broken input
        build_cache(phantom_cohort, out, phantom_config())
    assert str(path) in str(err.value) and problem in str(err.value)
    assert not (out / "cache_meta.json").exists()
    with pytest.raises(CacheError):
        load_cache(out)  # the old cache no longer looks complete
    assert not list(out.glob(".staging*")), "staging files must be cleaned up"


@pytest.mark.parametrize("breaker", [truncated, non_binary, listed_without_files], ids=lambda f: f.__name__)
def test_skip_mode_rejects_and_continues(phantom_cohort, tmp_path, breaker):
    path, problem = breaker(phantom_cohort)
    out = tmp_path / "cache"
    build_cache(phantom_cohort, out, phantom_config(ingest__on_bad_subject="skip", splits__test_fraction=0.0))
    rejected = pd.read_csv(out / "rejected.csv")
    assert len(rejected) == 1
    assert rejected["file"].iloc[0] == str(path) and problem in rejected["problem"].iloc[0]
    cache = load_cache(out)
    assert rejected["subject"].iloc[0] not in set(cache.index["subject"])
    assert cache.meta["counts"]["rejected_subjects"] == 1


def test_duplicate_subjects_in_participants(phantom_cohort, tmp_path):
    write_participants(phantom_cohort, [("sub-p0", "fcd"), ("sub-p1", "fcd"), ("sub-p0", "fcd")])
    with pytest.raises(DataError, match=r"participants.tsv: duplicate subjects: sub-p0"):
        build_cache(phantom_cohort, tmp_path / "c", phantom_config())


def test_unknown_group(phantom_cohort, tmp_path):
    write_participants(phantom_cohort, [("sub-p0", "fcd"), ("sub-p1", "sick")])
    with pytest.raises(DataError, match="unknown group 'sick'"):
        build_cache(phantom_cohort, tmp_path / "c", phantom_config())


def test_not_skull_stripped_needs_a_brain_mask(phantom_cohort, tmp_path):
    cfg = phantom_config(ingest__skull_stripped=False, ingest__brain_mask_suffix="_desc-brain_mask")
    with pytest.raises(DataError, match="no brain mask"):
        build_cache(phantom_cohort, tmp_path / "c", cfg)
    for sid in ("sub-p0", "sub-p1", "sub-p2", "sub-c0"):
        image, _, affine = phantom()
        path = phantom_cohort / sid / "anat" / f"{sid}_desc-brain_mask.nii.gz"
        nib.save(nib.Nifti1Image((image > 0).astype(np.uint8), affine), path)
    build_cache(phantom_cohort, tmp_path / "c", cfg)
    assert load_cache(tmp_path / "c").meta["counts"]["subjects"] == 4


def test_missing_raw_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_cache(tmp_path / "nowhere", tmp_path / "c", phantom_config())


def test_acq_entity_in_names(tmp_path):
    """Real ds004199 names carry an acq- entity."""
    root = tmp_path / "raw"
    image, mask, affine = phantom()
    anat = root / "sub-00001" / "anat"
    anat.mkdir(parents=True)
    nib.save(nib.Nifti1Image(image, affine), anat / "sub-00001_acq-tse3dvfl_FLAIR.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), anat / "sub-00001_acq-tse3dvfl_FLAIR_roi.nii.gz")
    image2, mask2, _ = phantom(seed=3)
    anat2 = root / "sub-00002" / "anat"
    anat2.mkdir(parents=True)
    nib.save(nib.Nifti1Image(image2, affine), anat2 / "sub-00002_acq-tse3dvfl_FLAIR.nii.gz")
    nib.save(nib.Nifti1Image(mask2, affine), anat2 / "sub-00002_acq-tse3dvfl_FLAIR_roi.nii.gz")
    write_participants(root, [("sub-00001", "FCD"), ("sub-00002", "fcd")])
    cfg = phantom_config(splits__n_folds=1, splits__test_fraction=0.0, splits__val_fraction=0.5)
    build_cache(root, tmp_path / "c", cfg)
    assert load_cache(tmp_path / "c").meta["counts"]["patients"] == 2


def test_a_damaged_cache_is_refused_naming_the_file(phantom_cohort, tmp_path):
    out = tmp_path / "cache"
    build_cache(phantom_cohort, out, phantom_config())
    meta = (out / "cache_meta.json").read_text()
    images = (out / "images.npy").read_bytes()
    (out / "cache_meta.json").write_text(meta[: len(meta) // 2])
    with pytest.raises(JSONFileError, match=r"cache_meta\.json: not valid JSON"):
        load_cache(out)
    (out / "cache_meta.json").write_text('{"other": "tool"}')
    with pytest.raises(CacheError, match=r"cache_meta\.json: not a slimdiff cache's metadata"):
        load_cache(out)
    (out / "cache_meta.json").write_text(meta)
    (out / "images.npy").write_bytes(images[:60])  # a header cut short
    with pytest.raises(CacheError, match=r"images\.npy: cannot read it as a \.npy array"):
        load_cache(out)
    (out / "images.npy").write_bytes(images)
    (out / "splits.json").write_text("{")
    with pytest.raises(JSONFileError, match=r"splits\.json: not valid JSON"):
        load_cache(out)
