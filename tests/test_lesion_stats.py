"""Lesion counts on hand-drawn masks whose answers are known."""

import numpy as np
import pytest

from slimdiff.metrics.lesion_stats import lesion_components, lesion_stats


def disk(shape, centre, radius) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def as_mask(lesion: np.ndarray) -> np.ndarray:
    return np.where(lesion, 1.0, -1.0).astype(np.float32)


def test_a_drawn_disk_is_one_lesion_of_its_area():
    d = disk((32, 32), (16, 16), 4)
    comps = lesion_components(as_mask(d))
    assert len(comps) == 1 and comps[0].sum() == d.sum() == 49


def test_components_below_the_minimum_and_diagonal_touching_are_handled():
    mask = np.zeros((32, 32), bool)
    mask[2:4, 2:4] = True  # 4 px: below the 5 px minimum
    mask[10:13, 10:12] = True  # 6 px
    mask[13, 12] = True  # touches the block only diagonally: its own 1 px component under 4-connectivity
    areas = sorted(int(c.sum()) for c in lesion_components(as_mask(mask)))
    assert areas == [6]


def test_threshold_tau_moves_the_boundary():
    soft = np.full((16, 16), -1.0, np.float32)
    soft[4:8, 4:8] = 0.1  # 16 px just above 0
    soft[5:7, 5:7] = 0.5
    assert [c.sum() for c in lesion_components(soft, tau=0.0)] == [16]
    assert lesion_components(soft, tau=0.2) == []  # only 4 px above 0.2: below the minimum


def test_lesion_stats_rates_areas_and_brain_overlap():
    shape = (32, 32)
    brain = disk(shape, (16, 16), 12)
    image = np.where(brain, 0.5, -1.0).astype(np.float32)
    inside = disk(shape, (16, 16), 3)  # 29 px, all on brain
    edge = disk(shape, (16, 2), 3)  # straddles the brain boundary
    none = np.zeros(shape, bool)
    masks = np.stack([as_mask(inside), as_mask(edge), as_mask(none), as_mask(inside), as_mask(none)])
    images = np.stack([image] * 5)
    classes = np.array([1, 1, 1, 0, 0])
    s = lesion_stats(images, masks, classes)
    assert s["n_lesions"] == 3 and s["n_cls1"] == 3 and s["n_cls0"] == 2
    assert s["lesion_rate_cls1"] == pytest.approx(2 / 3)
    assert s["lesion_rate_cls0"] == pytest.approx(1 / 2)
    assert s["area_median"] == 29.0
    on = 2 * 29 + int((edge & brain).sum())
    assert s["inside_brain"] == pytest.approx(on / (2 * 29 + int(edge.sum())))
    assert s["inside_brain"] < 1.0


def test_no_lesions_gives_no_area_and_no_overlap():
    s = lesion_stats(np.full((2, 8, 8), 0.5), np.full((2, 8, 8), -1.0), np.array([1, 1]))
    assert s["n_lesions"] == 0 and s["lesion_rate_cls1"] == 0.0 and s["lesion_rate_cls0"] is None
    assert s["area_median"] is None and s["inside_brain"] is None
