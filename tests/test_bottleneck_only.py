"""The bottleneck_only coupling variant: two single-channel U-Nets that share one middle path."""

import copy

import pytest
import torch
import yaml
from conftest import REPO

from slimdiff.config import ConfigError, validate_config
from slimdiff.experiments import expand_runs, parse_run
from slimdiff.model.factory import BottleneckTwinDenoiser, build_denoiser, count_parameters, use_channels_last
from slimdiff.model.file import load_denoiser, save_model

# spec/method.md §2.5: BottleneckSharedTwinDDPM, in=1 per branch (self-conditioning off), 26,352,482 [verified]
STATED_PARAMS = 26_352_482
TINY = dict(
    validate_config({})["model"],
    variant="bottleneck_only",
    attention_levels=[False, True],
    num_res_blocks=1,
    bottleneck_only={"channels": [8, 16], "num_head_channels": 8, "norm_num_groups": 4, "extra_res_blocks": 1},
)


def _tiny(self_cond=False, **extra):
    torch.manual_seed(0)
    net = build_denoiser(dict(TINY, **extra), self_cond, 4, (0, 7), (32, 32))
    with torch.no_grad():  # MONAI zero-initialises the output convs and each ResBlock's second conv
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _inputs(b=2):
    torch.manual_seed(1)
    return torch.randn(b, 2, 32, 32), torch.tensor([3, 700, 999][:b]), torch.tensor([1, 6, 7][:b])


def test_parameter_count_of_the_paper_config_matches_the_spec():
    model = validate_config(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))["model"]
    net = build_denoiser(dict(model, variant="bottleneck_only"), False, 30, (34, 115))
    assert isinstance(net, BottleneckTwinDenoiser)
    # The spec states the exact count; "26.35 M" elsewhere is its rounding.
    assert count_parameters(net) == STATED_PARAMS
    assert round(count_parameters(net) / 1e6, 2) == 26.35
    # Shared between the branches: the conditioning embedding only; the middle path belongs to neither branch.
    image, mask = ({id(p) for p in b.parameters()} for b in net.branches)
    assert image & mask == {id(p) for p in net.embedding.parameters()}
    assert not {id(p) for p in net.shared_middle.parameters()} & (image | mask)
    assert net.shared_middle[1].attn.num_heads == 28  # 336 channels in heads of 12


@pytest.mark.parametrize("self_cond", [False, True])
def test_forward_shapes_and_input_channels(self_cond):
    net = _tiny(self_cond)
    assert [b.conv_in.conv.in_channels for b in net.branches] == [1 + self_cond] * 2
    x, t, tok = _inputs(3)
    out = net(x, t, tok, torch.randn_like(x) if self_cond else None)
    assert out.shape == (3, 2, 32, 32)
    if self_cond:  # a missing estimate is zeros, as in the other variants
        assert torch.equal(net(x, t, tok), net(x, t, tok, torch.zeros_like(x)))


def _grads(net, loss_of):
    net.zero_grad()
    x, t, tok = _inputs()
    loss_of(net(x, t, tok)).backward()
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in net.named_parameters()}


def _touched(grads, prefix):
    return {n: g for n, g in grads.items() if n.startswith(prefix)}


def test_the_paths_share_only_the_bottleneck():
    """A loss on one output reaches the other branch's encoder (through the shared middle), never its decoder."""
    net = _tiny()
    img = _grads(net, lambda out: out[:, 0].square().mean())
    msk = _grads(net, lambda out: out[:, 1].square().mean())
    for grads, own, other in ((img, "branches.0.", "branches.1."), (msk, "branches.1.", "branches.0.")):
        assert not any(_touched(grads, other + "up_blocks").values())
        assert not any(_touched(grads, other + "out").values())
        assert all(_touched(grads, other + "down_blocks").values())
        assert all(_touched(grads, other + "conv_in").values())
        assert all(_touched(grads, own).values())
        assert all(_touched(grads, "shared_middle").values())
    # The shared middle and both decoders take the image branch's embedding (upstream): the mask branch's
    # time MLP only feeds the mask encoder, the image branch's reaches the mask output too.
    assert all(_touched(msk, "branches.0.time_embed").values())


def test_mask_input_reaches_the_image_output_only_through_the_bottleneck():
    net = _tiny().eval()
    x, t, tok = _inputs(1)
    x2 = x.clone()
    x2[:, 1] = torch.randn(32, 32)
    with torch.no_grad():
        assert not torch.allclose(net(x, t, tok)[:, 0], net(x2, t, tok)[:, 0])
        net.shared_middle = torch.nn.ModuleList()  # no middle: no coupling left
        assert torch.equal(net(x, t, tok)[:, 0], net(x2, t, tok)[:, 0])


def test_conditioning_tokens_and_the_null_token():
    net = _tiny(cfg_null_token=True).eval()
    x, t, _ = _inputs(1)
    with torch.no_grad():
        outs = [net(x, t, torch.tensor([k])) for k in (1, 5, 8)]  # 8 = 2 * 4 bins: the null token
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    assert net.branches[0].class_embedding is net.branches[1].class_embedding is net.embedding


def test_channels_last_keeps_values_keys_and_gradients():
    plain = _tiny(True)
    fast = use_channels_last(copy.deepcopy(plain))
    assert list(fast.state_dict()) == list(plain.state_dict())
    x, t, tok = _inputs()
    outs, grads = [], []
    for net in (plain, fast):
        out = net(x, t, tok, torch.zeros_like(x))
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_model_file_round_trip(tmp_path):
    net = _tiny(True).eval()
    cfg = validate_config({"model": dict(TINY, cfg_null_token=False)})
    run_cfg = {k: cfg[k] for k in ("model", "diffusion", "self_conditioning")}
    info = {"z_bins": 4, "z_range": [0, 7], "image_size": [32, 32]}
    save_model(tmp_path / "model.pt", net.state_dict(), run_cfg, info, {}, weights="ema")
    loaded, _, payload = load_denoiser(tmp_path / "model.pt")
    assert isinstance(loaded, BottleneckTwinDenoiser) and payload["run_cfg"]["model"]["variant"] == "bottleneck_only"
    x, t, tok = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(x, t, tok), net(x, t, tok))
    assert loaded.branches[1].class_embedding is loaded.embedding  # sharing survives load_state_dict


def test_no_anatomical_prior():
    with pytest.raises(ConfigError, match="anatomical_prior"):
        build_denoiser(dict(TINY, anatomical_prior="concat"), False, 4, (0, 7))


def test_variant_in_the_schema_and_run_names():
    grid = {"prediction": ["x0"], "self_conditioning": [0.0], "variant": ["bottleneck_only"], "folds": [0]}
    cfg = validate_config({"experiments": [grid]})
    runs = expand_runs(cfg)
    assert list(runs) == ["x0_lp1.5_sc0.0-bottleneck_only"]
    assert runs["x0_lp1.5_sc0.0-bottleneck_only"]["model"]["variant"] == "bottleneck_only"
    assert parse_run("x0_lp1.5_sc0.0-bottleneck_only-sample")["variant"] == "bottleneck_only"
