"""The joint image+mask denoiser and its coupling variants, behind one factory.

All variants map (x_t [B,2,H,W], t [B], token [B], x0 self-conditioning estimate [B,2,H,W] or None) to a
2-channel output (image, mask) in the parameterisation of `diffusion.prediction`.

* shared:        one MONAI DiffusionModelUNet over [x_t, x0_sc] (paper default)
* decoupled:     the same U-Net whose bottleneck is split into two half-width paths, merged by 1x1 convs
* zero_coupling: two single-channel U-Nets (image, mask) that share only the conditioning embedding
* bottleneck_only: two single-channel U-Nets whose deepest features meet in one shared middle path (upstream
                 BottleneckSharedTwinDDPM); encoders, decoders and skips stay separate

Optionally (shared/decoupled), an anatomical z-bin prior (model/priors.py) enters as an extra input channel
(`concat`) or as cross-attention context (`cross_attention`). The priors are a buffer of the model, so a
model.pt carries them and sampling needs nothing else.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import SpatialAttentionBlock
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock, get_timestep_embedding
from torch import nn

from slimdiff.config import ConfigError
from slimdiff.model.channels_last import keep_channels_last
from slimdiff.model.conditioning import ConditionEmbedding
from slimdiff.model.priors import PriorEncoder


def bottleneck_path(
    channels: int, temb: int, groups: int, head_channels: int, extra: int, flash: bool
) -> nn.ModuleList:
    """ResBlock -> self-attention -> `extra` ResBlocks -> ResBlock, all at `channels` (run with run_path)."""

    def res():
        return DiffusionUNetResnetBlock(2, channels, temb, channels, norm_num_groups=groups, norm_eps=1e-6)

    attn = SpatialAttentionBlock(
        2, channels, num_head_channels=head_channels, norm_num_groups=groups, norm_eps=1e-6, use_flash_attention=flash
    )
    return nn.ModuleList([res(), attn, *[res() for _ in range(extra)], res()])


def run_path(layers: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        h = layer(h, temb) if isinstance(layer, DiffusionUNetResnetBlock) else layer(h)
    return h


class DecoupledMiddleBlock(nn.Module):
    """Bottleneck split: 1x1 conv, two independent half-width paths, concat, 1x1 conv."""

    def __init__(self, channels: int, temb: int, groups: int, head_channels: int, extra: int, flash: bool):
        super().__init__()
        half = channels // 2
        self.split = nn.Conv2d(channels, channels, 1)
        self.paths = nn.ModuleList([bottleneck_path(half, temb, groups, head_channels, extra, flash) for _ in range(2)])
        self.merge = nn.Conv2d(channels, channels, 1)

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, context=None) -> torch.Tensor:
        halves = self.split(hidden_states).chunk(2, dim=1)
        outs = [run_path(layers, h, temb) for h, layers in zip(halves, self.paths, strict=True)]
        return self.merge(torch.cat(outs, dim=1))


def _unet(
    in_ch: int, out_ch: int, channels, attention, res_blocks, head_ch, groups, flash, context_dim=None
) -> DiffusionModelUNet:
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_ch,
        out_channels=out_ch,
        channels=tuple(channels),
        attention_levels=tuple(attention),
        num_res_blocks=res_blocks,
        num_head_channels=head_ch,
        norm_num_groups=groups,
        norm_eps=1e-6,
        num_class_embeds=1,  # replaced by ConditionEmbedding below
        use_flash_attention=flash,
        with_conditioning=context_dim is not None,
        cross_attention_dim=context_dim,
    )


class JointDenoiser(nn.Module):
    """Shared or decoupled: one U-Net over both channels."""

    def __init__(self, model_cfg: dict, self_cond: bool, n_bins: int, z_range, image_size=(64, 64)):
        super().__init__()
        m = model_cfg
        self.self_cond, self.n_bins, self.prior_mode = self_cond, n_bins, m["anatomical_prior"]
        in_ch = 2 + (2 if self_cond else 0) + (1 if self.prior_mode == "concat" else 0)
        context_dim = m["prior_context_dim"] if self.prior_mode == "cross_attention" else None
        self.unet = _unet(
            in_ch,
            2,
            m["channels"],
            m["attention_levels"],
            m["num_res_blocks"],
            m["num_head_channels"],
            m["norm_num_groups"],
            m["use_flash_attention"],
            context_dim,
        )
        temb = 4 * m["channels"][0]
        self.unet.class_embedding = ConditionEmbedding(temb, n_bins, z_range, m["cfg_null_token"])
        if m["variant"] == "decoupled":
            self.unet.middle_block = DecoupledMiddleBlock(
                m["channels"][-1],
                temb,
                m["norm_num_groups"],
                m["num_head_channels"],
                m["decoupled_extra_res_blocks"],
                m["use_flash_attention"],
            )
        if self.prior_mode != "none":
            self.register_buffer("priors", torch.zeros(n_bins, *image_size))  # filled by set_priors
        self.prior_encoder = PriorEncoder(context_dim) if context_dim else None

    def set_priors(self, roi) -> None:
        """Store the per-z-bin ROI (n_bins, H, W) as +1 inside / -1 outside."""
        self.priors.copy_(torch.as_tensor(roi, dtype=torch.float32) * 2 - 1)

    def forward(self, x_t, t, tokens, x0_sc=None):
        inputs, context = [x_t], None
        if self.self_cond:
            inputs.append(torch.zeros_like(x_t) if x0_sc is None else x0_sc)
        if self.prior_mode != "none":
            # token % n_bins is the slice's z-bin, for null (dropped) tokens too: see conditioning.py
            prior = self.priors[tokens.long() % self.n_bins][:, None].to(x_t.dtype)
            if self.prior_mode == "concat":
                inputs.append(prior)
            else:
                context = self.prior_encoder(prior)
        return self.unet(_like_weights(torch.cat(inputs, dim=1), self), t, context=context, class_labels=tokens)


class TwinDenoiser(nn.Module):
    """zero_coupling: image and mask each get their own U-Net; only the conditioning embedding is shared."""

    def __init__(self, model_cfg: dict, self_cond: bool, n_bins: int, z_range):
        super().__init__()
        if model_cfg["anatomical_prior"] != "none":
            raise ConfigError("model.anatomical_prior needs the shared or decoupled variant, not zero_coupling")
        self.self_cond = self_cond
        tw = model_cfg["twin"]
        in_ch = 1 + (1 if self_cond else 0)
        self.branches = nn.ModuleList(
            _unet(
                in_ch,
                1,
                tw["channels"],
                model_cfg["attention_levels"],
                model_cfg["num_res_blocks"],
                tw["num_head_channels"],
                tw["norm_num_groups"],
                model_cfg["use_flash_attention"],
            )
            for _ in range(2)
        )
        self.embedding = ConditionEmbedding(4 * tw["channels"][0], n_bins, z_range, model_cfg["cfg_null_token"])
        for branch in self.branches:
            branch.class_embedding = self.embedding

    def forward(self, x_t, t, tokens, x0_sc=None):
        outs = []
        for c, branch in enumerate(self.branches):
            x = x_t[:, c : c + 1]
            if self.self_cond:
                x = torch.cat([x, torch.zeros_like(x) if x0_sc is None else x0_sc[:, c : c + 1]], dim=1)
            outs.append(branch(_like_weights(x, self), t, class_labels=tokens))
        return torch.cat(outs, dim=1)


class _NoMiddle(nn.Module):
    """Stands in for a branch U-Net's own middle block (bottleneck_only has one shared middle instead)."""

    def forward(self, hidden_states, temb=None, context=None):
        return hidden_states


def _encode(unet: DiffusionModelUNet, x, t, tokens):
    """MONAI's forward up to the middle block: (deepest features, skips, time + class embedding)."""
    emb = unet.time_embed(get_timestep_embedding(t, unet.block_out_channels[0]).to(dtype=x.dtype))
    emb = emb + unet.class_embedding(tokens).to(dtype=x.dtype)
    h = unet.conv_in(x)
    skips = [h]
    for block in unet.down_blocks:
        h, res = block(hidden_states=h, temb=emb, context=None)
        skips.extend(res)
    return h, skips, emb


def _decode(unet: DiffusionModelUNet, h, skips, emb):
    """MONAI's forward after the middle block: up blocks, each taking its skips from the end, then the head."""
    for block in unet.up_blocks:
        n = len(block.resnets)
        h = block(hidden_states=h, res_hidden_states_list=skips[-n:], temb=emb, context=None)
        skips = skips[:-n]
    return unet.out(h)


class BottleneckTwinDenoiser(nn.Module):
    """bottleneck_only: two single-channel U-Nets (image, mask) coupled only through one shared middle path.

    Each branch encodes its own channel (own conv_in, down blocks and time MLP, the shared conditioning
    embedding); the two deepest feature maps (C each) are concatenated, go through one path at 2C channels
    [ResBlock -> self-attention -> extra ResBlocks -> ResBlock], are split back to C + C and decoded by each
    branch with its own skips. As upstream, the shared middle and both decoders get the image branch's
    time + class embedding; the mask branch's time MLP feeds the mask encoder only.
    """

    def __init__(self, model_cfg: dict, self_cond: bool, n_bins: int, z_range):
        super().__init__()
        if model_cfg["anatomical_prior"] != "none":
            raise ConfigError("model.anatomical_prior needs the shared or decoupled variant, not bottleneck_only")
        self.self_cond = self_cond
        bo = model_cfg["bottleneck_only"]
        in_ch = 1 + (1 if self_cond else 0)
        self.branches = nn.ModuleList(
            _unet(
                in_ch,
                1,
                bo["channels"],
                model_cfg["attention_levels"],
                model_cfg["num_res_blocks"],
                bo["num_head_channels"],
                bo["norm_num_groups"],
                model_cfg["use_flash_attention"],
            )
            for _ in range(2)
        )
        temb = 4 * bo["channels"][0]
        self.embedding = ConditionEmbedding(temb, n_bins, z_range, model_cfg["cfg_null_token"])
        for branch in self.branches:
            branch.class_embedding = self.embedding
            branch.middle_block = _NoMiddle()
        # Groups and head channels that fit a branch's C channels (MONAI checks) fit the middle's 2C too.
        self.shared_middle = bottleneck_path(
            2 * bo["channels"][-1],
            temb,
            bo["norm_num_groups"],
            bo["num_head_channels"],
            bo["extra_res_blocks"],
            model_cfg["use_flash_attention"],
        )

    def forward(self, x_t, t, tokens, x0_sc=None):
        encoded = []
        for c, branch in enumerate(self.branches):
            x = x_t[:, c : c + 1]
            if self.self_cond:
                x = torch.cat([x, torch.zeros_like(x) if x0_sc is None else x0_sc[:, c : c + 1]], dim=1)
            encoded.append(_encode(branch, _like_weights(x, self), t, tokens))
        (h_img, skips_img, emb), (h_msk, skips_msk, _) = encoded
        h_img, h_msk = run_path(self.shared_middle, torch.cat([h_img, h_msk], dim=1), emb).chunk(2, dim=1)
        image, mask = self.branches
        return torch.cat([_decode(image, h_img, skips_img, emb), _decode(mask, h_msk, skips_msk, emb)], dim=1)


def use_channels_last(net: nn.Module) -> nn.Module:
    """Channels-last weights, inputs and activations: faster convolutions on CUDA with bf16, and in oneDNN's
    forward pass on a CPU (sampling). A CPU training in float32 at 160x160 is faster without it: oneDNN's
    channels-last backward is slower there (slimdiff.pilot.CPU_TRAINING_CHANNELS_LAST). The weights' values, and
    so model.pt, do not change."""
    net.channels_last = True
    return keep_channels_last(net).to(memory_format=torch.channels_last)


def _like_weights(x: torch.Tensor, net: nn.Module) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if getattr(net, "channels_last", False) else x


def build_denoiser(model_cfg: dict, self_cond: bool, n_bins: int, z_range, image_size=(64, 64)) -> nn.Module:
    """The one place a config becomes a network; `model.variant` picks the coupling."""
    if model_cfg["variant"] in ("shared", "decoupled"):
        return JointDenoiser(model_cfg, self_cond, n_bins, tuple(z_range), tuple(image_size))
    if model_cfg["variant"] == "zero_coupling":
        return TwinDenoiser(model_cfg, self_cond, n_bins, tuple(z_range))
    if model_cfg["variant"] == "bottleneck_only":
        return BottleneckTwinDenoiser(model_cfg, self_cond, n_bins, tuple(z_range))
    raise ValueError(f"unknown model.variant {model_cfg['variant']!r}")


def count_parameters(module: nn.Module) -> int:
    """Unique parameters (a shared embedding counts once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
