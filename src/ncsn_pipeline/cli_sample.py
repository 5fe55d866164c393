"""``ncsn-sample``: draw samples from a score model and write them as a PNG.

For 2-D data it plots plain Langevin dynamics at the smallest noise level next to annealed
Langevin dynamics, both started from the same points with the same number of model calls, and
prints the mode weights each recovers (NCSN's central point, Song & Ermon 2019, Figure 3). For
images it writes a grid.

Example::

    ncsn-sample --model ncsn-toy --output toy.png
    ncsn-sample --model glyph-mixture --batch_size 64 --output glyphs.png
    ncsn-sample --model path/to/saved/pipeline --output samples.png
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from diffusers.utils import make_image_grid
from diffusers.utils.torch_utils import randn_tensor

from .builtin import builtin_names, builtin_pipeline
from .cli_utils import positive_int, write_atomically
from .modeling_toy import GaussianMixtureScore
from .pipeline_ncsn import NCSNPipeline
from .sampling import langevin_dynamics


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-sample``."""
    parser = argparse.ArgumentParser(
        prog="ncsn-sample",
        description="Sample a score model with annealed Langevin dynamics and write a PNG (scatter plot for 2-D "
        "data, image grid for images).",
    )
    parser.add_argument(
        "--model",
        default="ncsn-toy",
        help=f"a built-in exact-score model ({', '.join(builtin_names())}) or a folder saved with "
        "NCSNPipeline.save_pretrained (default: ncsn-toy)",
    )
    parser.add_argument("--output", default="samples.png", help="PNG file to write (default: samples.png)")
    parser.add_argument(
        "--batch_size", type=positive_int, default=None, help="number of samples (default: 2000 points or 64 images)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--num_inference_steps",
        type=positive_int,
        default=None,
        help="number of noise levels to anneal through (default: the scheduler's)",
    )
    parser.add_argument(
        "--steps_per_level",
        type=positive_int,
        default=None,
        help="Langevin steps per level (default: the scheduler's)",
    )
    return parser


def load_pipeline(model: str) -> NCSNPipeline:
    """A built-in pipeline by name, or a saved pipeline folder."""
    if model in builtin_names():
        return builtin_pipeline(model)
    if Path(model).is_dir():
        return NCSNPipeline.from_pretrained(model)
    raise ValueError(f"--model {model!r} is neither a built-in model ({builtin_names()}) nor an existing folder.")


def mode_weights(points: torch.Tensor, model: GaussianMixtureScore) -> List[float]:
    """Fraction of ``points`` nearest to each mean of ``model`` (how a sampler shares mass between modes)."""
    means = model.mode_means.to(points.device, torch.float64)
    nearest = torch.cdist(points.reshape(points.shape[0], -1).double(), means).argmin(dim=1)
    return (torch.bincount(nearest, minlength=means.shape[0]).double() / points.shape[0]).tolist()


def save_image_grid(images: Sequence, path: Path, min_side: int = 64, border: int = 2) -> None:
    """Write PIL ``images`` as a near-square grid PNG, upscaled (nearest) to ``min_side`` px and framed, atomically."""
    from PIL import ImageOps

    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    side = max(min_side, images[0].width)
    # Nearest-neighbour keeps the pixels sharp; a grey frame keeps neighbouring samples apart.
    tiles = [ImageOps.expand(image.resize((side, side), resample=0), border=border, fill=128) for image in images]
    tiles += [tiles[0].point(lambda _: 255)] * (rows * columns - len(images))  # white padding
    grid = make_image_grid(tiles, rows=rows, cols=columns)
    write_atomically(path, lambda temporary: grid.save(temporary, format="PNG"))


def _plot_points(path: Path, panels: Sequence, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for axis, (name, points) in zip(axes[0], panels):
        points = points.cpu().double()
        axis.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        axis.set_title(name)
        axis.set_aspect("equal")
    figure.suptitle(title)
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)


def run(args: argparse.Namespace) -> str:
    """Sample as ``args`` says, write the PNG and return a one-paragraph summary."""
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise ValueError(f"--output must name a .png file, got {args.output!r}.")
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    is_image = pipe.config.data_range is not None
    if not is_image and pipe.sample_shape != (2,):
        raise ValueError(
            f"Cannot plot samples of shape {pipe.sample_shape}: only 2-D points, or images from a pipeline with a "
            "data_range, can be written as PNG."
        )
    batch_size = args.batch_size or (64 if is_image else 2000)
    call_kwargs = dict(num_inference_steps=args.num_inference_steps, steps_per_level=args.steps_per_level)

    started = time.perf_counter()
    if is_image:
        images = pipe(batch_size=batch_size, generator=torch.Generator().manual_seed(args.seed), **call_kwargs).images
        calls = len(pipe.scheduler.timesteps)
        seconds = time.perf_counter() - started
        save_image_grid(images, output)
        return f"Wrote {batch_size} samples to {output} ({calls} model calls, {seconds:.1f} s)."

    annealed = pipe(
        batch_size=batch_size, generator=torch.Generator().manual_seed(args.seed), output_type="pt", **call_kwargs
    ).images
    calls = len(pipe.scheduler.timesteps)
    seconds = time.perf_counter() - started
    panels = [(f"annealed Langevin ({calls} calls)", annealed)]
    summary = f"Wrote {batch_size} samples to {output} ({calls} model calls, {seconds:.1f} s)."
    # Plain Langevin from the very same starting points, at the smallest level, same budget.
    generator = torch.Generator().manual_seed(args.seed)
    start = randn_tensor(annealed.shape, generator=generator, dtype=pipe.unet.dtype) * pipe.scheduler.init_noise_sigma
    sigma_min = float(pipe.scheduler.sigmas[-1])
    step_size = float(pipe.scheduler.step_sizes[-1])
    plain = langevin_dynamics(pipe.unet, start, sigma_min, step_size, calls, generator=generator)
    panels.insert(0, (f"plain Langevin at sigma={sigma_min:g} ({calls} calls)", plain))
    if isinstance(pipe.unet, GaussianMixtureScore):
        true_weights = [round(w, 3) for w in pipe.unet.config.weights]
        plain_weights = [round(w, 3) for w in mode_weights(plain, pipe.unet)]
        annealed_weights = [round(w, 3) for w in mode_weights(annealed, pipe.unet)]
        panels[0] = (f"{panels[0][0]}\nmode weights {plain_weights}", plain)
        panels[1] = (f"{panels[1][0]}\nmode weights {annealed_weights}", annealed)
        summary += (
            f" True mode weights {true_weights}; plain Langevin recovers {plain_weights}, annealed Langevin "
            f"{annealed_weights}."
        )
    _plot_points(output, panels, title=f"{args.model}: same start, same number of score evaluations")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``ncsn-sample`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        print(run(args))
    except (ValueError, FloatingPointError, OSError) as error:
        parser.exit(2, f"ncsn-sample: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
