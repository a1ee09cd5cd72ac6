"""Channels-last execution of the MONAI U-Net, kept channels-last from end to end.

Channels-last (NHWC) convolutions are faster on a CPU with oneDNN and on CUDA tensor cores, but only if the
activations stay NHWC: every switch costs a copy, and an elementwise op or GroupNorm that meets one NCHW and
one NHWC operand falls off its vectorised path. MONAI's attention blocks (monai 1.5-1.6) switch back: the
down, mid and up blocks call `.contiguous()` on the attention output, and SpatialAttentionBlock flattens the
tokens with a reshape that copies an NHWC tensor.

`keep_channels_last` swaps the class of those modules for the subclasses below, which compute the same thing
without the copies. Their parameters and buffers are untouched, so state-dict keys, model.pt and the values
stay as they are (up to float rounding of the convolution algorithm). Measured on 2 CPU cores, small model,
batch 16: forward + backward 376 -> 328 ms, forward alone 140 -> 135 ms.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import SpatialAttentionBlock
from monai.networks.nets import diffusion_model_unet as dmu
from torch import nn


class NHWCSpatialAttention(SpatialAttentionBlock):
    """Tokens as (B, H*W, C): a view of an NHWC tensor, and the output goes back as one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return super().forward(x)
        b, c, h, w = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        return self.attn(tokens).reshape(b, h, w, c).permute(0, 3, 1, 2) + x


class NHWCSpatialTransformer(dmu.SpatialTransformer):
    """Cross-attention (the anatomical prior as context) without the `.contiguous()` before proj_out."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4:
            return super().forward(x, context=context)
        b, _, h, w = x.shape
        y = self.proj_in(self.norm(x))
        inner = y.shape[1]
        y = y.permute(0, 2, 3, 1).reshape(b, h * w, inner)
        for block in self.transformer_blocks:
            y = block(y, context=context)
        return self.proj_out(y.reshape(b, h, w, inner).permute(0, 3, 1, 2)) + x


class NHWCAttnDownBlock(dmu.AttnDownBlock):
    def forward(self, hidden_states, temb, context=None):
        return _down(self, hidden_states, temb, lambda attn, h: attn(h))


class NHWCCrossAttnDownBlock(dmu.CrossAttnDownBlock):
    def forward(self, hidden_states, temb, context=None):
        return _down(self, hidden_states, temb, lambda attn, h: attn(h, context=context))


class NHWCAttnMidBlock(dmu.AttnMidBlock):
    def forward(self, hidden_states, temb, context=None):
        return self.resnet_2(self.attention(self.resnet_1(hidden_states, temb)), temb)


class NHWCAttnUpBlock(dmu.AttnUpBlock):
    def forward(self, hidden_states, res_hidden_states_list, temb, context=None):
        for resnet, attn in zip(self.resnets, self.attentions, strict=True):
            skip, res_hidden_states_list = res_hidden_states_list[-1], res_hidden_states_list[:-1]
            hidden_states = attn(resnet(torch.cat([hidden_states, skip], dim=1), temb))
        return hidden_states if self.upsampler is None else self.upsampler(hidden_states, temb)


def _down(block: nn.Module, hidden_states, temb, attend):
    """MONAI's down-block loop with the attention output kept in its memory format."""
    skips = []
    for resnet, attn in zip(block.resnets, block.attentions, strict=True):
        hidden_states = attend(attn, resnet(hidden_states, temb))
        skips.append(hidden_states)
    if block.downsampler is not None:
        hidden_states = block.downsampler(hidden_states, temb)
        skips.append(hidden_states)
    return hidden_states, skips


# CrossAttnMidBlock and CrossAttnUpBlock keep the format already (only their SpatialTransformer copies).
_NHWC_CLASS = {
    SpatialAttentionBlock: NHWCSpatialAttention,
    dmu.SpatialTransformer: NHWCSpatialTransformer,
    dmu.AttnDownBlock: NHWCAttnDownBlock,
    dmu.CrossAttnDownBlock: NHWCCrossAttnDownBlock,
    dmu.AttnMidBlock: NHWCAttnMidBlock,
    dmu.AttnUpBlock: NHWCAttnUpBlock,
}


def keep_channels_last(net: nn.Module) -> nn.Module:
    """Swap, in place, each MONAI attention module of `net` for its channels-last-preserving subclass."""
    for module in net.modules():
        nhwc = _NHWC_CLASS.get(type(module))
        if nhwc is not None:
            module.__class__ = nhwc
    return net
