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
"""A diffusers ``UNet2DModel`` with EDM's preconditioning, returning the score: the package's fast-training network.

    Karras, Aittala, Aila & Laine, "Elucidating the Design Space of Diffusion-Based Generative Models",
    NeurIPS 2022, https://arxiv.org/abs/2206.00364 (section 5 and Table 1; code: https://github.com/NVlabs/edm,
    ``training/networks.py``, ``EDMPrecond``).

The U-Net ``F`` is wrapped so that the denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, sigma)`` has unit-variance
inputs and targets at every noise level; the score every sampler of the package consumes is Tweedie's
``s(x, sigma) = (D(x; sigma) - x) / sigma**2``. Trained with ``ncsn-train --model edm-unet`` (log-normal noise
levels and EDM's loss weight, `ncsn_pipeline.losses`), it reaches a given quality in far less CPU time than the
NCSNv2 RefineNet (``benchmarks/training_recipes.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DModel, UNet2DOutput

from .checks import check_integer, check_positive
from .modeling_ncsn import (
    MAX_IN_CHANNELS,
    MAX_SAMPLE_SIDE,
    check_class_embeddings,
    check_image_batch,
    sigma_per_example,
)
from .modeling_utils import ImageModelMixin, StrictLoadingMixin, model_class_labels

__all__ = ["EDMScoreModel", "edm_preconditioning"]

MAX_CHANNELS = 1024
MAX_BLOCKS = 6
MAX_LAYERS_PER_BLOCK = 8


def edm_preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's ``(c_in, c_skip, c_out)`` for noise levels ``sigma`` (Karras et al. 2022, Table 1).

    ``c_in = 1 / sqrt(sigma**2 + sigma_data**2)`` gives the network unit-variance inputs,
    ``c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)`` and ``c_out = sigma sigma_data / sqrt(sigma**2 +
    sigma_data**2)`` make its training target ``(x_clean - c_skip x) / c_out`` unit-variance too.

    Example:
        >>> c_in, c_skip, c_out = edm_preconditioning(torch.tensor([0.5]), sigma_data=0.5)
        >>> [round(value.item(), 4) for value in (c_in, c_skip, c_out)]
        [1.4142, 0.5, 0.3536]
    """
    total = sigma**2 + sigma_data**2
    return total.rsqrt(), sigma_data**2 / total, sigma * sigma_data * total.rsqrt()


class EDMScoreModel(ImageModelMixin, StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""Score model ``s(x, sigma)`` made of diffusers' ``UNet2DModel`` and EDM's preconditioning.

    Computation, for noisy images ``x`` at noise levels ``sigma`` (Karras et al. 2022, Table 1, "Ours"):

    1. ``c_in, c_skip, c_out`` from ``sigma`` and ``sigma_data`` (`edm_preconditioning`).
    2. ``F = U(c_in x, sigma) * sigma``: the U-Net ``U`` embeds ``log(sigma)`` with Gaussian Fourier features and
       divides its output by ``sigma`` (``UNet2DModel``'s ``"fourier"`` convention), which step 2 undoes.
    3. The denoiser ``D = c_skip x + c_out F`` (the clean image it expects, EDM eq. 7).
    4. The score ``(D - x) / sigma**2`` (Tweedie's formula), which every sampler of the package consumes.

    The U-Net has one block per entry of ``block_out_channels`` (each halves the resolution except the last),
    ``layers_per_block`` residual layers per block, self-attention in the deepest block, GroupNorm with
    ``norm_num_groups`` groups, and, with ``num_class_embeds``, a learned class embedding added to the sigma
    embedding (``UNet2DModel``'s own class conditioning).

    Args:
        in_channels (`int`, defaults to 1): Image channels (>= 1).
        sample_size (`int`, defaults to 28): Side of generated images; a multiple of ``2 ** (len(block_out_channels)
            - 1)`` (the U-Net halves the resolution that many times) and at least twice that.
        block_out_channels (`Sequence[int]`, defaults to ``(32, 64, 64)``): Channels of each U-Net block, each a
            multiple of ``norm_num_groups``.
        layers_per_block (`int`, defaults to 1): Residual layers per block.
        norm_num_groups (`int`, defaults to 8): GroupNorm groups.
        num_class_embeds (`int`, *optional*): Make the model class-conditional with that many classes; ``forward``
            then needs ``class_labels``.
        unconditional_class (`bool`, defaults to `False`): With ``num_class_embeds``, also learn the "no class" label,
            index ``num_class_embeds`` (``ncsn-train --label_dropout``; classifier-free guidance).
        sigma_data (`float`, defaults to 0.5): The standard deviation of the training data (EDM's ``sigma_data``;
            ``ncsn-train`` measures it on the data).

    Example:

    ```py
    >>> import torch
    >>> from ncsn_pipeline.modeling_edm import EDMScoreModel

    >>> model = EDMScoreModel(in_channels=1, sample_size=8, block_out_channels=(8, 16), norm_num_groups=4)
    >>> model.sample_shape
    (1, 8, 8)
    >>> score = model(torch.randn(2, 1, 8, 8), timestep=torch.tensor([0.5, 2.0])).sample
    >>> score.shape
    torch.Size([2, 1, 8, 8])

    ```
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        sample_size: int = 28,
        block_out_channels: Sequence[int] = (32, 64, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        num_class_embeds: Optional[int] = None,
        sigma_data: float = 0.5,
        unconditional_class: bool = False,
    ):
        super().__init__()
        in_channels = check_integer("in_channels", in_channels, high=MAX_IN_CHANNELS)
        embeddings = check_class_embeddings(num_class_embeds, unconditional_class)
        check_positive("sigma_data", sigma_data)
        norm_num_groups = check_integer("norm_num_groups", norm_num_groups, high=MAX_CHANNELS)
        layers_per_block = check_integer("layers_per_block", layers_per_block, high=MAX_LAYERS_PER_BLOCK)
        if isinstance(block_out_channels, (str, bytes)) or not isinstance(block_out_channels, Sequence):
            raise TypeError(f"block_out_channels must be a sequence of integers, got {block_out_channels!r}.")
        if not 1 <= len(block_out_channels) <= MAX_BLOCKS:
            raise ValueError(f"block_out_channels must have 1 to {MAX_BLOCKS} entries, got {list(block_out_channels)}.")
        channels = [check_integer("block_out_channels", value, high=MAX_CHANNELS) for value in block_out_channels]
        if any(value % norm_num_groups for value in channels):
            raise ValueError(
                f"every entry of block_out_channels {channels} must be a multiple of norm_num_groups={norm_num_groups}."
            )
        self.side_multiple = 2 ** (len(channels) - 1)
        self.min_side = 2 * self.side_multiple
        sample_size = check_integer("sample_size", sample_size, low=self.min_side, high=MAX_SAMPLE_SIDE)
        if sample_size % self.side_multiple:
            raise ValueError(
                f"sample_size must be a multiple of {self.side_multiple} (the U-Net with {len(channels)} blocks halves "
                f"the resolution {len(channels) - 1} times), got {sample_size}."
            )
        attention_last = len(channels) > 1  # self-attention where the feature map is smallest
        self.unet = UNet2DModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=in_channels,
            block_out_channels=tuple(channels),
            down_block_types=("DownBlock2D",) * (len(channels) - 1) + ("AttnDownBlock2D",) * attention_last,
            up_block_types=("AttnUpBlock2D",) * attention_last + ("UpBlock2D",) * (len(channels) - 1),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            time_embedding_type="fourier",
            num_class_embeds=embeddings,
        )

    def _checked_inputs(self, sample, timestep, class_labels):
        check_image_batch(sample, self.config.in_channels, self.side_multiple, self.min_side)
        dtype = self.unet.conv_in.weight.dtype  # diffusers' `self.dtype` walks every module (1 ms on each call)
        sigma = sigma_per_example(timestep, sample.shape[0], sample.device, dtype)
        labels = model_class_labels(
            class_labels, sample.shape[0], self.num_classes, self.unconditional_label, sample.device
        )
        return sample.to(dtype), sigma[:, None, None, None], labels

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        c_in, c_skip, c_out = edm_preconditioning(sigma, self.config.sigma_data)
        network = self.unet(c_in * x, sigma.flatten(), class_labels=labels).sample * sigma
        return c_skip * x + c_out * network

    def denoise(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, class_labels: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The denoiser ``D(x; sigma)`` (steps 1-3 of the class docstring): the clean image the model expects, in the
        model's dtype. Takes the arguments of ``forward``."""
        return self._denoise(*self._checked_inputs(sample, timestep, class_labels))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        class_labels: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        r"""Estimate the score ``grad_x log p_sigma(x)`` of the data perturbed with Gaussian noise of std ``sigma``.

        Args:
            sample (`torch.Tensor`): Noisy images ``(B, in_channels, H, W)``, floating point, sides multiples of
                ``2 ** (len(block_out_channels) - 1)``.
            timestep (`torch.Tensor` or `float`): The noise level ``sigma`` itself: a number, a 0-d tensor or one
                value per example ``(B,)``; finite and > 0.
            class_labels (`torch.Tensor` or `int`, *optional*): The class of each example, for a class-conditional
                model (refused by an unconditional one).
            return_dict (`bool`, defaults to `True`): Return a ``UNet2DOutput`` rather than a tuple.

        Returns:
            ``UNet2DOutput`` or `tuple`: The score ``(D(x; sigma) - x) / sigma**2`` (step 4), same shape and dtype as
            ``sample``.

        Raises:
            `ValueError`: For a malformed ``sample``, a non-positive or non-finite ``sigma``, or bad class labels.
            `TypeError`: If ``sample`` is not a tensor or ``timestep`` is neither a tensor nor a number.
        """
        x, sigma, labels = self._checked_inputs(sample, timestep, class_labels)
        score = ((self._denoise(x, sigma, labels) - x) / sigma**2).to(sample.dtype)
        if not return_dict:
            return (score,)
        return UNet2DOutput(sample=score)
