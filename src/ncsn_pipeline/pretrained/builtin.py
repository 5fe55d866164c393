"""Built-in exact-score pipelines: sample them without any training or download.

* ``"ncsn-toy"``: NCSN's two-Gaussian toy ``0.2 N((-5, -5), I) + 0.8 N((5, 5), I)`` with the
  ``"ncsn-toy"`` annealing preset (Song & Ermon 2019, section 3.2).
* ``"glyph-mixture"``: a 1x8x8 "image" mixture of five glyphs (bar, column, cross, frame,
  diagonal) with unequal weights, sampled as images in ``[0, 1]``.
* ``"color-glyphs"``: the same glyphs in colour, 3x8x8: each glyph in red and in blue on dark grey (ten modes).
  Red and blue glyphs of one shape have the same grey, so colorizing a grey glyph has two answers, with equal
  probability: the exact test case of `ncsn_pipeline.inpainting.NCSNColorizePipeline`.

Example:

>>> pipe = BUILTIN_PIPELINES["glyph-mixture"]()
>>> pipe.sample_shape
(1, 8, 8)

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict

# The registry's names are read by the command lines' parsers (`model_names`): each function imports what it builds,
# so that reading them loads no PyTorch.
if TYPE_CHECKING:
    import torch

    from ..pipeline_ncsn import NCSNPipeline

GLYPH_WEIGHTS = [0.35, 0.25, 0.2, 0.12, 0.08]
GLYPH_STD = 0.1


def glyph_means() -> torch.Tensor:
    """The five 1x8x8 glyphs of ``"glyph-mixture"`` (values in {0.1, 0.9}), shape (5, 1, 8, 8)."""
    import torch

    glyphs = torch.full((5, 8, 8), 0.1)
    glyphs[0, 3:5, 1:7] = 0.9  # horizontal bar
    glyphs[1, 1:7, 3:5] = 0.9  # vertical bar
    glyphs[2, 3:5, 1:7] = glyphs[2, 1:7, 3:5] = 0.9  # cross
    glyphs[3, 1:7, 1:7] = 0.9  # frame: a filled square ...
    glyphs[3, 3:5, 3:5] = 0.1  # ... with a hole
    glyphs[4, torch.arange(8), torch.arange(8)] = 0.9  # diagonal
    return glyphs[:, None]


def _ncsn_toy() -> NCSNPipeline:
    from ..modeling_toy import GaussianMixtureScore
    from ..pipeline_ncsn import NCSNPipeline
    from ..scheduling_ncsn import NCSNScheduler

    return NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=NCSNScheduler.from_preset("ncsn-toy"))


def _glyph_mixture() -> NCSNPipeline:
    from ..modeling_toy import GaussianMixtureScore
    from ..pipeline_ncsn import NCSNPipeline
    from ..scheduling_ncsn import NCSNScheduler

    model = GaussianMixtureScore(weights=GLYPH_WEIGHTS, means=glyph_means().tolist(), stds=GLYPH_STD)
    # sigma_max ~ largest distance between glyphs (NCSNv2 Technique 1); the rest was checked
    # against the exact mode weights (tests/test_pipeline_exact.py).
    scheduler = NCSNScheduler(
        sigma_max=5.0, sigma_min=0.01, num_noise_levels=22, steps_per_level=20, step_lr=3e-5, final_denoise=True
    )
    return NCSNPipeline(unet=model, scheduler=scheduler, data_range=(0.0, 1.0))


COLOR_GLYPH_COLOURS = {"red": (0.9, 0.1, 0.1), "blue": (0.1, 0.1, 0.9)}
COLOR_GLYPH_BACKGROUND = (0.2, 0.2, 0.2)


def color_glyph_means() -> torch.Tensor:
    """The ten 3x8x8 means of ``"color-glyphs"``: glyph k in red is mode 2k, in blue 2k + 1; shape (10, 3, 8, 8)."""
    import torch

    shapes = glyph_means()[:, 0] > 0.5  # (5, 8, 8): where each glyph is drawn
    background = torch.tensor(COLOR_GLYPH_BACKGROUND)[:, None, None]
    means = []
    for shape in shapes:
        for colour in COLOR_GLYPH_COLOURS.values():
            means.append(torch.where(shape, torch.tensor(colour)[:, None, None], background))
    return torch.stack(means)


def _color_glyphs() -> NCSNPipeline:
    from ..modeling_toy import GaussianMixtureScore
    from ..pipeline_ncsn import NCSNPipeline
    from ..scheduling_ncsn import NCSNScheduler

    weights = [weight / 2 for weight in GLYPH_WEIGHTS for _ in COLOR_GLYPH_COLOURS]
    model = GaussianMixtureScore(weights=weights, means=color_glyph_means().tolist(), stds=GLYPH_STD)
    scheduler = NCSNScheduler(
        sigma_max=8.0, sigma_min=0.01, num_noise_levels=30, steps_per_level=10, step_lr=3e-5, final_denoise=True
    )
    return NCSNPipeline(unet=model, scheduler=scheduler, data_range=(0.0, 1.0))


BUILTIN_PIPELINES: Dict[str, Callable[[], NCSNPipeline]] = {
    "ncsn-toy": _ncsn_toy,
    "glyph-mixture": _glyph_mixture,
    "color-glyphs": _color_glyphs,
}
