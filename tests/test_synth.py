import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from slimdiff.data.synth import LESION_VOLUME_ML, load_template, make_lesion, make_subject


def test_subject_is_deterministic_for_a_seed():
    a = make_subject(11, 0, True, (3.5, 4.5))
    b = make_subject(11, 0, True, (3.5, 4.5))
    c = make_subject(12, 0, True, (3.5, 4.5))
    assert np.array_equal(a.flair.get_fdata(), b.flair.get_fdata())
    assert np.array_equal(a.roi.get_fdata(), b.roi.get_fdata())
    assert np.allclose(a.flair.affine, b.flair.affine)
    assert a.flair.shape != c.flair.shape or not np.array_equal(a.flair.get_fdata(), c.flair.get_fdata())


@pytest.mark.slow
def test_voxel_grid_differs_from_the_template():
    tpl = load_template()
    codes, spacings = set(), []
    for i in range(6):
        s = make_subject(5, i, False, (1.8, 2.2))
        codes.add("".join(nib.aff2axcodes(s.flair.affine)))
        spacings.append(s.flair.header.get_zooms())
        assert s.roi is None
        assert s.flair.shape != tpl.gm.shape
    assert len(codes) >= 2, "orientation codes should vary between subjects"
    assert all(1.8 <= z <= 2.2 for zooms in spacings for z in zooms)


@pytest.mark.slow
def test_flair_contrast_csf_dark_grey_brighter_than_white():
    tpl = load_template()
    s = make_subject(3, 0, False, (0.95, 1.05))
    canon = nib.as_closest_canonical(s.flair)
    data = canon.get_fdata()
    # Sample tissue at template-defined voxels mapped through the affines (pose differs only a few mm,
    # so use confident interior voxels of each tissue).
    world = tpl.affine

    def mean_where(prob_map, thr):
        idx = np.argwhere(prob_map > thr)[::97]
        xyz = world[:3, :3] @ idx.T + world[:3, 3:4]
        ijk = np.linalg.inv(canon.affine)[:3, :3] @ xyz + np.linalg.inv(canon.affine)[:3, 3:4]
        ijk = np.round(ijk).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.array(data.shape)[:, None]), axis=0)
        return np.median(data[tuple(ijk[:, ok])])

    csf = np.clip(1 - tpl.gm - tpl.wm, 0, 1) * tpl.brain
    gm, wm, dark = mean_where(tpl.gm, 0.9), mean_where(tpl.wm, 0.97), mean_where(csf, 0.97)
    assert dark < wm < gm


@pytest.mark.parametrize("seed", range(6))
def test_lesion_is_fcd_like(seed):
    tpl = load_template()
    lesion = make_lesion(np.random.default_rng(seed), tpl)
    lo, hi = LESION_VOLUME_ML
    assert 0.6 * lo <= lesion.volume_ml <= 1.3 * hi
    # inside the brain
    crop = tuple(slice(o, o + s) for o, s in zip(lesion.origin, lesion.roi.shape, strict=True))
    assert tpl.brain[crop][lesion.roi].mean() > 0.99
    # across the grey/white junction: both tissues inside the lesion, and it touches cortex
    assert 0.05 < lesion.gm_fraction < 0.95
    assert (tpl.wm[crop][lesion.roi] > 0.5).any()
    # a single connected blob (plus its tail)
    from scipy import ndimage

    assert ndimage.label(lesion.roi)[1] <= 2
    # the signal changes: more grey matter and hyperintensity inside the lesion
    assert lesion.d_gm[lesion.roi].mean() > 0 and lesion.hyper[lesion.roi].mean() > 0


def test_lesion_sizes_span_the_range():
    tpl = load_template()
    vols = [make_lesion(np.random.default_rng(100 + i), tpl).volume_ml for i in range(12)]
    assert min(vols) < 2.0 and max(vols) > 4.0


def test_cohort_layout(synthetic_cohort):
    table = pd.read_csv(synthetic_cohort / "participants.tsv", sep="\t")
    assert list(table.columns[:4]) == ["participant_id", "group", "age", "sex"]
    assert (table["group"] == "fcd").sum() == 4 and (table["group"] == "hc").sum() == 2
    for sid, group in zip(table["participant_id"], table["group"], strict=True):
        anat = synthetic_cohort / sid / "anat"
        assert (anat / f"{sid}_FLAIR.nii.gz").exists()
        assert (anat / f"{sid}_FLAIR_roi.nii.gz").exists() == (group == "fcd")
    roi = nib.load(synthetic_cohort / "sub-00001" / "anat" / "sub-00001_FLAIR_roi.nii.gz")
    flair = nib.load(synthetic_cohort / "sub-00001" / "anat" / "sub-00001_FLAIR.nii.gz")
    assert np.allclose(roi.affine, flair.affine)
    lesion = roi.get_fdata() > 0
    assert set(np.unique(roi.get_fdata())) == {0.0, 1.0}
    assert (flair.get_fdata()[lesion] > 0).all(), "lesion voxels must lie inside the skull-stripped brain"


def test_lesion_volume_range_is_a_setting():
    tpl = load_template()
    vols = [make_lesion(np.random.default_rng(200 + i), tpl, volume_ml=(8.0, 9.0)).volume_ml for i in range(4)]
    assert all(0.6 * 8.0 <= v <= 1.3 * 9.0 for v in vols), vols


@pytest.mark.slow
def test_variability_scales_the_pose_and_shape_differences():
    """With variability 0 two subjects share the template's anatomy: only scanner grid and noise differ."""

    def brain_extent_mm(index, variability):
        s = make_subject(5, index, False, (2.0, 2.0), variability=variability)
        data = np.asarray(s.flair.dataobj) > 0
        ijk = np.argwhere(data)
        world = nib.affines.apply_affine(s.flair.affine, ijk)
        return world.max(0) - world.min(0)

    same = [brain_extent_mm(i, 0.0) for i in (0, 1)]
    varied = [brain_extent_mm(i, 1.0) for i in (0, 1)]
    assert np.abs(same[0] - same[1]).max() <= 4.0  # one voxel of each grid
    assert np.abs(varied[0] - varied[1]).max() > np.abs(same[0] - same[1]).max()
