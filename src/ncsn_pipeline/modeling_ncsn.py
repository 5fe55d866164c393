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
"""NCSNv2 score network as a diffusers model.

This module implements the RefineNet-style score network from

    Yang Song and Stefano Ermon, "Improved Techniques for Training Score-Based Generative Models",
    NeurIPS 2020, https://arxiv.org/abs/2006.09011 (reference code: https://github.com/ermongroup/ncsnv2).

It is the unconditional ``NCSNv2`` network the paper uses for CIFAR-10 and CelebA: a ResNet encoder with
dilated convolutions in the two deepest stages, followed by a RefineNet decoder (residual conv units,
multi-resolution fusion and chained residual pooling). Following "technique 3" of the paper the network is
not told the noise level; instead its output is divided by it, ``s(x, sigma) = s(x) / sigma``.

The file depends only on ``torch``, ``diffusers`` and the standard library so that it can be copied verbatim
next to the weights in a Hub repository.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from .checks import check_bool, check_choice, check_integer
from .modeling_utils import ImageModelMixin, StrictLoadingMixin, check_all, model_class_labels

__all__ = ["NCSNScoreModel"]

# The largest sizes accepted (a config file is untrusted input: ngf 256 at 1024 px is already ~120M parameters and
# gigabytes of activations; the published NCSN/NCSNv2 models use ngf <= 128 and at most 256 px).
MAX_NGF = 256
MAX_SAMPLE_SIDE = 1024
MAX_IN_CHANNELS = 16
MAX_CLASS_EMBEDS = 100_000

# The encoder of each published NCSNv2 variant, shallowest stage first: (stage, refine block that fuses it,
# input channels and output channels as multiples of ngf, whether the stage's first block is a "down" block,
# dilation). A "down" block with dilation > 1 keeps the resolution; the others halve it. The decoder refines
# from the deepest stage up; each refine block outputs the channels of the next shallower stage.
ARCHITECTURES = {
    # CIFAR-10 and CelebA (NCSNv2 in the reference code).
    "ncsnv2": (
        ("res1", "refine4", 1, 1, False, 1),
        ("res2", "refine3", 1, 2, True, 1),
        ("res3", "refine2", 2, 2, True, 2),
        ("res4", "refine1", 2, 2, True, 4),
    ),
    # LSUN church/bedroom/tower at 96-128 px (NCSNv2Deeper).
    "ncsnv2-deeper": (
        ("res1", "refine5", 1, 1, False, 1),
        ("res2", "refine4", 1, 2, True, 1),
        ("res3", "refine3", 2, 2, True, 1),
        ("res4", "refine2", 2, 4, True, 2),
        ("res5", "refine1", 4, 4, True, 4),
    ),
    # FFHQ at 256 px (NCSNv2Deepest).
    "ncsnv2-deepest": (
        ("res1", "refine5", 1, 1, False, 1),
        ("res2", "refine4", 1, 2, True, 1),
        ("res3", "refine3", 2, 2, True, 1),
        ("res31", "refine31", 2, 2, True, 1),
        ("res4", "refine2", 2, 4, True, 2),
        ("res5", "refine1", 4, 4, True, 4),
    ),
}


def check_class_embeddings(num_class_embeds: Optional[int], unconditional_class: bool) -> Optional[int]:
    """The class embeddings of a class-conditional image model: ``num_class_embeds`` (checked), plus one for the "no
    class" label when ``unconditional_class``; `None` for an unconditional model (which cannot have that label)."""
    check_bool("unconditional_class", unconditional_class)
    if num_class_embeds is None:
        if unconditional_class:
            raise ValueError("unconditional_class=True needs num_class_embeds (the classes of the model).")
        return None
    return check_integer("num_class_embeds", num_class_embeds, high=MAX_CLASS_EMBEDS) + int(unconditional_class)


def _halvings(architecture: str) -> int:
    """How many times the encoder of ``architecture`` halves the resolution."""
    return sum(down and dilation == 1 for _, _, _, _, down, dilation in ARCHITECTURES[architecture])


def instance_norm_plus_plus(
    hidden: torch.Tensor, gamma: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, eps: float
) -> torch.Tensor:
    """InstanceNorm++ (Song & Ermon 2019, appendix A, eq. 7) of `hidden` (B, C, H, W) in three passes over the maps.

    ``gamma``, ``alpha``, ``beta`` have shape (C,) or, per example, (B, C). The reference computes the channel means,
    then ``instance_norm`` (two more reductions and a pass), then two more passes for the affine terms; here:

    1. the mean ``mu`` and biased variance ``s**2`` of every feature map (two passes, the second over ``x - mu``:
       on the CPU several times faster than ``torch.var_mean``'s one-pass Welford kernel, and as stable);
    2. the means standardised across channels, ``m = (mu - mean_c(mu)) / sqrt(var_c(mu) + eps)`` (unbiased
       variance, as the reference);
    3. ``gamma (x - mu) / sqrt(s**2 + eps) + gamma alpha m + beta`` rewritten as ``x * a + b`` with
       ``a = gamma / sqrt(s**2 + eps)`` and ``b = beta + gamma alpha m - mu a``: one multiply-add per element.

    The result equals the reference's to float32 round-off; the memory format of `hidden` (channels-last) is kept.
    """
    mean = hidden.mean(dim=(2, 3), keepdim=True)
    variance = (hidden - mean).square().mean(dim=(2, 3))
    mean = mean[:, :, 0, 0]
    means_variance, means_mean = torch.var_mean(mean, dim=1, keepdim=True)
    standardized_means = (mean - means_mean) * torch.rsqrt(means_variance + eps)
    scale = gamma * torch.rsqrt(variance + eps)
    shift = beta + gamma * alpha * standardized_means - mean * scale
    return torch.addcmul(shift[:, :, None, None], hidden, scale[:, :, None, None])


class _InstanceNormPlusPlus(nn.Module):
    """Non-conditional InstanceNorm++ (Song & Ermon 2019, appendix A).

    Plain instance normalisation throws away the mean of every feature map, which for images is the colour
    of the picture. InstanceNorm++ re-injects it: the per-channel means are standardised across channels and
    added back with a learned weight `alpha`, before the usual affine `gamma`, `beta`.

    With ``num_classes``, a class-conditional scale and shift follow (``x -> x (1 + scale_y) + shift_y``, learned
    per class ``y``, zero at initialisation): the conditional instance normalisation NCSN (v1) uses for its noise
    levels, here for classes, added without changing the unconditional parameters.

    Args:
        num_channels (`int`): Number of feature channels (must be >= 2, the means are standardised across them).
        eps (`float`, *optional*, defaults to 1e-5): Added to variances before taking square roots.
        num_classes (`int`, *optional*): Number of classes for the class-conditional scale and shift.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, num_classes: Optional[int] = None):
        super().__init__()
        self.eps = eps
        if num_classes is not None:
            self.class_scale_shift = nn.Embedding(num_classes, 2 * num_channels)
            nn.init.zeros_(self.class_scale_shift.weight)
        # N(1, 0.02) for the multiplicative terms matches the reference initialisation.
        self.alpha = nn.Parameter(torch.empty(num_channels).normal_(1.0, 0.02))
        self.gamma = nn.Parameter(torch.empty(num_channels).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.zeros(num_channels))

    def forward(self, hidden: torch.Tensor, class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Normalise `hidden` of shape (B, C, H, W) (for the classes ``class_labels``, shape (B,), if conditional)."""
        if class_labels is None:
            return instance_norm_plus_plus(hidden, self.gamma, self.alpha, self.beta, self.eps)
        # (normalized * gamma + beta) * (1 + scale) + shift: the class terms fold into gamma and beta.
        scale, shift = self.class_scale_shift(class_labels).to(hidden.dtype).chunk(2, dim=1)
        gain = 1 + scale
        return instance_norm_plus_plus(hidden, self.gamma * gain, self.alpha, self.beta * gain + shift, self.eps)


class _ConvMeanPool(nn.Module):
    """A same-padded convolution followed by 2x2 mean pooling (halves H and W).

    Args:
        in_channels (`int`): Input channels.
        out_channels (`int`): Output channels.
        kernel_size (`int`): Odd kernel size (3 on the main path, 1 on the shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Apply the convolution, then average each 2x2 patch; H and W must be even."""
        return F.avg_pool2d(self.conv(hidden), kernel_size=2)


def _conv3x3(in_channels: int, out_channels: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution padded so that it keeps the spatial size for any dilation.

    Args:
        in_channels (`int`): Input channels.
        out_channels (`int`): Output channels.
        dilation (`int`, *optional*, defaults to 1): Dilation of the kernel.
        bias (`bool`, *optional*, defaults to `True`): Whether the convolution has a bias.

    Returns:
        `nn.Conv2d`: The convolution module.
    """
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=bias)


class _ResidualBlock(nn.Module):
    """Pre-activation residual block: (InstanceNorm++ -> ELU -> conv) twice, plus a shortcut.

    A "down" block with `dilation == 1` halves the resolution with mean pooling and uses a 1x1 conv + mean pool
    shortcut. With `dilation > 1` the reference network keeps the resolution instead (dilation grows the
    receptive field), but still gives the block a learned shortcut, a dilated 3x3 conv; this is reproduced
    here because it is part of the published parameter count.

    Args:
        in_channels (`int`): Input channels.
        out_channels (`int`): Output channels.
        down (`bool`, *optional*, defaults to `False`): Whether this is a "down" block (see above).
        dilation (`int`, *optional*, defaults to 1): Dilation of both 3x3 convolutions.
        num_classes (`int`, *optional*): Classes of the class-conditional normalisation, if any.
    """

    def __init__(self, in_channels: int, out_channels: int, down: bool = False, dilation: int = 1, num_classes=None):
        super().__init__()
        self.normalize1 = _InstanceNormPlusPlus(in_channels, num_classes=num_classes)
        if down:
            # The channel change happens in the second conv for "down" blocks, in the first otherwise.
            self.conv1 = _conv3x3(in_channels, in_channels, dilation)
            self.normalize2 = _InstanceNormPlusPlus(in_channels, num_classes=num_classes)
            if dilation == 1:
                self.conv2 = _ConvMeanPool(in_channels, out_channels, kernel_size=3)
                self.shortcut = _ConvMeanPool(in_channels, out_channels, kernel_size=1)
            else:
                self.conv2 = _conv3x3(in_channels, out_channels, dilation)
                self.shortcut = _conv3x3(in_channels, out_channels, dilation)
        else:
            self.conv1 = _conv3x3(in_channels, out_channels, dilation)
            self.normalize2 = _InstanceNormPlusPlus(out_channels, num_classes=num_classes)
            self.conv2 = _conv3x3(out_channels, out_channels, dilation)
            if in_channels == out_channels:
                self.shortcut = nn.Identity()
            elif dilation == 1:
                self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)
            else:
                self.shortcut = _conv3x3(in_channels, out_channels, dilation)

    def forward(self, hidden: torch.Tensor, class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Apply the block to `hidden` (B, C_in, H, W); returns (B, C_out, H', W')."""
        residual = self.conv1(F.elu(self.normalize1(hidden, class_labels)))
        residual = self.conv2(F.elu(self.normalize2(residual, class_labels)))
        return self.shortcut(hidden) + residual


class _ResidualConvUnit(nn.Module):
    """RefineNet residual conv units (RCU): `num_blocks` x (ELU -> conv -> ELU -> conv, plus identity).

    Args:
        channels (`int`): Channels in and out.
        num_blocks (`int`): Number of residual units applied in sequence.
        num_stages (`int`, *optional*, defaults to 2): ELU + bias-free 3x3 conv pairs per unit.
    """

    def __init__(self, channels: int, num_blocks: int, num_stages: int = 2):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList(_conv3x3(channels, channels, bias=False) for _ in range(num_stages))
            for _ in range(num_blocks)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Apply the units to `hidden` (B, C, H, W); returns the same shape."""
        for convs in self.blocks:
            residual = hidden
            for conv in convs:
                residual = conv(F.elu(residual))
            hidden = hidden + residual
        return hidden


class _MultiResolutionFusion(nn.Module):
    """RefineNet multi-resolution fusion (MSF): conv each input, resize to a common size, sum.

    Args:
        in_channels (`Sequence[int]`): Channels of each input.
        out_channels (`int`): Channels of the fused output.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.convs = nn.ModuleList(_conv3x3(channels, out_channels) for channels in in_channels)

    def forward(self, inputs: Sequence[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        """Fuse `inputs` (one tensor per input branch) into a (B, out_channels, *output_size) tensor."""
        fused = None
        for conv, hidden in zip(self.convs, inputs):
            hidden = F.interpolate(conv(hidden), size=output_size, mode="bilinear", align_corners=True)
            fused = hidden if fused is None else fused + hidden
        return fused


class _ChainedResidualPooling(nn.Module):
    """RefineNet chained residual pooling (CRP): a chain of 5x5 max-pool + conv stages whose outputs are summed.

    Pooling with stride 1 gathers context from a growing neighbourhood without changing the resolution.

    Args:
        channels (`int`): Channels in and out.
        num_stages (`int`, *optional*, defaults to 2): Length of the pooling chain.
    """

    def __init__(self, channels: int, num_stages: int = 2):
        super().__init__()
        self.convs = nn.ModuleList(_conv3x3(channels, channels, bias=False) for _ in range(num_stages))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Apply the chain to `hidden` (B, C, H, W); returns the same shape."""
        hidden = F.elu(hidden)
        path = hidden
        for conv in self.convs:
            path = conv(F.max_pool2d(path, kernel_size=5, stride=1, padding=2))
            hidden = hidden + path
        return hidden


class _RefineBlock(nn.Module):
    """A RefineNet block: RCUs per input, multi-resolution fusion, chained residual pooling, output RCUs.

    Args:
        in_channels (`Sequence[int]`): Channels of each input branch. With a single branch (the deepest
            block) there is nothing to fuse and the MSF step is skipped.
        out_channels (`int`): Channels of the output. With a single branch it must equal `in_channels[0]`.
        end (`bool`, *optional*, defaults to `False`): The last block gets 3 output RCUs instead of 1.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, end: bool = False):
        super().__init__()
        self.adapt_convs = nn.ModuleList(_ResidualConvUnit(channels, num_blocks=2) for channels in in_channels)
        self.msf = _MultiResolutionFusion(in_channels, out_channels) if len(in_channels) > 1 else None
        self.crp = _ChainedResidualPooling(out_channels)
        self.output_convs = _ResidualConvUnit(out_channels, num_blocks=3 if end else 1)

    def forward(self, inputs: Sequence[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        """Refine `inputs` (one tensor per branch) into a (B, out_channels, *output_size) tensor."""
        adapted = [adapt(hidden) for adapt, hidden in zip(self.adapt_convs, inputs)]
        hidden = adapted[0] if self.msf is None else self.msf(adapted, output_size)
        return self.output_convs(self.crp(hidden))


def check_image_batch(sample: torch.Tensor, in_channels: int, side_multiple: int, min_side: int) -> None:
    """Raise unless `sample` is a floating (B, in_channels, H, W) tensor whose sides are multiples of
    `side_multiple` and at least `min_side` (what an encoder that halves the resolution needs)."""
    if not isinstance(sample, torch.Tensor):
        raise TypeError(f"`sample` must be a torch.Tensor of shape (B, C, H, W), got {type(sample).__name__}.")
    if sample.ndim != 4:
        raise ValueError(f"`sample` must be 4-D (B, C, H, W), got shape {tuple(sample.shape)}.")
    if not sample.is_floating_point():
        raise ValueError(f"`sample` must have a floating point dtype, got {sample.dtype}.")
    if sample.shape[1] != in_channels:
        raise ValueError(f"`sample` has {sample.shape[1]} channels, expected in_channels={in_channels}.")
    height, width = sample.shape[2:]
    if height % side_multiple or width % side_multiple or height < min_side or width < min_side:
        kind = "even" if side_multiple == 2 else f"multiples of {side_multiple}"
        raise ValueError(f"`sample` height and width must be {kind} and >= {min_side}, got {height}x{width}.")


def sigma_per_example(
    timestep: torch.Tensor | float, batch_size: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Turn `timestep` (the noise level: a number, a 0-d or a (B,) tensor) into a validated (B,) tensor on
    `device` with `dtype`; non-finite or non-positive values raise `ValueError`."""
    if isinstance(timestep, torch.Tensor):
        if timestep.ndim != 0 and tuple(timestep.shape) != (batch_size,):
            raise ValueError(
                f"`timestep` (the noise level sigma) must be a scalar or have shape ({batch_size},) to "
                f"match the batch, got shape {tuple(timestep.shape)}."
            )
        requested = timestep.detach()
    elif isinstance(timestep, numbers.Real) and not isinstance(timestep, bool):
        # float64 on the CPU keeps the value exact for the error message below.
        requested = torch.tensor(float(timestep), dtype=torch.float64)
    else:
        raise TypeError(
            "`timestep` (the noise level sigma) must be a float or a tensor of shape () or "
            f"({batch_size},), got {type(timestep).__name__}."
        )
    sigma = requested.to(device=device, dtype=dtype)
    # Validated after the cast so that values which under- or overflow the model dtype are caught too;
    # a single `.all()` keeps it to one host-device synchronisation.
    valid = torch.isfinite(sigma) & (sigma > 0)

    def shown() -> str:
        bad_values = requested[~valid.to(requested.device)].tolist()
        return str(bad_values[0] if requested.ndim == 0 else bad_values)

    check_all(valid, f"`timestep` (the noise level sigma) must be finite and > 0 in the model dtype {dtype}", shown)
    return sigma.expand(batch_size)


class NCSNScoreModel(ImageModelMixin, StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""NCSNv2 score network ``s(x, sigma)`` estimating the score of noisy data, with a diffusers interface.

    The architecture is the ``NCSNv2`` RefineNet of Song & Ermon (2020) used for CIFAR-10 and CelebA. With
    ``C = ngf``:

    - ``begin_conv``: 3x3 conv, ``in_channels -> C``;
    - encoder: ``res1`` two residual blocks at ``C`` (full resolution); ``res2`` a "down" block ``C -> 2C``
      (conv + 2x2 mean pool, the only downsampling) and a plain block; ``res3`` and ``res4`` a "down" block
      and a plain block each at ``2C`` with dilation 2 and 4 (dilated "down" blocks keep the resolution);
    - decoder: four RefineNet blocks fusing ``res4``, then ``res3``, ``res2`` (to ``C`` channels) and
      ``res1`` (back to full resolution);
    - head: InstanceNorm++, ELU, 3x3 conv ``C -> in_channels``, and the division by ``sigma``.

    The network is not conditioned on the noise level other than through that final ``1 / sigma`` factor
    (technique 3 of the paper). All normalisation layers are the non-conditional InstanceNorm++ and all
    activations are ELU. With the paper's CIFAR-10 settings (``in_channels=3, ngf=128``) the model has exactly
    29,694,083 parameters, the published figure.

    The parameters mirror the reference code one-to-one and keep its state-dict keys, except inside the
    residual conv units, where ``...adapt_convs.K.blocks.I.J.weight`` here corresponds to
    ``...adapt_convs.K.{I+1}_{J+1}_conv.weight`` there (likewise for ``output_convs``). A reference checkpoint
    therefore loads after that rename, after dropping the reference's ``sigmas`` buffer and any ``module.``
    prefix left by ``DataParallel``.

    ``architecture`` picks the published variant: ``"ncsnv2"`` (above; CIFAR-10, CelebA), ``"ncsnv2-deeper"``
    (``NCSNv2Deeper``, LSUN: five stages up to ``4 * ngf`` channels, two halvings; 83,445,379 parameters at
    128 px) or ``"ncsnv2-deepest"`` (``NCSNv2Deepest``, FFHQ: an extra halving stage ``res31``; 94,132,611
    parameters at 256 px). See `ARCHITECTURES`.

    Differences from the reference code:

    - The reference maps inputs from ``[0, 1]`` to ``[-1, 1]`` (``2 * x - 1``) inside ``forward`` unless its
      config sets ``logit_transform`` or ``rescaled``. Here that is ``center_input`` (default `False`: the sample
      is fed to ``begin_conv`` as it is, so the caller chooses the data range); converted checkpoints set it.
    - The reference looks ``sigma`` up from an index into its own noise table; here ``timestep`` *is* the noise
      level, so the noise schedule lives entirely in the scheduler.

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            Number of image channels (>= 1). The score has the same number of channels.
        sample_size (`int`, *optional*, defaults to 32):
            Default side length of generated images (even, >= 4 for ``"ncsnv2"``); used by pipelines through
            [`~NCSNScoreModel.sample_shape`]. The network itself accepts any height and width it can halve.
        ngf (`int`, *optional*, defaults to 128):
            Base number of feature channels (>= 2); the deeper stages use ``2 * ngf`` (``4 * ngf``). Small values
            such as 8 or 16 give tiny models for tests and CPU experiments.
        architecture (`str`, *optional*, defaults to ``"ncsnv2"``):
            ``"ncsnv2"``, ``"ncsnv2-deeper"`` or ``"ncsnv2-deepest"``; ``sample_size`` must be a multiple of
            2, 4 or 8 respectively (one per halving).
        center_input (`bool`, *optional*, defaults to `False`):
            Map the input ``x -> 2x - 1`` first, as the released models do (they are fed data in ``[0, 1]``).
        num_class_embeds (`int`, *optional*):
            Make the model class-conditional, ``s(x, sigma, y)`` for ``num_class_embeds`` classes (diffusers'
            ``UNet2DModel`` name): every InstanceNorm++ gets a learned per-class scale and shift (NCSN's
            conditional instance normalisation, with classes instead of noise levels), and ``forward`` then needs
            ``class_labels``. `None` (the default, and the published models): unconditional.
        unconditional_class (`bool`, *optional*, defaults to `False`):
            With ``num_class_embeds``, also learn the "no class" label, index ``num_class_embeds`` (``ncsn-train
            --label_dropout``): ``class_labels=None`` or that index gives the score of the whole data, which
            classifier-free guidance needs.

    Example:

    ```py
    >>> import torch
    >>> from ncsn_pipeline.modeling_ncsn import NCSNScoreModel

    >>> model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8)
    >>> model.sample_shape
    (1, 8, 8)
    >>> noisy = torch.randn(2, 1, 8, 8)
    >>> score = model(noisy, timestep=torch.tensor([0.5, 1.0])).sample
    >>> score.shape
    torch.Size([2, 1, 8, 8])

    ```
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 32,
        ngf: int = 128,
        architecture: str = "ncsnv2",
        center_input: bool = False,
        num_class_embeds: Optional[int] = None,
        unconditional_class: bool = False,
    ):
        super().__init__()
        in_channels = check_integer("in_channels", in_channels, high=MAX_IN_CHANNELS)
        embeddings = check_class_embeddings(num_class_embeds, unconditional_class)
        architecture = check_choice("architecture", architecture, list(ARCHITECTURES))
        check_bool("center_input", center_input)
        self.side_multiple = 2 ** _halvings(architecture)
        # After the last halving the feature maps must keep more than one pixel (instance normalisation needs
        # spatial statistics).
        self.min_side = 2 * self.side_multiple
        sample_size = check_integer("sample_size", sample_size, low=self.min_side, high=MAX_SAMPLE_SIDE)
        if sample_size % self.side_multiple:
            kind = "even" if self.side_multiple == 2 else f"a multiple of {self.side_multiple}"
            raise ValueError(
                f"sample_size must be {kind} for architecture {architecture!r} "
                f"(its encoder halves the resolution {_halvings(architecture)} times), got {sample_size}."
            )
        ngf = check_integer("ngf", ngf, low=2, high=MAX_NGF)

        self.stages = ARCHITECTURES[architecture]
        self.begin_conv = nn.Conv2d(in_channels, ngf, 3, padding=1)
        for name, _, in_mult, out_mult, down, dilation in self.stages:
            first = _ResidualBlock(in_mult * ngf, out_mult * ngf, down=down, dilation=dilation, num_classes=embeddings)
            second = _ResidualBlock(out_mult * ngf, out_mult * ngf, dilation=dilation, num_classes=embeddings)
            setattr(self, name, nn.ModuleList([first, second]))
        # Decoder, deepest stage first: it fuses its stage's features with the previous refine block's output.
        for index in range(len(self.stages) - 1, -1, -1):
            name, refine, _, out_mult, _, _ = self.stages[index]
            branches = [out_mult * ngf] if index == len(self.stages) - 1 else [out_mult * ngf] * 2
            refined_mult = self.stages[index - 1][3] if index > 0 else 1
            setattr(self, refine, _RefineBlock(branches, refined_mult * ngf, end=index == 0))
        self.normalizer = _InstanceNormPlusPlus(ngf, num_classes=embeddings)
        self.end_conv = nn.Conv2d(ngf, in_channels, 3, padding=1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        class_labels: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        r"""Estimate the score ``grad_x log p_sigma(x)`` of the data perturbed with Gaussian noise of std ``sigma``.

        Args:
            sample (`torch.Tensor`):
                Noisy images of shape ``(B, in_channels, H, W)``, floating point, with even ``H`` and ``W`` >= 4.
            timestep (`torch.Tensor` or `float`):
                The noise level ``sigma`` itself (not an index): a Python number, a 0-d tensor shared by the
                batch, or a tensor of shape ``(B,)`` with one value per example. Every value must be finite and
                > 0.
            class_labels (`torch.Tensor` or `int`, *optional*):
                For a class-conditional model (``num_class_embeds``), the class of each example, shape ``(B,)``
                (or one int for the batch); refused by an unconditional model.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`~models.unets.unet_2d.UNet2DOutput`] instead of a plain tuple.

        Returns:
            [`~models.unets.unet_2d.UNet2DOutput`] or `tuple`: The score, a tensor of the same shape and dtype as
            `sample`, in ``.sample`` (or as the only element of the tuple if `return_dict` is `False`).

        Raises:
            `ValueError`: If `sample` is not a floating 4-D tensor with ``in_channels`` channels and even
                ``H``, ``W`` >= 4, or if `timestep` has the wrong shape or a non-positive or non-finite value.
            `TypeError`: If `sample` is not a tensor, or `timestep` is neither a tensor nor a real number.
        """
        check_image_batch(sample, self.config.in_channels, self.side_multiple, self.min_side)
        # Computing in the model's dtype lets a float32 model score float16/float64 inputs and vice versa.
        compute_dtype = self.dtype
        sigma = sigma_per_example(timestep, sample.shape[0], sample.device, compute_dtype)
        labels = model_class_labels(
            class_labels, sample.shape[0], self.num_classes, self.unconditional_label, sample.device
        )

        hidden = sample.to(compute_dtype)
        if self.config.center_input:
            hidden = 2 * hidden - 1  # the reference models are fed [0, 1] data and map it to [-1, 1] themselves
        # Channels-last feature maps (NHWC): the CPU's convolutions and the 5x5 max pooling of the refine blocks
        # run much faster on them than on NCHW (benchmarks/network_speed.py); the score comes back NCHW. (Set after
        # the first convolution: a one-channel input is NCHW and channels-last at once, so PyTorch would keep NCHW.)
        hidden = self.begin_conv(hidden).contiguous(memory_format=torch.channels_last)
        features = []
        for name, *_ in self.stages:
            for block in getattr(self, name):
                hidden = block(hidden, labels)
            features.append(hidden)

        refined = None
        for (_, refine, *_), stage_features in zip(reversed(self.stages), reversed(features)):
            inputs = [stage_features] if refined is None else [stage_features, refined]
            refined = getattr(self, refine)(inputs, stage_features.shape[2:])

        score = self.end_conv(F.elu(self.normalizer(refined, labels)))
        score = (score / sigma[:, None, None, None]).to(sample.dtype).contiguous()

        if not return_dict:
            return (score,)
        return UNet2DOutput(sample=score)
