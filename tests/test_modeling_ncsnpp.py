"""NCSN++'s own FIR resampling (issue 23: one depthwise convolution instead of upfirdn2d's single-channel one)."""

import pytest
import torch
from diffusers.models.downsampling import downsample_2d
from diffusers.models.upsampling import upsample_2d

from ncsn_pipeline.modeling_ncsnpp import fir_downsample, fir_upsample


@pytest.mark.parametrize(
    "kernel", [(1, 1), (1, 3, 3, 1), (1, 5, 10, 10, 5, 1), (1, 2, 1), (1, 4, 6, 4, 1), (1, 2, 3, 1)]
)
@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_fir_resampling_equals_diffusers_upfirdn2d(kernel, size):
    """Every kernel length (even: transposed convolution; odd: explicit zero insertion), asymmetric kernels (the
    flip matters) and non-square maps give diffusers' ``downsample_2d`` / ``upsample_2d`` to float32 round-off."""
    hidden = torch.randn(2, 5, *size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fir_downsample(hidden, kernel), downsample_2d(hidden, kernel, factor=2))
    torch.testing.assert_close(fir_upsample(hidden, kernel), upsample_2d(hidden, kernel, factor=2))
