"""`NoiseConditionalClassifier`: ``p_sigma(y | x)`` for noisy images, the classifier of classifier guidance.

Guidance needs a classifier of *noisy* data at every level the sampler visits (Song et al. 2021, section 5 and
Appendix I.1, who train a Wide-ResNet on noisy CIFAR-10 images with the noise level as input): a classifier of
clean images is meaningless on ``x + sigma z`` at large sigma, and so is its gradient. Train one with
``ncsn-train-classifier`` and pass it to a pipeline with ``classifier=`` and ``guidance_scale=``.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .checks import check_integer, check_positive
from .guidance import ClassifierOutput
from .modeling_ncsn import MAX_IN_CHANNELS, MAX_SAMPLE_SIDE, check_image_batch, sigma_per_example
from .modeling_utils import StrictLoadingMixin

MAX_CLASSES = 100_000
MAX_CLASSIFIER_CHANNELS = 1024
MAX_CLASSIFIER_STAGES = 8
NOISE_FEATURES = 16  # Fourier features of log(sigma)


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where the channels allow, else the largest divisor below 8."""
    return next(groups for groups in range(min(8, channels), 0, -1) if channels % groups == 0)


class _NoiseConditionalBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, with the noise embedding as a per-channel scale and shift in between, and a
    (1x1 conv) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.noise_scale_shift = nn.Linear(embedding_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, hidden: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        residual = self.conv1(F.silu(self.norm1(hidden)))
        scale, shift = self.noise_scale_shift(embedding).chunk(2, dim=1)
        residual = self.norm2(residual) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        residual = self.conv2(F.silu(residual))
        return self.shortcut(hidden) + residual


class NoiseConditionalClassifier(StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""A small noise-conditional CNN classifier ``p_sigma(y | x)`` for classifier guidance.

    1. Scale the input to unit variance at every level, ``x / sqrt(sigma_data**2 + sigma**2)`` (EDM's ``c_in``).
    2. Embed the noise level: Fourier features of ``log(sigma)`` and a two-layer MLP.
    3. One residual block per entry of ``block_out_channels``, each conditioned on the embedding (a per-channel
       scale and shift after its second normalisation), with 2x2 mean pooling between stages.
    4. GroupNorm, SiLU, global mean pooling and a linear layer: ``num_classes`` logits.

    Args:
        in_channels (`int`, defaults to 3): Image channels.
        sample_size (`int`, defaults to 32): Image side; a multiple of ``2 ** (len(block_out_channels) - 1)``.
        num_classes (`int`, defaults to 10): Classes (>= 2).
        block_out_channels (`Sequence[int]`, defaults to ``(32, 64)``): Channels of each stage.
        sigma_data (`float`, defaults to 0.5): The data's standard deviation for step 1.

    Example:
        >>> import torch
        >>> classifier = NoiseConditionalClassifier(in_channels=1, sample_size=8, num_classes=10)
        >>> classifier(torch.randn(4, 1, 8, 8), torch.full((4,), 0.5)).logits.shape
        torch.Size([4, 10])
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 32,
        num_classes: int = 10,
        block_out_channels: Sequence[int] = (32, 64),
        sigma_data: float = 0.5,
    ):
        super().__init__()
        in_channels = check_integer("in_channels", in_channels, high=MAX_IN_CHANNELS)
        num_classes = check_integer("num_classes", num_classes, low=2, high=MAX_CLASSES)
        if isinstance(block_out_channels, (str, bytes)) or not isinstance(block_out_channels, Sequence):
            raise ValueError(f"block_out_channels must be a list of channel counts, got {block_out_channels!r}.")
        if not 1 <= len(block_out_channels) <= MAX_CLASSIFIER_STAGES:
            raise ValueError(
                f"block_out_channels must list 1 to {MAX_CLASSIFIER_STAGES} stages, got {list(block_out_channels)}."
            )
        limit = MAX_CLASSIFIER_CHANNELS
        channels = [check_integer("block_out_channels entry", width, high=limit) for width in block_out_channels]
        self.side_multiple = 2 ** (len(channels) - 1)
        sample_size = check_integer("sample_size", sample_size, high=MAX_SAMPLE_SIDE)
        if sample_size % self.side_multiple:
            raise ValueError(
                f"sample_size must be a multiple of {self.side_multiple} for {len(channels)} stages (each after the "
                f"first halves the resolution), got {sample_size}."
            )
        check_positive("sigma_data", sigma_data)

        embedding_dim = 4 * channels[0]
        self.register_buffer("frequencies", torch.exp(torch.linspace(0.0, math.log(32.0), NOISE_FEATURES // 2)))
        self.noise_embedding = nn.Sequential(
            nn.Linear(NOISE_FEATURES, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim), nn.SiLU()
        )
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        widths = [channels[0], *channels]
        self.blocks = nn.ModuleList(
            _NoiseConditionalBlock(widths[i], widths[i + 1], embedding_dim) for i in range(len(channels))
        )
        self.norm_out = nn.GroupNorm(_groups(channels[-1]), channels[-1])
        self.head = nn.Linear(channels[-1], num_classes)

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return self.config.num_classes

    @property
    def sample_shape(self) -> Tuple[int, int, int]:
        """``(in_channels, sample_size, sample_size)``."""
        return (self.config.in_channels, self.config.sample_size, self.config.sample_size)

    def forward(
        self, sample: torch.Tensor, timestep: Union[float, torch.Tensor], return_dict: bool = True
    ) -> Union[ClassifierOutput, Tuple[torch.Tensor]]:
        """Class logits of the noisy images ``sample`` at noise level ``timestep`` (sigma).

        Args:
            sample (`torch.Tensor`): ``(B, in_channels, H, W)``; H and W multiples of the pooling.
            timestep (`float` or `torch.Tensor`): The noise level sigma, a number or ``(B,)``.
            return_dict (`bool`, defaults to `True`): Return a `ClassifierOutput` instead of a tuple.

        Returns:
            `ClassifierOutput` or `tuple`: ``logits`` of shape ``(B, num_classes)``.
        """
        check_image_batch(sample, self.config.in_channels, self.side_multiple, self.side_multiple)
        dtype = self.dtype
        sigma = sigma_per_example(timestep, sample.shape[0], sample.device, dtype)
        # 1. Unit-variance input at every level.
        hidden = sample.to(dtype) / torch.sqrt(self.config.sigma_data**2 + sigma**2)[:, None, None, None]
        # 2. Noise embedding.
        angles = sigma.log()[:, None] * self.frequencies[None, :].to(dtype)
        embedding = self.noise_embedding(torch.cat([angles.sin(), angles.cos()], dim=1))
        # 3. Residual stages, halving the resolution between them.
        hidden = self.conv_in(hidden)
        for index, block in enumerate(self.blocks):
            if index > 0:
                hidden = F.avg_pool2d(hidden, 2)
            hidden = block(hidden, embedding)
        # 4. Pool and classify.
        logits = self.head(F.silu(self.norm_out(hidden)).mean(dim=(2, 3))).to(sample.dtype)
        if not return_dict:
            return (logits,)
        return ClassifierOutput(logits=logits)

