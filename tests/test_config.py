import pytest

from slimdiff.config import ConfigError, load_config, validate_config


def test_defaults_are_the_paper_values():
    cfg = validate_config({})
    cache = cfg["data"]["cache"]
    assert cache["spacing"] == [1.25, 1.25, 1.25]
    assert cache["roi_size"] == [160, 160, 160]
    assert cache["z_bins"] == 30
    assert cache["lesion_area_min_px"] == 30
    assert cfg["data"]["splits"]["n_folds"] == 3


def test_partial_section_keeps_other_defaults():
    cfg = validate_config({"data": {"cache": {"z_bins": 10}}})
    assert cfg["data"]["cache"]["z_bins"] == 10
    assert cfg["data"]["cache"]["percentiles"] == [0.5, 99.5]


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"data": {"cache": {"z_binz": 3}}}, "data.cache"),
        ({"data": {"cache": {"z_range": [1]}}}, "data.cache.z_range"),
        ({"data": {"layout": "flat"}}, "data.layout"),
        ({"data": {"splits": {"n_folds": 0}}}, "data.splits.n_folds"),
    ],
)
def test_invalid_config_names_the_key(bad, where):
    with pytest.raises(ConfigError) as err:
        validate_config(bad, source="my.yaml")
    assert "my.yaml" in str(err.value) and where in str(err.value)


def test_shipped_configs_validate():
    from conftest import REPO

    for name in ("config.yaml", "paper.yaml"):
        cfg = load_config(REPO / "config" / name)
        assert cfg["data"]["cache"]["z_bins"] >= 1


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
