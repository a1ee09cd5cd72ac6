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


class SpecTokenEmbedding(torch.nn.Module):
    """Upstream's ConditionalEmbeddingWithSinusoidal as shared/spec/method.md §2.3 states it, written here apart
    from this project's ConditionEmbedding and with upstream's parameter names, so that a checkpoint built from
    it has upstream's keys and its outputs are an independent reference."""

    def __init__(self, dim: int, n_bins: int, z_range: tuple[int, int], max_z: int):
        super().__init__()
        self.n_bins, self.z_range, self.max_z = n_bins, z_range, max_z
        self.pathology_embedding = torch.nn.Embedding(2, dim)
        self.z_encoder = torch.nn.Module()
        self.z_encoder.bin_embedding = torch.nn.Embedding(n_bins, dim)
        z = torch.arange(max_z, dtype=torch.float32)[:, None]
        omega = torch.exp(-2 * torch.arange(dim // 2, dtype=torch.float32) * torch.log(torch.tensor(10000.0)) / dim)
        pe = torch.zeros(max_z, dim)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(z * omega), torch.cos(z * omega)
        self.z_encoder.sinusoidal = torch.nn.Module()
        self.z_encoder.sinusoidal.register_buffer("pe", pe)
        self.z_encoder.combine = torch.nn.Linear(2 * dim, dim)
        self.combine = torch.nn.Linear(2 * dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = (tokens // self.n_bins).clamp(0, 1)
        z_bin = (tokens % self.n_bins).clamp(0, self.n_bins - 1)
        z_min, z_max = self.z_range
        centre = torch.floor(z_min + (z_bin + 0.5) / self.n_bins * (z_max - z_min + 1)).long()
        centre = centre.clamp(z_min, z_max).clamp(0, self.max_z - 1)
        e_z = self.z_encoder.combine(
            torch.cat([self.z_encoder.bin_embedding(z_bin), self.z_encoder.sinusoidal.pe[centre]], dim=-1)
        )
        return self.combine(torch.cat([self.pathology_embedding(cls), e_z], dim=-1))


def paper_upstream_config() -> dict:
    """Upstream's training config of the paper's model (method.md §2.1-2.3): 160^2, 30 z-bins over 34-115."""
    cfg = yaml.safe_load((DATA / "x0_sc.yaml").read_text())
    cfg["data"]["slice_sampling"]["z_range"] = [34, 115]
    cfg["data"]["transforms"]["roi_size"] = [160, 160, 160]
    cfg["conditioning"].update(z_bins=30, max_z=159, cfg={"enabled": False, "null_token": 60, "dropout_prob": 0.1})
    cfg["model"].update(
        channels=[64, 128, 256, 256],
        attention_levels=[False, False, True, True],
        num_res_blocks=2,
        num_head_channels=32,
        norm_num_groups=32,
    )
    cfg["sampler"].update(num_inference_steps=300, eta=0.2)
    return cfg


@pytest.mark.slow
def test_checkpoint_at_the_paper_geometry_imports_and_denoises_as_upstream(tmp_path):
    """The paper's model (26.9 M parameters, 160^2, 30 z-bins over slices 34-115) as an upstream Lightning
    checkpoint: MONAI's U-Net with upstream's token embedding, EMA beside the raw weights, the config pickled as
    OmegaConf. The committed fixtures are 32^2 with 4 z-bins; this is the size a user downloads."""
    from monai.networks.nets import DiffusionModelUNet
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    up_cfg = paper_upstream_config()
    m = up_cfg["model"]
    unet = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=4,  # x_t and the self-conditioning estimate, image and mask each
        out_channels=2,
        channels=m["channels"],
        attention_levels=m["attention_levels"],
        num_res_blocks=m["num_res_blocks"],
        num_head_channels=m["num_head_channels"],
        norm_num_groups=m["norm_num_groups"],
        num_class_embeds=60,
    )
    unet.class_embedding = SpecTokenEmbedding(256, 30, (34, 115), 159)
    raw = {k: v.clone() for k, v in unet.state_dict().items()}
    with torch.no_grad():  # the EMA differs from the raw weights, as after training
        for p in unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ema = unet.state_dict()
    ckpt = tmp_path / "epoch=0499-step=100000.ckpt"
    torch.save(
        {
            "epoch": 499,
            "global_step": 100000,
            "pytorch-lightning_version": "2.6.6",
            "state_dict": {f"model.{k}": v for k, v in raw.items()} | {"alphas_cumprod": torch.rand(1000)},
            "ema_state_dict": ema,
            "callbacks": {"EMACallback": {"ema": ema, "num_updates": 100000}},
            "hyper_parameters": OmegaConf.create(up_cfg),
        },
        ckpt,
    )

    summary = import_upstream(ckpt, tmp_path / "model.pt")
    assert summary["weights"] == "ema" and summary["parameters"] == 26_894_210  # method.md's count for "shared"
    net, _, payload = load_denoiser(tmp_path / "model.pt")
    assert payload["data_info"]["image_size"] == [160, 160] and payload["data_info"]["z_range"] == [34, 115]
    assert payload["run_cfg"]["sampler"]["steps"] == 300 and payload["run_cfg"]["diffusion"]["prediction"] == "x0"

    tokens = torch.tensor([0, 29 + 30])  # the lowest z-bin of a control, the highest of a lesion slice
    x_t, x0_sc, t = torch.randn(2, 2, 160, 160), torch.randn(2, 2, 160, 160), torch.tensor([999, 17])
    with torch.no_grad():
        ours = net(x_t, t, tokens, x0_sc)
        theirs = unet(torch.cat([x_t, x0_sc], dim=1), timesteps=t, class_labels=tokens)
    assert ours.shape == (2, 2, 160, 160)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_a_pretrained_model_is_checked_before_it_takes_its_place(tiny_model, tiny_cache, tmp_path):
    """install_pretrained checks the model in its temporary file: a refused model leaves no model.pt (nor an
    earlier one) and no temporary beside it; an accepted one is installed whole."""
    import copy

    from conftest import tiny_run_config

    from slimdiff.upstream.pretrained import install_pretrained

    out = tmp_path / "train" / "model.pt"
    claimed = tiny_run_config()
    summary = install_pretrained(tiny_model, out, tiny_cache, claimed)
    assert summary["kind"] == "model.pt" and out.read_bytes() == Path(tiny_model).read_bytes()
    wrong = copy.deepcopy(claimed)
    wrong["diffusion"]["prediction"] = "epsilon"
    with pytest.raises(UpstreamImportError, match="grid says epsilon, model is x0"):
        install_pretrained(tiny_model, out, tiny_cache, wrong)
    assert list(out.parent.iterdir()) == []
