"""Run names and the experiment grid's self-conditioning coin axis."""

import pytest

from slimdiff.config import ConfigError, validate_config
from slimdiff.experiments import comparison_family, expand_runs, parse_run, pretrained_runs, run_name


@pytest.mark.parametrize("variant", ["shared", "decoupled", "zero_coupling"])
@pytest.mark.parametrize("coin", ["batch", "sample"])
@pytest.mark.parametrize("source", ["trained", "pretrained"])
@pytest.mark.parametrize("p, sc", [(1.5, 0.5), (2.25, 0.0), (2.0, 1e-05)])
def test_run_names_round_trip(variant, coin, source, p, sc):
    name = run_name("v", p, sc, variant, coin, source)
    assert parse_run(name) == {"prediction": "v", "p": p, "sc": sc, "variant": variant, "coin": coin, "source": source}
    assert run_name(**parse_run(name)) == name


def test_default_names_do_not_change():
    assert run_name("x0", 1.5, 0.5) == "x0_lp1.5_sc0.5"
    assert run_name("x0", 1.5, 0.5, "decoupled") == "x0_lp1.5_sc0.5-decoupled"
    assert run_name("x0", 1.5, 0.5, "decoupled", "sample") == "x0_lp1.5_sc0.5-decoupled-sample"
    assert comparison_family("x0_lp1.5_sc0.5", 0) == "fold0/shared/sc0.5"
    assert comparison_family("x0_lp1.5_sc0.5-pretrained", 0) == "fold0/shared, pretrained/sc0.5"


@pytest.mark.parametrize(
    "bad", ["x0_lp1.5", "x0_lp1.5_sc0.5-", "x0_lp1.5_sc0.5-sample-decoupled", "x0_lp1.5_sc0.5-big"]
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
