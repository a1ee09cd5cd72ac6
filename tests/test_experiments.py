"""Run names and the experiment grid's self-conditioning coin axis."""

import pytest

from slimdiff.config import ConfigError, validate_config
from slimdiff.experiments import (
    comparison_family,
    expand_runs,
    parse_run,
    pretrained_runs,
    run_name,
    run_protocols,
)


@pytest.mark.parametrize("variant", ["shared", "decoupled", "zero_coupling", "bottleneck_only"])
@pytest.mark.parametrize("coin", ["batch", "sample"])
@pytest.mark.parametrize("source", ["trained", "pretrained"])
@pytest.mark.parametrize("protocol", ["", "camera_ready"])
@pytest.mark.parametrize("p, sc", [(1.5, 0.5), (2.25, 0.0), (2.0, 1e-05)])
def test_run_names_round_trip(variant, coin, source, protocol, p, sc):
    name = run_name("v", p, sc, variant, coin, source, protocol)
    assert parse_run(name) == {
        "prediction": "v",
        "p": p,
        "sc": sc,
        "variant": variant,
        "coin": coin,
        "source": source,
        "protocol": protocol,
    }
    assert run_name(**parse_run(name)) == name


def test_default_names_do_not_change():
    assert run_name("x0", 1.5, 0.5) == "x0_lp1.5_sc0.5"
    assert run_name("x0", 1.5, 0.5, "decoupled") == "x0_lp1.5_sc0.5-decoupled"
    assert run_name("x0", 1.5, 0.5, "decoupled", "sample") == "x0_lp1.5_sc0.5-decoupled-sample"
    assert comparison_family("x0_lp1.5_sc0.5", 0) == "fold0/shared/sc0.5"
    assert comparison_family("x0_lp1.5_sc0.5-pretrained", 0) == "fold0/shared, pretrained/sc0.5"


@pytest.mark.parametrize(
    "bad",
    ["x0_lp1.5", "x0_lp1.5_sc0.5-", "x0_lp1.5_sc0.5-sample-decoupled", "x0_lp1.5_sc0.5-big", "x0_lp1.5_sc0.5@"],
)
def test_parse_run_refuses_other_names(bad):
    with pytest.raises(ValueError, match="not a run name"):
        parse_run(bad)


def test_grid_with_both_coins_gives_two_runs_in_two_families():
    cfg = validate_config({"experiments": {"prediction": ["x0", "v"], "self_conditioning_coin": ["batch", "sample"]}})
    runs = expand_runs(cfg)
    assert list(runs) == ["x0_lp1.5_sc0.5", "x0_lp1.5_sc0.5-sample", "v_lp1.5_sc0.5", "v_lp1.5_sc0.5-sample"]
    assert runs["x0_lp1.5_sc0.5"]["self_conditioning"]["per_sample"] is False
    assert runs["x0_lp1.5_sc0.5-sample"]["self_conditioning"]["per_sample"] is True
    assert {name: parse_run(name)["coin"] for name in runs} == {
        "x0_lp1.5_sc0.5": "batch",
        "x0_lp1.5_sc0.5-sample": "sample",
        "v_lp1.5_sc0.5": "batch",
        "v_lp1.5_sc0.5-sample": "sample",
    }
    families = {name: comparison_family(name, 0) for name in runs}
    assert families["x0_lp1.5_sc0.5"] == families["v_lp1.5_sc0.5"] == "fold0/shared/sc0.5"
    assert (
        families["x0_lp1.5_sc0.5-sample"] == families["v_lp1.5_sc0.5-sample"] == "fold0/shared, per-sample coin/sc0.5"
    )


def test_without_self_conditioning_the_coin_does_not_double_a_run():
    cfg = validate_config(
        {"experiments": {"self_conditioning": [0.0, 0.5], "self_conditioning_coin": ["batch", "sample"]}}
    )
    runs = expand_runs(cfg)
    assert list(runs) == ["x0_lp1.5_sc0.0", "x0_lp1.5_sc0.5", "x0_lp1.5_sc0.5-sample"]
    assert runs["x0_lp1.5_sc0.0"]["self_conditioning"] == {"enabled": False, "probability": 0.0, "per_sample": False}


def test_names_follow_the_coin_however_it_is_set():
    section = validate_config({"self_conditioning": {"per_sample": True}, "experiments": {}})
    assert list(expand_runs(section)) == ["x0_lp1.5_sc0.5-sample"]  # no grid axis: the section decides
    axis = validate_config(
        {"self_conditioning": {"per_sample": True}, "experiments": {"self_conditioning_coin": ["batch"]}}
    )
    assert list(expand_runs(axis)) == ["x0_lp1.5_sc0.5"]
    override = {"experiments": {"overrides": {"self_conditioning": {"per_sample": True}}}}
    assert list(expand_runs(validate_config(override))) == ["x0_lp1.5_sc0.5-sample"]


def test_a_bad_override_names_the_run_with_its_coin():
    bad = {"experiments": {"self_conditioning_coin": ["sample"], "overrides": {"self_conditioning": {"per_sample": 1}}}}
    with pytest.raises(ConfigError, match="run x0_lp1.5_sc0.5-sample"):
        expand_runs(validate_config(bad))


def pretrained_grid(**grid) -> dict:
    return validate_config(
        {
            "experiments": [
                {"prediction": ["x0"], "folds": [0]},
                {"prediction": ["x0"], "pretrained": {"file": "pretrained/m.ckpt"}, "folds": [0, 1], **grid},
            ]
        }
    )


def test_a_pretrained_grid_is_one_run_named_pretrained():
    config = pretrained_grid()
    runs = expand_runs(config)
    assert list(runs) == ["x0_lp1.5_sc0.5", "x0_lp1.5_sc0.5-pretrained"]
    assert runs["x0_lp1.5_sc0.5-pretrained"]["training"]["folds"] == [0, 1]
    assert pretrained_runs(config) == {
        "x0_lp1.5_sc0.5-pretrained": {"file": "pretrained/m.ckpt", "config": None, "priors": None, "weights": "auto"}
    }


def test_a_pretrained_grid_describes_one_model():
    with pytest.raises(ConfigError, match="`p` takes one value"):
        expand_runs(pretrained_grid(p=[1.5, 2.0]))


def two_protocols(**coupling) -> dict:
    """Table 1's cell on a single split and the same cell, trained longer, on 3 upstream folds."""
    return validate_config(
        {
            "protocols": {
                "table1": {"split": {"n_folds": 1, "val_fraction": 0.1}, "generation": {"replicas": 5}},
                "camera_ready": {
                    "split": {"method": "kfold", "n_folds": 3, "seed": 42},
                    "training": {"max_epochs": 1000, "batch_size": 16, "devices": 2},
                    "generation": {"replicas": 12, "n_per_condition": 150},
                    "scoring": {"regime": "merged", "zbin_kid": {}},
                },
            },
            "experiments": [
                {"name": "table1", "protocol": "table1", "prediction": ["x0"]},
                {"name": "coupling", "protocol": "camera_ready", "variant": ["shared", "decoupled"], **coupling},
            ],
        }
    )


def test_one_cell_in_two_protocols_is_two_trainings():
    config = two_protocols()
    runs = expand_runs(config)
    assert list(runs) == [
        "x0_lp1.5_sc0.5@table1",
        "x0_lp1.5_sc0.5@camera_ready",
        "x0_lp1.5_sc0.5-decoupled@camera_ready",
    ]
    assert runs["x0_lp1.5_sc0.5@table1"]["training"]["folds"] == [0]  # the single split's one fold
    assert runs["x0_lp1.5_sc0.5@table1"]["training"]["max_epochs"] == 500
    cr = runs["x0_lp1.5_sc0.5@camera_ready"]["training"]
    assert cr["folds"] == [0, 1, 2] and (cr["max_epochs"], cr["batch_size"], cr["devices"]) == (1000, 16, 2)
    resolved = run_protocols(config)
    assert resolved["x0_lp1.5_sc0.5@table1"]["generation"]["replicas"] == 5
    assert resolved["x0_lp1.5_sc0.5@table1"]["scoring"]["regime"] == "per_replica"
    assert resolved["x0_lp1.5_sc0.5@camera_ready"]["generation"]["n_per_condition"] == 150
    assert resolved["x0_lp1.5_sc0.5@camera_ready"]["scoring"]["zbin_kid"] == {
        "bins": 7,
        "subset_size": 30,
        "subsets": 50,
    }
    assert comparison_family("x0_lp1.5_sc0.5@camera_ready", 0) == "fold0@camera_ready/shared/sc0.5"


def test_protocol_errors_name_the_grid():
    with pytest.raises(
        ConfigError, match="coupling: folds \\[0, 3\\] but protocol 'camera_ready' splits the pool into 3"
    ):
        expand_runs(two_protocols(folds=[0, 3]))
    kfold_of_one = validate_config({"protocols": {"cr": {"split": {"method": "kfold", "n_folds": 1}}}})
    with pytest.raises(ConfigError, match="protocols.cr.split: method kfold needs n_folds >= 2"):
        expand_runs(kfold_of_one)
    with pytest.raises(ConfigError, match="protocol 'other' is not in the config's `protocols`"):
        expand_runs(two_protocols(protocol="other"))
    same_protocol = validate_config(
        {"experiments": [{"prediction": ["x0"]}, {"prediction": ["x0"], "overrides": {"training": {"max_epochs": 3}}}]}
    )
    with pytest.raises(ConfigError, match="put the grids in different `protocols`"):
        expand_runs(same_protocol)


def test_a_pretrained_grid_may_name_a_protocol():
    config = validate_config(
        {
            "protocols": {"table1": {"split": {"n_folds": 1}}},
            "experiments": [
                {"protocol": "table1", "prediction": ["x0"]},
                {"protocol": "table1", "prediction": ["x0"], "pretrained": {"file": "pretrained/m.ckpt"}},
            ],
        }
    )
    assert list(expand_runs(config)) == ["x0_lp1.5_sc0.5@table1", "x0_lp1.5_sc0.5-pretrained@table1"]
    assert list(pretrained_runs(config)) == ["x0_lp1.5_sc0.5-pretrained@table1"]


@pytest.mark.parametrize(
    "grids, line",
    [
        ([{}, {"prediction": ["eps"]}], "config: experiments.1.prediction.0: 'eps' is not one of"),
        ({"p": [0]}, "config: experiments.p.0: 0 is less than or equal to the minimum of 0"),
    ],
)
def test_a_bad_grid_is_named_by_its_key_path_as_validate_config_names_it(grids, line):
    """An unvalidated config's grids are checked again, with the same error lines as the whole config."""
    from slimdiff.experiments import experiment_grids

    with pytest.raises(ConfigError) as err:
        experiment_grids({"experiments": grids})
    assert str(err.value).startswith(line)
    with pytest.raises(ConfigError) as whole:
        validate_config({"experiments": grids}, source="config")
    assert line in str(whole.value)
