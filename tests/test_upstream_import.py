"""Upstream checkpoints -> model.pt, checked against upstream's own outputs.

tests/data/upstream holds small checkpoints written by upstream's code (slim-diff 1.0.0, MONAI 1.5.1) and the
outputs its denoiser and its DDIM sampler gave on fixed inputs (tests/upstream/make_fixtures.py, rebuilt by
`make upstream-fixtures`). Converted, our model must give the same numbers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from slimdiff.cli.import_upstream import main as import_upstream_cli
from slimdiff.diffusion.sampler import ddim_sample
from slimdiff.model.file import load_denoiser, read_model_file
from slimdiff.upstream.checkpoint import UpstreamImportError, read_upstream_checkpoint
from slimdiff.upstream.convert import import_upstream

DATA = Path(__file__).parent / "data" / "upstream"
CASES = ["x0_sc", "eps_nosc", "v_sc_cfg", "x0_prior"]
PREDICTION = {"x0_sc": "x0", "eps_nosc": "epsilon", "v_sc_cfg": "v", "x0_prior": "x0"}


def priors_for(name: str) -> Path | None:
    return DATA / f"{name}_priors" / "zbin_priors_brain_roi.npz" if name == "x0_prior" else None


def convert(name: str, tmp_path: Path, **kwargs) -> tuple[Path, dict]:
    out = tmp_path / f"{name}.pt"
    summary = import_upstream(DATA / f"{name}.ckpt", out, priors=priors_for(name), **kwargs)
    return out, summary


@pytest.mark.parametrize("name", CASES)
def test_converted_model_matches_upstream(name, tmp_path):
    model_pt, summary = convert(name, tmp_path)
    ref = torch.load(DATA / f"{name}_reference.pt", weights_only=True)
    net, diffusion, payload = load_denoiser(model_pt)
    run = payload["run_cfg"]
    assert run["diffusion"]["prediction"] == PREDICTION[name]
    assert payload["weights"] == summary["weights"] == "ema"
    self_cond = run["self_conditioning"]["enabled"]
    assert self_cond == (name != "eps_nosc")
    # upstream's input is [x_t, x0_sc, prior]; ours takes x_t and x0_sc, and adds the prior of the token's z-bin
    x_t, x0_sc = ref["net_in"][:, :2], ref["net_in"][:, 2:4] if self_cond else None
    with torch.no_grad():
        out = net(x_t, ref["t"], ref["tokens"], x0_sc)
    assert torch.allclose(out, ref["net_out"], atol=1e-5, rtol=0)

    samples = ddim_sample(
        net, diffusion, ref["x_T"], ref["sample_tokens"], int(ref["ddim_steps"]), eta=0.0, self_condition=self_cond
    )
    assert torch.allclose(samples, ref["samples"], atol=1e-4, rtol=0)


def test_ema_is_taken_when_present_and_raw_on_request(tmp_path):
    ckpt = read_upstream_checkpoint(DATA / "x0_sc.ckpt")
    assert ckpt.ema_source == "ema_state_dict"
    key = "conv_in.conv.weight"
    assert not torch.equal(ckpt.ema[key], ckpt.raw[key])  # a few steps at decay 0.6 moved them apart
    ema_pt, _ = convert("x0_sc", tmp_path)
    raw_pt, summary = convert("x0_sc", tmp_path / "raw", weights="raw")
    assert summary["weights"] == "raw" and summary["ema_source"] is None
    assert torch.equal(read_model_file(ema_pt)["state_dict"][f"unet.{key}"], ckpt.ema[key])
    assert torch.equal(read_model_file(raw_pt)["state_dict"][f"unet.{key}"], ckpt.raw[key])
    assert read_model_file(raw_pt)["weights"] == "raw"


def test_ema_kept_only_in_the_callback_state_is_found():
    assert read_upstream_checkpoint(DATA / "eps_nosc.ckpt").ema_source == "callbacks.EMACallback.ema"


def test_provenance_records_the_source(tmp_path):
    model_pt, summary = convert("v_sc_cfg", tmp_path)
    payload = read_model_file(model_pt)
    record = payload["provenance"]["import"]
    assert record["imported_from"] == "v_sc_cfg.ckpt" and len(record["sha256"]) == 64
    assert payload["provenance"]["upstream_config"]["scheduler"]["prediction_type"] == "v_prediction"
    assert payload["run_cfg"]["model"]["cfg_null_token"] is True
    assert payload["data_info"] == {
        "z_bins": 4,
        "z_range": [3, 26],
        "image_size": [32, 32],
        "spacing_mm": None,
        "fold": None,
    }


def edited_config(tmp_path: Path, name: str, dotted: str, value) -> dict:
    cfg = yaml.safe_load((DATA / f"{name}.yaml").read_text())
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value
    return cfg


@pytest.mark.parametrize(
    "dotted,value",
    [
        ("model.resblock_updown", True),
        ("conditioning.use_sinusoidal", False),
        ("scheduler.schedule", "linear_beta"),
        ("scheduler.prediction_type", "flow"),
        ("model.bottleneck_mode", "decoupled"),
        ("model.anatomical_conditioning_method", "cross_attention"),
    ],
)
def test_unmappable_setting_names_the_upstream_key(tmp_path, dotted, value):
    name = "x0_prior" if "anatomical" in dotted else "x0_sc"
    cfg = edited_config(tmp_path, name, dotted, value)
    with pytest.raises(UpstreamImportError, match=dotted.replace(".", r"\.")):
        import_upstream(DATA / f"{name}.ckpt", tmp_path / "m.pt", config=cfg, priors=priors_for(name))
    assert not (tmp_path / "m.pt").exists()


def test_config_that_does_not_fit_the_weights_is_an_error_not_a_crash(tmp_path):
    cfg = edited_config(tmp_path, "x0_sc", "model.channels", [16, 32])
    with pytest.raises(UpstreamImportError, match="weights do not match"):
        import_upstream(DATA / "x0_sc.ckpt", tmp_path / "m.pt", config=cfg)


def test_concat_prior_without_priors_file_is_an_error(tmp_path):
    with pytest.raises(UpstreamImportError, match="--priors"):
        import_upstream(DATA / "x0_prior.ckpt", tmp_path / "m.pt")


def test_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((DATA / "x0_sc.ckpt").read_bytes()[:5000])
    with pytest.raises(UpstreamImportError, match="truncated.ckpt: not a readable checkpoint"):
        read_upstream_checkpoint(truncated)

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, foreign)
    with pytest.raises(UpstreamImportError, match="no `model.\\*` weights"):
        read_upstream_checkpoint(foreign)

    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "x": zipfile.ZipInfo("a")}, hostile)
    with pytest.raises(UpstreamImportError, match="refused without running them"):
        read_upstream_checkpoint(hostile)

    with pytest.raises(UpstreamImportError, match="not found"):
        read_upstream_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.slow
def test_cli_converts_and_reports(tmp_path, capsys):
    shutil.copy(DATA / "x0_sc.yaml", tmp_path / "train.yaml")
    out = tmp_path / "model.pt"
    args = ["--ckpt", str(DATA / "x0_sc.ckpt"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "slimdiff.cli.import_upstream", *args, "--config", str(tmp_path / "train.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert '"weights": "ema"' in done.stdout and out.exists()
    assert import_upstream_cli([*args, "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: upstream config not found" in capsys.readouterr().err
