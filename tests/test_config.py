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


def test_loss_defaults_keep_the_reference_ffl_and_per_channel_kendall():
    loss = validate_config({})["loss"]
    assert loss["uncertainty_weighting"] is False and loss["uncertainty_log_var_init"] is None
    assert loss["ffl"]["form"] == "reference" and loss["ffl"]["detach_weights"] is True
    assert validate_config({})["self_conditioning"]["per_sample"] is False  # upstream: one coin per batch


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
        ({"experiments": [{"prediction": ["eps"]}]}, "experiments.0.prediction.0: 'eps' is not one of"),
        ({"experiments": {"p": [0]}}, "experiments.p.0"),
        ({"gpu": {"devices": "0,1"}}, "gpu.devices"),
        ({"loss": {"ffl": {"form": "jiang"}}}, "loss.ffl.form"),
        ({"loss": {"uncertainty_log_var_init": [0.0]}}, "loss.uncertainty_log_var_init"),
        ({"experiments": {"self_conditioning_coin": ["per_batch"]}}, "experiments.self_conditioning_coin.0"),
    ],
)
def test_invalid_config_names_the_key(bad, where):
    with pytest.raises(ConfigError) as err:
        validate_config(bad, source="my.yaml")
    assert f"my.yaml: {where}" in str(err.value).splitlines()[0]


def test_every_problem_is_one_line_with_the_source_and_key_path():
    bad = {"training": {"lr": -1}, "data": {"cache": {"z_bins": 0}}}
    with pytest.raises(ConfigError) as err:
        validate_config(bad, source="my.yaml")
    assert str(err.value).splitlines() == [
        "my.yaml: data.cache.z_bins: 0 is less than the minimum of 1",
        "my.yaml: training.lr: -1 is less than or equal to the minimum of 0",
    ]


def test_shipped_configs_validate():
    from conftest import REPO

    from slimdiff.experiments import expand_runs

    runs = {name: expand_runs(load_config(REPO / "config" / name)) for name in ("config.yaml", "paper.yaml")}
    assert sorted(runs["config.yaml"]) == ["epsilon_lp1.5_sc0.5", "v_lp1.5_sc0.5", "x0_lp1.5_sc0.5"]
    # Table 1 and the self-conditioning ablation on one split (21 runs), the camera-ready coupling grid (4 runs)
    assert len(runs["paper.yaml"]) == 25
    overlay = load_config(REPO / "config" / "ablation-cpu.yaml")  # extends config.yaml
    assert len(expand_runs(overlay)) == 9  # Table 1's 3 x 3 grid at the default's scale


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_grids_union_their_runs_and_folds():
    from slimdiff.experiments import expand_runs, run_folds

    cfg = validate_config(
        {
            "training": {"folds": [0]},
            "experiments": [
                {"prediction": ["epsilon", "x0"], "p": [1.5, 2.0]},
                {"prediction": ["x0"], "p": [1.5], "folds": [1, 2]},
                {"prediction": ["x0"], "self_conditioning": [0.0], "variant": ["zero_coupling"],
                 "overrides": {"loss": {"mask_p": 2.0}}},
            ],
        }
    )  # fmt: skip
    runs = expand_runs(cfg)
    assert list(runs) == [
        "epsilon_lp1.5_sc0.5", "epsilon_lp2.0_sc0.5", "x0_lp1.5_sc0.5", "x0_lp2.0_sc0.5", "x0_lp1.5_sc0.0-zero_coupling"
    ]  # fmt: skip
    assert runs["x0_lp1.5_sc0.5"]["training"]["folds"] == [0, 1, 2]
    assert runs["x0_lp1.5_sc0.0-zero_coupling"]["loss"]["mask_p"] == 2.0
    assert runs["x0_lp1.5_sc0.5"]["loss"]["mask_p"] is None
    assert len(run_folds(runs)) == 7


def test_conflicting_grids_and_bad_overrides_are_errors():
    from slimdiff.experiments import expand_runs

    twice = {"experiments": [{"prediction": ["x0"]}, {"prediction": ["x0"], "overrides": {"loss": {"mask_p": 2.0}}}]}
    with pytest.raises(ConfigError, match="x0_lp1.5_sc0.5 is asked for twice"):
        expand_runs(validate_config(twice))
    typo = {"experiments": [{"name": "mine", "overrides": {"loss": {"mask_q": 2.0}}}]}
    with pytest.raises(ConfigError, match="mine run x0_lp1.5_sc0.5"):
        expand_runs(validate_config(typo))
