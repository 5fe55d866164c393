"""Draw the README's pictures of the bundled models (offline, ~1 minute on 2 cores).

    python docs/make_controllable_figures.py [fashion inpainting classes colorization sdedit]

* ``docs/inpainting.png``: held-out digits with the right half / the centre / a random half of the pixels
  repainted by ``ncsn-digits`` (predictor-corrector, RePaint resampling 5 x 3): original, masked input, 6 fills.
* ``docs/class_conditional.png``: one row per digit: ``ncsn-digits-classes`` asked for it (left), and ``ncsn-digits``
  guided toward it by ``ncsn-digits-classifier`` at scale 4 (right).
* ``docs/colorization.png``: grey versions of the ``color-glyphs`` glyphs and 6 colorizations of each.
* ``docs/fashion_classes.png``: one row per Fashion-MNIST class: 8 samples of ``ncsn-fashion`` asked for it (its
  default sampler, seed = class index), then 4 real test images of the class.
* ``docs/sdedit.png``: SDEdit with ``ncsn-fashion`` (its default sampler, the image's own class): three held-out test
  images, each edited 6 times at strengths 0.3, 0.5 and 0.7.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import PIL.Image  # noqa: E402
import PIL.ImageDraw  # noqa: E402
import torch  # noqa: E402

from ncsn_pipeline import NCSNImg2ImgPipeline, VEPredictorCorrectorScheduler  # noqa: E402
from ncsn_pipeline.demo.inpainting import MASKS, held_out_image, held_out_images  # noqa: E402
from ncsn_pipeline.images import samples_to_pil  # noqa: E402
from ncsn_pipeline.inpainting import NCSNColorizePipeline, NCSNInpaintPipeline  # noqa: E402
from ncsn_pipeline.pretrained import load_pretrained, load_pretrained_classifier  # noqa: E402

DOCS = Path(__file__).resolve().parent
TILE = 48
GAP = 4


def _row_image(rows, captions, label_width=150):
    """Rows of PIL tiles (nearest-neighbour upscaled) with a caption at the left of each row."""
    columns = max(len(row) for row in rows)
    width = label_width + columns * (TILE + GAP)
    figure = PIL.Image.new("RGB", (width, len(rows) * (TILE + GAP) + GAP), "white")
    draw = PIL.ImageDraw.Draw(figure)
    for index, (row, caption) in enumerate(zip(rows, captions)):
        top = GAP + index * (TILE + GAP)
        draw.text((4, top + TILE // 2 - 6), caption, fill="black")
        for column, tile in enumerate(row):
            left = label_width + column * (TILE + GAP)
            figure.paste(tile.convert("RGB").resize((TILE, TILE), PIL.Image.NEAREST), (left, top))
    return figure


def inpainting_figure() -> None:
    digits = load_pretrained("ncsn-digits")
    sampler = VEPredictorCorrectorScheduler.from_config(digits.scheduler.config, num_noise_levels=30)
    pipe = NCSNInpaintPipeline(digits.unet, sampler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    rows, captions = [], []
    for digit_index, mask_name in ((0, "right half"), (7, "centre square"), (21, "random half of the pixels")):
        image, mask = held_out_image("digits", digit_index, 1, 8), MASKS[mask_name](8)[None]
        filled = pipe(image, mask, batch_size=6, jump_length=5, jump_n_sample=3,
                      generator=torch.Generator().manual_seed(0)).images  # fmt: skip
        masked = torch.where(mask > 0.5, torch.full_like(image, 0.5), image)
        rows.append(samples_to_pil(torch.stack([image, masked]), (0, 1)) + list(filled))
        captions.append(mask_name)
    _row_image(rows, captions).save(DOCS / "inpainting.png")


def class_figure() -> None:
    conditional = load_pretrained("ncsn-digits-classes")
    unconditional = load_pretrained("ncsn-digits")
    classifier = load_pretrained_classifier("ncsn-digits-classifier")
    rows, captions = [], []
    for digit in range(10):
        generator = torch.Generator().manual_seed(digit)
        asked = conditional(batch_size=5, class_labels=digit, generator=generator).images
        guided = unconditional(batch_size=5, class_labels=digit, classifier=classifier, guidance_scale=4.0,
                               generator=torch.Generator().manual_seed(digit)).images  # fmt: skip
        blank = PIL.Image.new("RGB", (8, 8), "white")
        rows.append(list(asked) + [blank] + list(guided))
        captions.append(f"class {digit}")
    _row_image(rows, captions, label_width=70).save(DOCS / "class_conditional.png")


def colorization_figure() -> None:
    glyphs = load_pretrained("color-glyphs")
    sampler = VEPredictorCorrectorScheduler.from_config(glyphs.scheduler.config, num_noise_levels=30)
    pipe = NCSNColorizePipeline(glyphs.unet, sampler, data_range=(0, 1))
    pipe.set_progress_bar_config(disable=True)
    rows, captions = [], []
    for mode in (0, 4, 6):
        grey = glyphs.unet.mode_means[mode].reshape(3, 8, 8).mean(0).float()
        coloured = pipe(grey, batch_size=6, jump_length=5, jump_n_sample=10,
                        generator=torch.Generator().manual_seed(mode)).images  # fmt: skip
        rows.append(samples_to_pil(grey.expand(1, 3, 8, 8), (0, 1)) + list(coloured))
        captions.append(f"glyph {mode // 2} in grey")
    _row_image(rows, captions).save(DOCS / "colorization.png")


def fashion_figure() -> None:
    from ncsn_pipeline.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

    pipe = load_pretrained("ncsn-fashion")
    pipe.set_progress_bar_config(disable=True)
    test_images, test_labels = load_fashion_mnist("test")
    rows, captions = [], []
    for label, name in enumerate(FASHION_MNIST_CLASSES):
        samples = pipe(batch_size=8, class_labels=label, generator=torch.Generator().manual_seed(label)).images
        real = test_images[test_labels == label][:4].float() / 255
        blank = PIL.Image.new("RGB", (28, 28), "white")
        rows.append(list(samples) + [blank] + samples_to_pil(real, (0, 1)))
        captions.append(name)
    _row_image(rows, captions, label_width=90).save(DOCS / "fashion_classes.png")


def sdedit_figure() -> None:
    from ncsn_pipeline.data.fashion_mnist_files import load_held_out_slice

    fashion = load_pretrained("ncsn-fashion")
    pipe = NCSNImg2ImgPipeline(fashion.unet, fashion.scheduler, data_range=fashion.config.data_range)
    pipe.set_progress_bar_config(disable=True)
    _, labels = load_held_out_slice()
    rows, captions = [], []
    for index in (0, 1, 8):
        image = held_out_images("fashion-mnist")[index]
        for strength in (0.3, 0.5, 0.7):
            edits = pipe(image, strength=strength, num_images_per_prompt=6, class_labels=int(labels[index]),
                         generator=torch.Generator().manual_seed(index)).images  # fmt: skip
            rows.append(samples_to_pil(image[None], (0, 1)) + list(edits))
            captions.append(f"image {index}, strength {strength}")
    _row_image(rows, captions, label_width=130).save(DOCS / "sdedit.png")


FIGURES = {
    "fashion": (fashion_figure, "fashion_classes.png"),
    "inpainting": (inpainting_figure, "inpainting.png"),
    "classes": (class_figure, "class_conditional.png"),
    "colorization": (colorization_figure, "colorization.png"),
    "sdedit": (sdedit_figure, "sdedit.png"),
}

if __name__ == "__main__":
    import sys

    torch.set_num_threads(2)
    chosen = sys.argv[1:] or list(FIGURES)
    for name in chosen:
        FIGURES[name][0]()
    print("wrote", ", ".join(str(DOCS / FIGURES[name][1]) for name in chosen))
