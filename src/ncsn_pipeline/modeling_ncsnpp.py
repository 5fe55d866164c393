# Copyright 2025 The ncsn-pipeline authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""NCSN++ score network (score-SDE, continuous VE) as a diffusers model, for every published configuration.

The network of

    Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021, https://arxiv.org/abs/2011.13456 (reference code:
    https://github.com/yang-song/score_sde_pytorch, ``models/ncsnpp.py``).

A U-Net of residual blocks (BigGAN-style with resampling inside the block, or DDPM-style), self-attention at
chosen resolutions, an optional *input pyramid* (the image downsampled alongside the encoder, ``input_skip`` or
``residual``) and *output pyramid* (``output_skip`` or ``residual``), FIR resampling, a Gaussian Fourier
embedding of ``log(sigma)`` and the output divided by ``sigma``. diffusers' ``UNet2DModel`` covers the
``output_skip`` / ``input_skip`` configurations at >= 128 channels; this model covers them all (the CIFAR-10
configs use ``progressive_input="residual"``).

The modules live in one flat list, ``all_modules``, in the order the reference code builds them, and keep its
parameter names, so a reference checkpoint loads after removing the ``module.`` prefix and the ``sigmas`` buffer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.downsampling import FirDownsample2D
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.upsampling import FirUpsample2D
from torch import nn

from .checks import check_bool, check_choice, check_integer, check_positive
from .modeling_ncsn import MAX_IN_CHANNELS, MAX_SAMPLE_SIDE, check_image_batch, sigma_per_example
from .modeling_utils import StrictLoadingMixin

__all__ = ["NCSNppScoreModel"]

MAX_NF = 256  # the published models use nf = 128 (16 at 1024 px, with channel multiples up to 32)
MAX_LEVELS = 8
MAX_CHANNELS = 2048


def _groups(channels: int) -> int:
    """score_sde's GroupNorm group count."""
    return min(channels // 4, 32)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels), channels, eps=1e-6)


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = None):
    padding = kernel_size // 2 if padding is None else padding
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def _fir_filter(kernel: Sequence[int], channels: int, gain: float, like: torch.Tensor) -> torch.Tensor:
    """The separable 2-D FIR filter ``k k^T / sum(k)**2 * gain``, flipped (upfirdn2d convolves, conv2d
    correlates), as a depthwise weight of shape (channels, 1, K, K)."""
    taps = torch.tensor(kernel, dtype=torch.float64)
    filter_2d = torch.outer(taps, taps) / taps.sum() ** 2 * gain
    weight = torch.flip(filter_2d, [0, 1]).to(dtype=like.dtype, device=like.device)
    return weight[None, None].expand(channels, 1, *weight.shape)


def fir_downsample(hidden: torch.Tensor, kernel: Sequence[int]) -> torch.Tensor:
    """FIR-filter then halve `hidden` (B, C, H, W): diffusers' ``downsample_2d(hidden, kernel, factor=2)``
    (StyleGAN2's ``upfirdn2d`` with ``down=2``) as one depthwise strided convolution. The reference applies the
    filter as a single-channel convolution over all B x C maps, which the CPU's convolution runs several times
    slower (benchmarks/network_speed.py); the sums are the same, term for term."""
    pad = len(kernel) - 2
    padded = F.pad(hidden, ((pad + 1) // 2, pad // 2, (pad + 1) // 2, pad // 2))
    return F.conv2d(padded, _fir_filter(kernel, hidden.shape[1], 1.0, hidden), stride=2, groups=hidden.shape[1])


def fir_upsample(hidden: torch.Tensor, kernel: Sequence[int]) -> torch.Tensor:
    """Double `hidden` (B, C, H, W) then FIR-filter it: diffusers' ``upsample_2d(hidden, kernel, factor=2)``
    (zero insertion, then the filter with gain 4). For an even number of taps, zero insertion followed by the
    filter is a depthwise transposed convolution of stride 2 (equal to round-off); for an odd number, the zeros are
    inserted explicitly."""
    batch, channels, height, width = hidden.shape
    taps = len(kernel)
    weight = _fir_filter(kernel, channels, 4.0, hidden)
    if taps % 2 == 0:
        return F.conv_transpose2d(hidden, torch.flip(weight, [2, 3]), stride=2, padding=(taps - 2) // 2,
                                  groups=channels)  # fmt: skip
    upsampled = hidden.new_zeros(batch, channels, 2 * height - 1, 2 * width - 1)
    upsampled[:, :, ::2, ::2] = hidden
    before, after = (taps - 2 + 1) // 2 + 1, (taps - 2) // 2 + 1
    return F.conv2d(F.pad(upsampled, (before, after, before, after)), weight, groups=channels)


class _FourierEmbedding(nn.Module):
    """Gaussian Fourier features of ``log(sigma)`` (fixed random frequencies ``W``; Tancik et al. 2020)."""

    def __init__(self, size: int, scale: float):
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, log_sigma: torch.Tensor) -> torch.Tensor:
        angles = log_sigma[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class _NIN(nn.Module):
    """A 1x1 convolution written as a matrix ``W`` of shape (in, out), as in the reference ("network in network")."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(in_channels, out_channels).normal_(0, in_channels**-0.5))
        self.b = nn.Parameter(torch.zeros(out_channels))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,cd->bdhw", hidden, self.W) + self.b[None, :, None, None]


class _Attention(nn.Module):
    """DDPM self-attention over all positions, with the residual rescaled by 1/sqrt(2) (``skip_rescale``)."""

    def __init__(self, channels: int, skip_rescale: bool):
        super().__init__()
        self.GroupNorm_0 = _norm(channels)
        self.NIN_0, self.NIN_1, self.NIN_2, self.NIN_3 = (_NIN(channels, channels) for _ in range(4))
        self.skip_rescale = skip_rescale

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = hidden.shape
        normed = self.GroupNorm_0(hidden)
        # softmax(q k^T / sqrt(C)) v over the H x W positions, by PyTorch's fused attention (the reference's two
        # einsums and softmax, to round-off).
        query, key, value = (
            nin(normed).reshape(batch, channels, height * width).transpose(1, 2)
            for nin in (self.NIN_0, self.NIN_1, self.NIN_2)
        )
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = self.NIN_3(attended.transpose(1, 2).reshape(batch, channels, height, width))
        return (hidden + attended) / math.sqrt(2.0) if self.skip_rescale else hidden + attended


class _ResnetBlock(nn.Module):
    """A residual block with the noise embedding added after the first convolution.

    ``biggan`` blocks may resample (``up``/``down``, FIR or nearest/mean) inside the block and use a 1x1
    ``Conv_2`` shortcut whenever the shape changes; ``ddpm`` blocks never resample and use an ``NIN_0`` shortcut.
    """

    def __init__(self, kind: str, in_ch: int, out_ch: int, temb_dim: int, dropout: float, skip_rescale: bool,
                 fir: bool, fir_kernel: Sequence[int], up: bool = False, down: bool = False):  # fmt: skip
        super().__init__()
        self.kind, self.up, self.down, self.fir, self.fir_kernel = kind, up, down, fir, tuple(fir_kernel)
        self.GroupNorm_0 = _norm(in_ch)
        self.Conv_0 = _conv(in_ch, out_ch)
        self.Dense_0 = nn.Linear(temb_dim, out_ch)
        self.GroupNorm_1 = _norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = _conv(out_ch, out_ch)
        self.reshapes = in_ch != out_ch or up or down
        if self.reshapes:
            if kind == "biggan":
                self.Conv_2 = _conv(in_ch, out_ch, kernel_size=1)
            else:
                self.NIN_0 = _NIN(in_ch, out_ch)
        self.skip_rescale = skip_rescale

    def _resample(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.up:
            if self.fir:
                return fir_upsample(hidden, self.fir_kernel)
            return F.interpolate(hidden, scale_factor=2, mode="nearest")
        if self.down:
            if self.fir:
                return fir_downsample(hidden, self.fir_kernel)
            return F.avg_pool2d(hidden, 2)
        return hidden

    def forward(self, sample: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        hidden = F.silu(self.GroupNorm_0(sample))
        hidden, sample = self._resample(hidden), self._resample(sample)
        hidden = self.Conv_0(hidden) + self.Dense_0(F.silu(temb))[:, :, None, None]
        hidden = self.Conv_1(self.Dropout_0(F.silu(self.GroupNorm_1(hidden))))
        if self.reshapes:
            sample = self.Conv_2(sample) if self.kind == "biggan" else self.NIN_0(sample)
        return (sample + hidden) / math.sqrt(2.0) if self.skip_rescale else sample + hidden


class _Resample(nn.Module):
    """Up- or downsampling, with a learned convolution or without (FIR filter, or nearest / mean)."""

    def __init__(self, up: bool, in_ch: int, out_ch: int, with_conv: bool, fir: bool, fir_kernel: Sequence[int]):
        super().__init__()
        self.up, self.with_conv, self.fir, self.fir_kernel = up, with_conv, fir, tuple(fir_kernel)
        self.use_conv = with_conv  # read by diffusers' FIR resampling functions used in `forward`
        if with_conv and fir:
            self.Conv2d_0 = _conv(in_ch, out_ch)  # applied fused with the FIR filter, not as a plain conv
        elif with_conv:
            self.Conv_0 = _conv(in_ch, out_ch) if up else _conv(in_ch, out_ch, stride=2, padding=0)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.fir and self.with_conv:
            # The convolution fused with FIR resampling (StyleGAN2's upsample_conv_2d / conv_downsample_2d), as
            # diffusers' FIR layers compute it; their parameters would be named differently, so only the
            # computation is borrowed.
            if self.up:
                hidden = FirUpsample2D._upsample_2d(self, hidden, self.Conv2d_0.weight, kernel=self.fir_kernel)
            else:
                hidden = FirDownsample2D._downsample_2d(
                    self, hidden, weight=self.Conv2d_0.weight, kernel=self.fir_kernel
                )
            return hidden + self.Conv2d_0.bias.reshape(1, -1, 1, 1)
        if self.up:
            if self.fir:
                return fir_upsample(hidden, self.fir_kernel)
            hidden = F.interpolate(hidden, scale_factor=2, mode="nearest")
            return self.Conv_0(hidden) if self.with_conv else hidden
        if self.fir:
            return fir_downsample(hidden, self.fir_kernel)
        if self.with_conv:
            return self.Conv_0(F.pad(hidden, (0, 1, 0, 1)))
        return F.avg_pool2d(hidden, 2)


class _Combine(nn.Module):
    """Merge the input pyramid into the encoder: a 1x1 conv of the pyramid, summed or concatenated."""

    def __init__(self, pyramid_channels: int, channels: int, method: str):
        super().__init__()
        self.Conv_0 = _conv(pyramid_channels, channels, kernel_size=1)
        self.method = method

    def forward(self, pyramid: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        projected = self.Conv_0(pyramid)
        return torch.cat([projected, hidden], dim=1) if self.method == "cat" else projected + hidden


def _norm_act_conv(modules: Iterator[nn.Module], hidden: torch.Tensor) -> torch.Tensor:
    """The next two modules, a GroupNorm and a convolution, with SiLU between (an output head)."""
    norm, conv = next(modules), next(modules)
    return conv(F.silu(norm(hidden)))


def check_ncsnpp_size(in_channels: Any, nf: Any, num_res_blocks: Any, ch_mult: Any, sample_size: Any) -> tuple:
    """Check the settings that set an NCSN++'s size, before anything is built (for `NCSNppScoreModel` and for the
    ``UNet2DModel`` that ``ncsn-convert`` builds from a score_sde config); returns them as integers.

    The widest level (``nf * max(ch_mult)``) is capped at `MAX_CHANNELS`: the published models reach 512, and a
    config with ``nf = 4096`` would otherwise build a network of many gigabytes.
    """
    channels = check_integer("in_channels", in_channels, high=MAX_IN_CHANNELS)
    nf = check_integer("nf", nf, low=4, high=MAX_NF)
    num_res_blocks = check_integer("num_res_blocks", num_res_blocks, low=1, high=16)
    if not isinstance(ch_mult, (list, tuple)) or not 1 <= len(ch_mult) <= MAX_LEVELS:
        raise ValueError(f"ch_mult must be a list of 1 to {MAX_LEVELS} channel multiples, got {str(ch_mult)[:80]}.")
    multiples = [check_integer("ch_mult entry", multiple, high=64) for multiple in ch_mult]
    if nf * max(multiples) > MAX_CHANNELS:
        raise ValueError(
            f"nf x max(ch_mult) = {nf * max(multiples)} channels at the widest level; at most {MAX_CHANNELS} "
            "(the published NCSN++ models reach 512)."
        )
    side_multiple = 2 ** (len(multiples) - 1)
    size = check_integer("sample_size", sample_size, low=max(side_multiple, 2), high=MAX_SAMPLE_SIDE)
    if size % side_multiple:
        raise ValueError(f"sample_size must be a multiple of {side_multiple} for {len(multiples)} levels, got {size}.")
    return channels, nf, num_res_blocks, multiples, size


class NCSNppScoreModel(StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""NCSN++ score network ``s(x, sigma)`` (score-SDE, continuous VE SDE), in every configuration the reference
    code builds with a Fourier noise embedding.

    The network (Song et al. 2021, appendix H.1, and ``models/ncsnpp.py``):

    1. Embed ``log(sigma)`` with Gaussian Fourier features, then two dense layers (SiLU between).
    2. Map ``x -> 2x - 1`` unless ``centered``; a 3x3 conv to ``nf`` channels.
    3. Encoder: per resolution level ``num_res_blocks`` residual blocks (+ attention where the side is in
       ``attn_resolutions``), then a downsampling residual block; the input pyramid joins after each
       downsampling (``input_skip``: the FIR-downsampled image through a 1x1 conv; ``residual``: a learned
       downsampling of the running pyramid, added with 1/sqrt(2)).
    4. Middle: residual block, attention, residual block.
    5. Decoder: per level ``num_res_blocks + 1`` residual blocks on the concatenated skip features (+ attention),
       the output pyramid (``output_skip``: a GroupNorm + conv to image channels at every level, upsampled and
       summed; ``residual``: a learned upsampling added with 1/sqrt(2)), then an upsampling residual block.
    6. Output: GroupNorm, SiLU, 3x3 conv (or the output pyramid), divided by ``sigma`` (``scale_by_sigma``).

    Args:
        in_channels (`int`, defaults to 3): Image channels.
        sample_size (`int`, defaults to 32): Image side; a multiple of ``2 ** (len(ch_mult) - 1)``.
        nf (`int`, defaults to 128): Base channels.
        ch_mult (`Sequence[int]`, defaults to ``(1, 2, 2, 2)``): Channel multiple of each resolution level.
        num_res_blocks (`int`, defaults to 4): Residual blocks per encoder level.
        attn_resolutions (`Sequence[int]`, defaults to ``(16,)``): Sides at which attention is applied.
        resblock_type (`str`, defaults to ``"biggan"``): ``"biggan"`` or ``"ddpm"``.
        progressive (`str`, defaults to ``"none"``): Output pyramid: ``"none"``, ``"output_skip"``, ``"residual"``.
        progressive_input (`str`, defaults to ``"residual"``): Input pyramid: ``"none"``, ``"input_skip"``,
            ``"residual"``.
        progressive_combine (`str`, defaults to ``"sum"``): How ``input_skip`` joins: ``"sum"`` or ``"cat"``.
        fir (`bool`, defaults to `True`): FIR resampling (else nearest / mean).
        fir_kernel (`Sequence[int]`, defaults to ``(1, 3, 3, 1)``): The FIR filter.
        resamp_with_conv (`bool`, defaults to `True`): Learned convolutions in DDPM-style resampling layers.
        skip_rescale (`bool`, defaults to `True`): Divide residual sums by sqrt(2).
        fourier_scale (`float`, defaults to 16.0): Scale of the Fourier frequencies.
        dropout (`float`, defaults to 0.1): Dropout in the residual blocks (training only).
        centered (`bool`, defaults to `False`): Whether the data is already in [-1, 1] (else the model maps
            ``[0, 1]`` data with ``2x - 1``).
        scale_by_sigma (`bool`, defaults to `True`): Divide the output by ``sigma``.

    Example:

    ```py
    >>> import torch
    >>> from ncsn_pipeline.modeling_ncsnpp import NCSNppScoreModel

    >>> model = NCSNppScoreModel(sample_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
    >>> model(torch.rand(2, 3, 8, 8), timestep=torch.tensor([0.5, 20.0])).sample.shape
    torch.Size([2, 3, 8, 8])

    ```
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 32,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        resblock_type: str = "biggan",
        progressive: str = "none",
        progressive_input: str = "residual",
        progressive_combine: str = "sum",
        fir: bool = True,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        resamp_with_conv: bool = True,
        skip_rescale: bool = True,
        fourier_scale: float = 16.0,
        dropout: float = 0.1,
        centered: bool = False,
        scale_by_sigma: bool = True,
    ):
        super().__init__()
        channels, nf, num_res_blocks, multiples, size = check_ncsnpp_size(
            in_channels, nf, num_res_blocks, ch_mult, sample_size
        )
        side_multiple = 2 ** (len(multiples) - 1)
        kind = check_choice("resblock_type", resblock_type, ["biggan", "ddpm"])
        check_choice("progressive", progressive, ["none", "output_skip", "residual"])
        check_choice("progressive_input", progressive_input, ["none", "input_skip", "residual"])
        check_choice("progressive_combine", progressive_combine, ["sum", "cat"])
        for name, value in (("fir", fir), ("resamp_with_conv", resamp_with_conv), ("skip_rescale", skip_rescale),
                            ("centered", centered), ("scale_by_sigma", scale_by_sigma)):  # fmt: skip
            check_bool(name, value)
        check_positive("fourier_scale", fourier_scale)
        self.side_multiple = side_multiple
        attention = {int(side) for side in attn_resolutions}
        sides = [size // 2**level for level in range(len(multiples))]
        temb_dim = 4 * nf

        def resnet(in_ch: int, out_ch: int = None, up: bool = False, down: bool = False) -> _ResnetBlock:
            return _ResnetBlock(
                kind, in_ch, out_ch or in_ch, temb_dim, dropout, skip_rescale, fir, fir_kernel, up, down
            )

        def resample(up: bool, in_ch: int, out_ch: int = None, with_conv: bool = resamp_with_conv) -> _Resample:
            return _Resample(up, in_ch, out_ch or in_ch, with_conv, fir, fir_kernel)

        # The reference's construction order (models/ncsnpp.py), which is also its checkpoints' key order.
        modules = [_FourierEmbedding(nf, fourier_scale), nn.Linear(2 * nf, temb_dim), nn.Linear(temb_dim, temb_dim)]
        modules.append(_conv(channels, nf))
        skip_channels, current, pyramid_channels = [nf], nf, channels
        for level, multiple in enumerate(multiples):
            for _ in range(num_res_blocks):
                modules.append(resnet(current, nf * multiple))
                current = nf * multiple
                if sides[level] in attention:
                    modules.append(_Attention(current, skip_rescale))
                skip_channels.append(current)
            if level != len(multiples) - 1:
                modules.append(resnet(current, down=True) if kind == "biggan" else resample(False, current))
                if progressive_input == "input_skip":
                    modules.append(_Combine(pyramid_channels, current, progressive_combine))
                    current *= 2 if progressive_combine == "cat" else 1
                elif progressive_input == "residual":
                    modules.append(resample(False, pyramid_channels, current, with_conv=True))
                    pyramid_channels = current
                skip_channels.append(current)
        current = skip_channels[-1]
        modules += [resnet(current), _Attention(current, skip_rescale), resnet(current)]
        output_pyramid_channels = 0
        for level in reversed(range(len(multiples))):
            for _ in range(num_res_blocks + 1):
                modules.append(resnet(current + skip_channels.pop(), nf * multiples[level]))
                current = nf * multiples[level]
            if sides[level] in attention:
                modules.append(_Attention(current, skip_rescale))
            if progressive == "output_skip":
                modules += [_norm(current), _conv(current, channels)]
            elif progressive == "residual" and level == len(multiples) - 1:
                modules += [_norm(current), _conv(current, current)]
                output_pyramid_channels = current
            elif progressive == "residual":
                modules.append(resample(True, output_pyramid_channels, current, with_conv=True))
                output_pyramid_channels = current
            if level != 0:
                modules.append(resnet(current, up=True) if kind == "biggan" else resample(True, current))
        if progressive != "output_skip":
            modules += [_norm(current), _conv(current, channels)]
        self.all_modules = nn.ModuleList(modules)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """`tuple[int, int, int]`: ``(in_channels, sample_size, sample_size)``."""
        return (self.config.in_channels, self.config.sample_size, self.config.sample_size)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, return_dict: bool = True
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        r"""The score ``grad_x log p_sigma(x)``.

        Args:
            sample (`torch.Tensor`): ``(B, in_channels, H, W)``, sides multiples of ``2 ** (len(ch_mult) - 1)``,
                in the data range (``[0, 1]`` unless ``centered``).
            timestep (`torch.Tensor` or `float`): The noise level ``sigma`` (a number, a 0-d or a ``(B,)`` tensor).
            return_dict (`bool`, defaults to `True`): Return a ``UNet2DOutput`` rather than a tuple.

        Returns:
            [`~models.unets.unet_2d.UNet2DOutput`] or `tuple`: The score, shaped and typed like ``sample``.
        """
        config = self.config
        check_image_batch(sample, config.in_channels, self.side_multiple, self.side_multiple)
        sigma = sigma_per_example(timestep, sample.shape[0], sample.device, self.dtype)
        attention = set(config.attn_resolutions)
        levels = len(config.ch_mult)
        modules: Iterator[nn.Module] = iter(self.all_modules)

        # 1. Noise embedding.
        temb = next(modules)(torch.log(sigma))
        temb = next(modules)(temb)
        temb = next(modules)(F.silu(temb))
        # 2. Input.
        x = sample.to(self.dtype)
        if not config.centered:
            x = 2 * x - 1
        input_pyramid = x
        skips = [next(modules)(x)]
        # 3. Encoder.
        for level in range(levels):
            for _ in range(config.num_res_blocks):
                hidden = next(modules)(skips[-1], temb)
                if hidden.shape[-1] in attention:
                    hidden = next(modules)(hidden)
                skips.append(hidden)
            if level != levels - 1:
                down = next(modules)
                hidden = down(skips[-1], temb) if config.resblock_type == "biggan" else down(skips[-1])
                if config.progressive_input == "input_skip":
                    if config.fir:
                        input_pyramid = fir_downsample(input_pyramid, config.fir_kernel)
                    else:
                        input_pyramid = F.avg_pool2d(input_pyramid, 2)
                    hidden = next(modules)(input_pyramid, hidden)
                elif config.progressive_input == "residual":
                    input_pyramid = next(modules)(input_pyramid)
                    input_pyramid = (
                        (input_pyramid + hidden) / math.sqrt(2.0) if config.skip_rescale else input_pyramid + hidden
                    )
                    hidden = input_pyramid
                skips.append(hidden)
        # 4. Middle.
        hidden = next(modules)(skips[-1], temb)
        hidden = next(modules)(hidden)
        hidden = next(modules)(hidden, temb)
        # 5. Decoder.
        pyramid = None
        for level in reversed(range(levels)):
            for _ in range(config.num_res_blocks + 1):
                hidden = next(modules)(torch.cat([hidden, skips.pop()], dim=1), temb)
            if hidden.shape[-1] in attention:
                hidden = next(modules)(hidden)
            if config.progressive == "output_skip":
                head = _norm_act_conv(modules, hidden)
                if pyramid is None:
                    pyramid = head
                elif config.fir:
                    pyramid = fir_upsample(pyramid, config.fir_kernel) + head
                else:
                    pyramid = F.interpolate(pyramid, scale_factor=2, mode="nearest") + head
            elif config.progressive == "residual":
                if pyramid is None:
                    pyramid = _norm_act_conv(modules, hidden)
                else:
                    pyramid = next(modules)(pyramid)
                    pyramid = (pyramid + hidden) / math.sqrt(2.0) if config.skip_rescale else pyramid + hidden
                    hidden = pyramid
            if level != 0:
                up = next(modules)
                hidden = up(hidden, temb) if config.resblock_type == "biggan" else up(hidden)
        # 6. Output.
        if config.progressive == "output_skip":
            hidden = pyramid
        else:
            hidden = _norm_act_conv(modules, hidden)
        if config.scale_by_sigma:
            hidden = hidden / sigma[:, None, None, None]
        score = hidden.to(sample.dtype)
        if not return_dict:
            return (score,)
        return UNet2DOutput(sample=score)
