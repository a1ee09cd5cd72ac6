import numpy as np
import pytest

from slimdiff.data.slices import SliceStats, resolve_z_range, select_slices, token, z_bin, z_bin_centre


def test_zbins_match_the_paper_range():
    # the paper's z-range: z in [34, 115], 30 bins
    assert list(np.flatnonzero(z_bin(np.arange(34, 116), (34, 115), 30) == 0) + 34) == [34, 35, 36]
    assert list(np.flatnonzero(z_bin(np.arange(34, 116), (34, 115), 30) == 3) + 34) == [43, 44]
    assert list(np.flatnonzero(z_bin(np.arange(34, 116), (34, 115), 30) == 29) + 34) == [114, 115]
    centres = z_bin_centre(np.arange(30), (34, 115), 30)
    assert list(centres[:6]) == [35, 38, 40, 43, 46, 49]
    assert list(centres[-3:]) == [109, 111, 114]


def test_z_outside_range_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        z_bin(33, (34, 115), 30)


def test_token_space():
    assert token(np.array([0, 29, 5]), np.array([0, 1, 1]), 30).tolist() == [0, 59, 35]


def test_selection_drops_tiny_lesions_and_empty_slices():
    stats = SliceStats(
        brain_fraction=np.array([0.0, 0.2, 0.2, 0.2, 0.01]),
        lesion_area_px=np.array([0, 0, 10, 40, 0]),
    )
    cfg = {"brain_min_fraction": 0.05, "lesion_area_min_px": 30}
    assert select_slices(stats, (0, 4), cfg).tolist() == [1, 3]


def test_auto_range_and_errors():
    z, info = resolve_z_range("auto", [(20, 60), (30, 90)], 15, 160, 30)
    assert z == (35, 75) and info["mode"] == "auto"
    z, _ = resolve_z_range("auto", [(50, 52)], 15, 160, 1)  # over-shrunk: fall back to the extent
    assert z == (50, 52)
    with pytest.raises(ValueError, match="at least one patient"):
        resolve_z_range("auto", [], 15, 160, 30)
    with pytest.raises(ValueError, match="z_bins"):
        resolve_z_range([10, 12], [], 0, 160, 30)
    with pytest.raises(ValueError, match="roi_size"):
        resolve_z_range([10, 170], [], 0, 160, 30)
