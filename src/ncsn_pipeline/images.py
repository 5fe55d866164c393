"""Pictures of samples, shared by the command line, training previews and the demo: image grids and 2-D scatter plots.

Example:

>>> import PIL.Image
>>> grid = image_grid([PIL.Image.new("L", (8, 8))] * 5, tile=16, border=1)
>>> grid.size, grid.mode
((54, 36), 'RGB')
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import PIL.Image
import torch

from .files import write_atomically


def samples_to_pil(sample: torch.Tensor, data_range: Sequence[float]) -> List[PIL.Image.Image]:
    """Map a batch ``(N, C, H, W)`` in ``data_range`` to PIL images (``L`` for 1 channel, ``RGB`` for 3)."""
    low, high = data_range
    scaled = ((sample.detach().float().cpu().clamp(low, high) - low) / (high - low) * 255).round().to(torch.uint8)
    arrays = scaled.permute(0, 2, 3, 1).numpy()
    if arrays.shape[-1] == 1:
        return [PIL.Image.fromarray(array[..., 0], mode="L") for array in arrays]
    return [PIL.Image.fromarray(array, mode="RGB") for array in arrays]


def image_grid(
    images: Sequence[PIL.Image.Image], tile: int = 64, border: int = 2, columns: Optional[int] = None
) -> PIL.Image.Image:
    """A grid of ``images`` (near-square unless ``columns`` is given), each upscaled (nearest neighbour, sharp
    pixels) to ``tile`` px in a grey frame that keeps neighbouring samples apart; empty cells are white."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    side = max(tile, images[0].width)
    cell = side + 2 * border
    grid = PIL.Image.new("RGB", (columns * cell, rows * cell), (128, 128, 128))
    for index in range(rows * columns):
        row, column = divmod(index, columns)
        if index < len(images):
            tile_image = images[index].convert("RGB").resize((side, side), resample=PIL.Image.NEAREST)
        else:
            tile_image = PIL.Image.new("RGB", (side, side), (255, 255, 255))
        grid.paste(tile_image, (column * cell + border, row * cell + border))
    return grid


def save_image_grid(images: Sequence[PIL.Image.Image], path: Path, columns: Optional[int] = None) -> None:
    """Write `image_grid` of ``images`` to ``path`` as PNG, atomically."""
    grid = image_grid(images, columns=columns)
    write_atomically(path, lambda temporary: grid.save(temporary, format="PNG"))


def save_scatter_plot(path: Path, panels: Sequence[Tuple[str, torch.Tensor]], title: str) -> None:
    """Write 2-D point sets side by side (one ``(title, points)`` panel each) to ``path`` as PNG, atomically."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * len(panels), 5), dpi=100)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (name, points) in zip(axes, panels):
        points = points.detach().cpu().double()
        axis.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=2, alpha=0.5)
        axis.set_title(name)
        axis.set_aspect("equal")
    figure.suptitle(title)
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
