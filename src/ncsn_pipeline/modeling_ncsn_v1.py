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
"""NCSN (v1) score network, ``CondRefineNetDilated``, as a diffusers model.

The noise-conditional network of

    Yang Song and Stefano Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution",
    NeurIPS 2019, https://arxiv.org/abs/1907.05600 (reference code: https://github.com/ermongroup/ncsn).

Unlike NCSNv2, every normalisation layer is *conditional*: conditional instance normalisation++ (the paper's
appendix A, eq. 7) looks up its ``gamma``, ``alpha`` and ``beta`` in an embedding with one row per training
noise level. The network therefore only knows its ``L`` training levels: it takes ``sigma`` like every score
model of this package, finds the level it was trained on and refuses any other value. Its output is the score
at that level directly (it is not divided by ``sigma``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from .checks import check_bool, check_integer, check_noise_level_count, check_noise_range, check_positive
from .modeling_ncsn import (
    MAX_IN_CHANNELS,
    MAX_NGF,
    MAX_SAMPLE_SIDE,
    _conv3x3,
    _ConvMeanPool,
    check_image_batch,
    instance_norm_plus_plus,
    sigma_per_example,
)
from .modeling_utils import ImageModelMixin, StrictLoadingMixin, check_all
from .noise_schedules import geometric_noise_levels

__all__ = ["NCSNv1ScoreModel"]

# A sigma is recognised as training level ``sigma_i`` when |sigma / sigma_i - 1| is below this. Float32 rounding
# is ~1e-7 and neighbouring levels of the published schedules differ by >= 0.4 %, so the match is unambiguous.
LEVEL_MATCH_RTOL = 1e-4


class _ConditionalInstanceNormPlusPlus(nn.Module):
    """Conditional InstanceNorm++ (Song & Ermon 2019, appendix A, eq. 7): `_InstanceNormPlusPlus` whose
    ``gamma``, ``alpha``, ``beta`` are rows of an embedding indexed by the noise level.

    Args:
        num_channels (`int`): Feature channels (>= 2).
        num_levels (`int`): Number of noise levels (rows of the embedding).
        eps (`float`, *optional*, defaults to 1e-5): Added to variances before taking square roots.
    """

    def __init__(self, num_channels: int, num_levels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.embed = nn.Embedding(num_levels, 3 * num_channels)
        self.embed.weight.data[:, : 2 * num_channels].normal_(1.0, 0.02)  # gamma, alpha ~ N(1, 0.02)
        self.embed.weight.data[:, 2 * num_channels :].zero_()  # beta = 0

    def forward(self, hidden: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Normalise `hidden` (B, C, H, W) with the parameters of each example's noise `level` (B,)."""
        gamma, alpha, beta = self.embed(level).to(hidden.dtype).chunk(3, dim=-1)
        return instance_norm_plus_plus(hidden, gamma, alpha, beta, self.eps)


class _ConditionalResidualBlock(nn.Module):
    """`modeling_ncsn._ResidualBlock` with conditional normalisation (same convolutions and shortcuts).

    Args:
        in_channels (`int`): Input channels.
        out_channels (`int`): Output channels.
        num_levels (`int`): Number of noise levels.
        down (`bool`, *optional*, defaults to `False`): A "down" block (halves the resolution when not dilated).
        dilation (`int`, *optional*, defaults to 1): Dilation of both 3x3 convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, num_levels: int, down: bool = False, dilation: int = 1):
        super().__init__()
        self.normalize1 = _ConditionalInstanceNormPlusPlus(in_channels, num_levels)
        middle = in_channels if down else out_channels  # "down" blocks change channels in their second conv
        self.conv1 = _conv3x3(in_channels, middle, dilation)
        self.normalize2 = _ConditionalInstanceNormPlusPlus(middle, num_levels)
        if down and dilation == 1:
            self.conv2 = _ConvMeanPool(in_channels, out_channels, kernel_size=3)
            self.shortcut = _ConvMeanPool(in_channels, out_channels, kernel_size=1)
        else:
            self.conv2 = _conv3x3(middle, out_channels, dilation)
            learned = down or in_channels != out_channels
            self.shortcut = _conv3x3(in_channels, out_channels, dilation) if learned else nn.Identity()

    def forward(self, hidden: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Apply the block to `hidden` (B, C_in, H, W) at noise `level` (B,)."""
        residual = self.conv1(F.elu(self.normalize1(hidden, level)))
        residual = self.conv2(F.elu(self.normalize2(residual, level)))
        return self.shortcut(hidden) + residual


class _ConditionalResidualConvUnit(nn.Module):
    """RefineNet residual conv units with a conditional normalisation before each ELU + bias-free 3x3 conv.

    Args:
        channels (`int`): Channels in and out.
        num_levels (`int`): Number of noise levels.
        num_blocks (`int`): Units applied in sequence.
        num_stages (`int`, *optional*, defaults to 2): Norm + ELU + conv stages per unit.
    """

    def __init__(self, channels: int, num_levels: int, num_blocks: int, num_stages: int = 2):
        super().__init__()
        self.norms = nn.ModuleList(
            nn.ModuleList(_ConditionalInstanceNormPlusPlus(channels, num_levels) for _ in range(num_stages))
            for _ in range(num_blocks)
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList(_conv3x3(channels, channels, bias=False) for _ in range(num_stages))
            for _ in range(num_blocks)
        )

    def forward(self, hidden: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Apply the units to `hidden` (B, C, H, W) at noise `level` (B,)."""
        for norms, convs in zip(self.norms, self.blocks):
            residual = hidden
            for norm, conv in zip(norms, convs):
                residual = conv(F.elu(norm(residual, level)))
            hidden = hidden + residual
        return hidden


class _ConditionalRefineBlock(nn.Module):
    """A conditional RefineNet block: RCUs per input, normalised multi-resolution fusion, chained residual
    *average* pooling (the v1 code pools with a 5x5 mean, NCSNv2 with a max), output RCUs.

    Args:
        in_channels (`Sequence[int]`): Channels of each input branch (one branch: no fusion).
        out_channels (`int`): Output channels.
        num_levels (`int`): Number of noise levels.
        end (`bool`, *optional*, defaults to `False`): The last block gets 3 output RCUs instead of 1.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_levels: int, end: bool = False):
        super().__init__()
        self.adapt_convs = nn.ModuleList(
            _ConditionalResidualConvUnit(channels, num_levels, num_blocks=2) for channels in in_channels
        )
        self.fused = len(in_channels) > 1
        if self.fused:
            self.msf_norms = nn.ModuleList(_ConditionalInstanceNormPlusPlus(c, num_levels) for c in in_channels)
            self.msf_convs = nn.ModuleList(_conv3x3(channels, out_channels) for channels in in_channels)
        self.crp_norms = nn.ModuleList(_ConditionalInstanceNormPlusPlus(out_channels, num_levels) for _ in range(2))
        self.crp_convs = nn.ModuleList(_conv3x3(out_channels, out_channels, bias=False) for _ in range(2))
        self.output_convs = _ConditionalResidualConvUnit(out_channels, num_levels, num_blocks=3 if end else 1)

    def forward(
        self, inputs: Sequence[torch.Tensor], level: torch.Tensor, output_size: tuple[int, int]
    ) -> torch.Tensor:
        """Refine `inputs` (one tensor per branch) at noise `level` into (B, out_channels, *output_size)."""
        adapted = [adapt(hidden, level) for adapt, hidden in zip(self.adapt_convs, inputs)]
        hidden = adapted[0]
        if self.fused:  # 1. multi-resolution fusion: normalise, conv, resize, sum
            hidden = sum(
                F.interpolate(conv(norm(branch, level)), size=output_size, mode="bilinear", align_corners=True)
                for norm, conv, branch in zip(self.msf_norms, self.msf_convs, adapted)
            )
        hidden = F.elu(hidden)  # 2. chained residual pooling
        path = hidden
        for norm, conv in zip(self.crp_norms, self.crp_convs):
            path = conv(F.avg_pool2d(norm(path, level), kernel_size=5, stride=1, padding=2))
            hidden = hidden + path
        return self.output_convs(hidden, level)


class NCSNv1ScoreModel(ImageModelMixin, StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""NCSN v1 score network (``CondRefineNetDilated``): the score ``s(x, sigma_i)`` at its training noise levels.

    The layout is that of the ``"ncsnv2"`` architecture of [`NCSNScoreModel`] (four encoder stages, the second
    halving the resolution, the last two dilated; four RefineNet blocks), with every normalisation conditional
    on the noise level (an embedding row per level) and mean instead of max pooling in the chained residual
    pooling. With ``ngf=64`` it has 7,638,657 parameters for MNIST (1 channel) and 30,117,635 with ``ngf=128``
    for CIFAR-10, the published models. The 28x28 MNIST model works like the others (28 -> 14 once).

    The noise levels are the config's geometric ladder ``sigma_max -> sigma_min`` of ``num_noise_levels``
    values (NCSN's ``sigma_begin``, ``sigma_end``, ``num_classes``). A ``timestep`` that is not one of them
    (within a relative ``1e-4``) raises ``ValueError`` listing them: sample with a sampler whose levels are the
    model's own (`NCSNScheduler` with the same three settings; ``NCSNPipeline`` checks this before sampling).

    Args:
        in_channels (`int`, *optional*, defaults to 3): Image channels.
        sample_size (`int`, *optional*, defaults to 32): Side of generated images (even, >= 4).
        ngf (`int`, *optional*, defaults to 128): Base number of feature channels.
        sigma_max (`float`, *optional*, defaults to 1.0): Largest training noise level.
        sigma_min (`float`, *optional*, defaults to 0.01): Smallest training noise level.
        num_noise_levels (`int`, *optional*, defaults to 10): Number of training noise levels.
        center_input (`bool`, *optional*, defaults to `True`): Map ``x -> 2x - 1`` first, as the released models
            do (they are fed data in ``[0, 1]``; false for models trained with ``logit_transform``).

    Example:

    ```py
    >>> import torch
    >>> from ncsn_pipeline.modeling_ncsn_v1 import NCSNv1ScoreModel

    >>> model = NCSNv1ScoreModel(in_channels=1, sample_size=28, ngf=8)
    >>> model(torch.rand(2, 1, 28, 28), timestep=model.noise_levels[3]).sample.shape
    torch.Size([2, 1, 28, 28])
    >>> model(torch.rand(1, 1, 28, 28), timestep=0.5)
    Traceback (most recent call last):
    ...
    ValueError: NCSNv1ScoreModel knows only its 10 training noise levels ...

    ```
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 32,
        ngf: int = 128,
        sigma_max: float = 1.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 10,
        center_input: bool = True,
    ):
        super().__init__()
        in_channels = check_integer("in_channels", in_channels, high=MAX_IN_CHANNELS)
        sample_size = check_integer("sample_size", sample_size, low=4, high=MAX_SAMPLE_SIDE)
        if sample_size % 2:
            raise ValueError(f"sample_size must be even (and >= 4), got {sample_size}.")
        ngf = check_integer("ngf", ngf, low=2, high=MAX_NGF)
        check_noise_range(check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max))
        levels = check_noise_level_count("num_noise_levels", num_noise_levels)
        check_bool("center_input", center_input)

        wide = 2 * ngf
        self.begin_conv = nn.Conv2d(in_channels, ngf, 3, padding=1)
        block = _ConditionalResidualBlock
        self.res1 = nn.ModuleList([block(ngf, ngf, levels), block(ngf, ngf, levels)])
        self.res2 = nn.ModuleList([block(ngf, wide, levels, down=True), block(wide, wide, levels)])
        self.res3 = nn.ModuleList([block(wide, wide, levels, True, 2), block(wide, wide, levels, dilation=2)])
        self.res4 = nn.ModuleList([block(wide, wide, levels, True, 4), block(wide, wide, levels, dilation=4)])
        self.refine1 = _ConditionalRefineBlock([wide], wide, levels)
        self.refine2 = _ConditionalRefineBlock([wide, wide], wide, levels)
        self.refine3 = _ConditionalRefineBlock([wide, wide], ngf, levels)
        self.refine4 = _ConditionalRefineBlock([ngf, ngf], ngf, levels, end=True)
        self.normalizer = _ConditionalInstanceNormPlusPlus(ngf, levels)
        self.end_conv = nn.Conv2d(ngf, in_channels, 3, padding=1)
        # For the error message, written once (a compiled forward cannot list a float tensor) and on the CPU (the
        # module may be built on the "meta" device, which holds no values).
        with torch.device("cpu"):
            self._levels_text = str([float(f"{level:.6g}") for level in self.noise_levels.tolist()])

    @property
    def noise_levels(self) -> torch.Tensor:
        """`torch.Tensor`: The training noise levels (float64, decreasing); the only ``sigma`` values accepted."""
        return geometric_noise_levels(self.config.sigma_max, self.config.sigma_min, self.config.num_noise_levels)

    def level_indices(self, sigma: torch.Tensor) -> torch.Tensor:
        """The index of the training level of every value of ``sigma`` (any shape).

        Raises:
            ValueError: naming the values that are not training levels, and listing those.
        """
        levels = self.noise_levels.to(sigma.device)
        requested = sigma.detach().to(torch.float64).reshape(-1)
        distance = (requested[:, None] / levels[None, :] - 1).abs()
        closest, indices = distance.min(dim=1)
        known = closest <= LEVEL_MATCH_RTOL
        check_all(
            known,
            f"NCSNv1ScoreModel knows only its {len(levels)} training noise levels "
            f"{self._levels_text}: sample it with NCSNScheduler set to "
            "the same sigma_max, sigma_min and num_noise_levels (and no num_inference_steps), or another sampler "
            "whose levels are these",
            lambda: f"sigma={sorted({round(value, 6) for value in requested[~known].tolist()})[:5]}",
        )
        return indices.reshape(sigma.shape)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        r"""The score ``grad_x log p_sigma(x)`` at the training level ``sigma`` (not divided by ``sigma``).

        Args:
            sample (`torch.Tensor`): Noisy images ``(B, in_channels, H, W)`` (even ``H``, ``W`` >= 4), in the
                model's data range (``[0, 1]`` for the released models).
            timestep (`torch.Tensor` or `float`): The noise level ``sigma``: a number, a 0-d tensor or one value
                per example; each must be one of `noise_levels`.
            return_dict (`bool`, *optional*, defaults to `True`): Return a ``UNet2DOutput`` rather than a tuple.

        Returns:
            [`~models.unets.unet_2d.UNet2DOutput`] or `tuple`: The score, shaped and typed like `sample`.

        Raises:
            `ValueError`: for a malformed `sample` or a `timestep` that is not a training level.
        """
        check_image_batch(sample, self.config.in_channels, side_multiple=2, min_side=4)
        batch = sample.shape[0]
        if isinstance(timestep, torch.Tensor):
            sigma = timestep.to(torch.float64)
        else:
            sigma = torch.tensor(float(timestep), dtype=torch.float64)
        sigma = sigma_per_example(sigma, batch, sample.device, torch.float64)
        level = self.level_indices(sigma)

        hidden = sample.to(self.dtype)
        if self.config.center_input:
            hidden = 2 * hidden - 1
        # Channels-last feature maps (NHWC): the CPU's convolutions and the 5x5 max pooling of the refine blocks
        # run much faster on them than on NCHW (benchmarks/network_speed.py); the score comes back NCHW. (Set after
        # the first convolution: a one-channel input is NCHW and channels-last at once, so PyTorch would keep NCHW.)
        hidden = self.begin_conv(hidden).contiguous(memory_format=torch.channels_last)
        features = []
        for stage in (self.res1, self.res2, self.res3, self.res4):
            for block in stage:
                hidden = block(hidden, level)
            features.append(hidden)
        layer1, layer2, layer3, layer4 = features
        refined = self.refine1([layer4], level, layer4.shape[2:])
        refined = self.refine2([layer3, refined], level, layer3.shape[2:])
        refined = self.refine3([layer2, refined], level, layer2.shape[2:])
        refined = self.refine4([layer1, refined], level, layer1.shape[2:])
        score = self.end_conv(F.elu(self.normalizer(refined, level))).to(sample.dtype).contiguous()

        if not return_dict:
            return (score,)
        return UNet2DOutput(sample=score)
