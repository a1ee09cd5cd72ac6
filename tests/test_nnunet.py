"""The upstream nnU-Net layout gives the same slices as BIDS, with imagesTs as the fixed test set."""

import shutil

import numpy as np
import pytest
from conftest import phantom_config

from slimdiff.data.cache import build_cache, load_cache
from slimdiff.data.ingest import DataError


def to_nnunet(bids_root, out, test_ids=("sub-p2",)):
    for d in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / d).mkdir(parents=True)
    for sub in sorted(bids_root.glob("sub-*")):
        sid = sub.name.replace("sub-", "MRIe_")
        images, labels = ("imagesTs", "labelsTs") if sub.name in test_ids else ("imagesTr", "labelsTr")
        shutil.copy(sub / "anat" / f"{sub.name}_FLAIR.nii.gz", out / images / f"{sid}_0000.nii.gz")
        shutil.copy(sub / "anat" / f"{sub.name}_FLAIR.nii.gz", out / images / f"{sid}_0001.nii.gz")  # "T1"
        roi = sub / "anat" / f"{sub.name}_FLAIR_roi.nii.gz"
        if roi.exists():
            shutil.copy(roi, out / labels / f"{sid}.nii.gz")


def test_nnunet_matches_bids(phantom_cohort, tmp_path):
    nn = tmp_path / "Dataset210_MRIe_none"
    to_nnunet(phantom_cohort, nn)
    build_cache(phantom_cohort, tmp_path / "bids_cache", phantom_config(splits__test_subjects=["sub-p2"]))
    build_cache(nn, tmp_path / "nn_cache", phantom_config(layout="nnunet"))
    a, b = load_cache(tmp_path / "bids_cache"), load_cache(tmp_path / "nn_cache")
    assert b.splits["test"] == ["MRIe_p2"] and b.splits["test_method"] == "predefined"
    assert set(b.index.loc[b.index["group"] == "hc", "subject"]) == {"MRIe_c0"}
    a_rows = a.index.assign(key=a.index["subject"].str.replace("sub-", "MRIe_")).sort_values(["key", "z"])["row"]
    b_rows = b.index.sort_values(["subject", "z"])["row"]
    assert len(a_rows) == len(b_rows) > 0
    assert np.array_equal(a.images[a_rows.to_numpy()], b.images[b_rows.to_numpy()])
    assert np.array_equal(a.masks[a_rows.to_numpy()], b.masks[b_rows.to_numpy()])


def test_nnunet_root_with_several_datasets(phantom_cohort, tmp_path):
    root = tmp_path / "nnUNet_raw"
    to_nnunet(phantom_cohort, root / "Dataset210_MRIe_none")
    # a second dataset with a duplicate id must be refused
    to_nnunet(phantom_cohort, root / "Dataset310_MRIcontrol_none", test_ids=())
    with pytest.raises(DataError, match=r"Dataset310_MRIcontrol_none/imagesTr/MRIe_.*duplicate subject 'MRIe_"):
        build_cache(root, tmp_path / "c", phantom_config(layout="nnunet"))


def test_nnunet_bad_name(phantom_cohort, tmp_path):
    nn = tmp_path / "ds"
    to_nnunet(phantom_cohort, nn)
    (nn / "imagesTr" / "MRIe_p0_0000.nii.gz").rename(nn / "imagesTr" / "MRIe_p0.nii.gz")
    with pytest.raises(DataError, match=r"MRIe_p0.nii.gz: name does not follow"):
        build_cache(nn, tmp_path / "c", phantom_config(layout="nnunet"))
