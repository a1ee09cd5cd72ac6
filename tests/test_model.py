import pytest
import torch

from slimdiff.config import validate_config
from slimdiff.model.conditioning import ConditionEmbedding
from slimdiff.model.factory import build_denoiser, count_parameters

PAPER = validate_config({})["model"]


@pytest.mark.parametrize(
    "variant, self_cond, expected",
    [
        ("shared", True, 26_894_210),  # the paper model (26.9 M parameters)
        ("shared", False, 26_893_058),
        ("decoupled", True, 27_029_378),
        ("zero_coupling", False, 27_012_626),
    ],
)
def test_paper_parameter_counts(variant, self_cond, expected):
    net = build_denoiser(dict(PAPER, variant=variant), self_cond, 30, (34, 115))
    assert count_parameters(net) == expected


def test_condition_embedding_parameter_count_and_decoding():
    emb = ConditionEmbedding(256, 30, (34, 115))
    assert count_parameters(emb) == 270_848
    out = emb(torch.tensor([0, 29, 30, 59]))
    assert out.shape == (4, 256)
    assert not torch.allclose(out[0], out[2])  # same bin, other class
    assert not torch.allclose(out[0], out[1])  # same class, other bin
    cfg = ConditionEmbedding(16, 5, (0, 9), null_token=True)
    assert torch.allclose(cfg(torch.tensor([10]))[0], cfg.null)


TINY = dict(
    PAPER,
    channels=[8, 16],
    attention_levels=[False, True],
    num_res_blocks=1,
    num_head_channels=8,
    norm_num_groups=4,
    twin={"channels": [8, 16], "num_head_channels": 8, "norm_num_groups": 4},
    decoupled_extra_res_blocks=1,
)


@pytest.mark.parametrize("variant", ["shared", "decoupled", "zero_coupling"])
@pytest.mark.parametrize("self_cond", [True, False])
def test_forward_shapes(variant, self_cond):
    net = build_denoiser(dict(TINY, variant=variant), self_cond, 4, (0, 7))
    x = torch.randn(3, 2, 32, 32)
    out = net(x, torch.tensor([0, 500, 999]), torch.tensor([0, 3, 7]), torch.zeros_like(x) if self_cond else None)
    assert out.shape == (3, 2, 32, 32)


def _perturb_zero_init(net):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))


def test_coupling_mask_input_reaches_image_output_only_when_coupled():
    x = torch.randn(1, 2, 32, 32)
    x2 = x.clone()
    x2[:, 1] = torch.randn(32, 32)
    t, tok = torch.tensor([100]), torch.tensor([1])
    for variant, coupled in (("shared", True), ("decoupled", True), ("zero_coupling", False)):
        net = build_denoiser(dict(TINY, variant=variant), False, 4, (0, 7)).eval()
        _perturb_zero_init(net)  # MONAI zero-initialises the output conv
        changed = not torch.allclose(net(x, t, tok)[:, 0], net(x2, t, tok)[:, 0])
        assert changed == coupled, variant


def test_conditioning_changes_the_output():
    net = build_denoiser(dict(TINY, variant="shared"), False, 4, (0, 7)).eval()
    _perturb_zero_init(net)
    x, t = torch.randn(1, 2, 32, 32), torch.tensor([100])
    assert not torch.allclose(net(x, t, torch.tensor([1])), net(x, t, torch.tensor([5])))
