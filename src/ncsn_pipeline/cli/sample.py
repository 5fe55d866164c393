"""``ncsn-sample``: draw samples from a score model with any sampler of the package and write them as a PNG.

For 2-D data it plots plain Langevin dynamics at the smallest noise level next to the chosen sampler, both
started from the same points with the same number of model calls, and prints the mode weights each
recovers (NCSN's central point, Song & Ermon 2019, Figure 3). For images it writes a grid; with ``--image`` it edits
the given pictures (SDEdit, `NCSNImg2ImgPipeline`) and writes one row per picture: the input, then its edits. With
``--output_dir`` it writes ``--num_samples`` images one file each (for FID tools), on as many processes as
``accelerate launch`` starts.

Example::

    ncsn-sample --model ncsn-toy --output toy.png
    ncsn-sample --model ncsn-digits --sampler VEPredictorCorrectorScheduler --num_inference_steps 100
    ncsn-sample --model glyph-mixture --sampler_option steps_per_level=5 --output glyphs.png
    ncsn-sample --model ncsn-digits --classifier ncsn-digits-classifier --class_label 3 --guidance_scale 2
    ncsn-sample --model ncsn-fashion --image my_shoe.png --strength 0.5 --output edits.png   # SDEdit
    ncsn-sample --model path/to/saved/pipeline --output samples.png
    accelerate launch --num_processes 4 -m ncsn_pipeline.cli.sample --model ncsn-fashion --device cuda \
        --output_dir fashion-50k --num_samples 50000 --batch_size 500
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import PIL.Image

from ..arguments import (
    LOCAL_FOLDER_RULE,
    add_sampler_arguments,
    add_threads_argument,
    apply_sampler_arguments,
    non_negative_float,
    non_negative_int,
    positive_int,
    run_command,
    strict_parser,
    unit_float,
)
from ..errors import HubError
from ..pretrained import classifier_names, load_pipeline, load_pretrained_classifier, model_names


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-sample``."""
    parser = strict_parser(
        prog="ncsn-sample",
        description="Sample a score model with any sampler of the package and write a PNG (scatter plot for 2-D "
        "data, image grid for images).",
    )
    parser.add_argument(
        "--model",
        default="ncsn-toy",
        help=f"a named model ({', '.join(model_names())}), a folder saved with NCSNPipeline.save_pretrained, or a "
        f"Hub repository id 'user/name'; {LOCAL_FOLDER_RULE} (default: ncsn-toy)",
    )
    add_sampler_arguments(parser)
    parser.add_argument("--output", default=None, help="PNG file to write (default: samples.png)")
    parser.add_argument(
        "--batch_size",
        type=positive_int,
        default=None,
        help="number of samples (default: 2000 points or 64 images); with --output_dir, the samples of one pipeline "
        "call (default: 100)",
    )
    parser.add_argument(
        "--output_dir",
        default=None,
        help="instead of a grid: a new folder that gets --num_samples images as numbered PNG files (000000.png, ...; "
        "for FID tools that read folders) and samples.json (the class asked for each, the sampler, the seeds); batch b "
        "is seeded from (--seed, b), so `accelerate launch --num_processes N -m ncsn_pipeline.cli.sample ...` splits "
        "the batches across processes and writes the same files",
    )
    parser.add_argument(
        "--num_samples", type=positive_int, default=None, help="with --output_dir: how many images to write"
    )
    parser.add_argument(
        "--device", default="cpu", help="device to sample on, e.g. cuda (default: cpu; one per process when launched)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--class_label",
        type=non_negative_int,
        default=None,
        help="the class to sample: for class-conditional models, or toward which --classifier guides (default: "
        "every class in turn)",
    )
    parser.add_argument(
        "--classifier",
        default=None,
        help=f"classifier guidance: a bundled noise-conditional classifier ({', '.join(classifier_names())}) or a "
        "folder saved by ncsn-train-classifier; the samples follow s(x) + guidance_scale * grad log p(y | x) "
        "(default: none)",
    )
    parser.add_argument(
        "--guidance_scale",
        type=non_negative_float,
        default=None,
        help="weight of the classifier's gradient, with --classifier (default: 1, the exact conditional score); for a "
        "class-conditional model trained with --label_dropout and no --classifier, the classifier-free guidance w of "
        "s(x|y) + (w - 1)(s(x|y) - s(x)) (1: the plain conditional model)",
    )
    parser.add_argument(
        "--guidance_model",
        default=None,
        help="autoguidance (Karras et al. 2024): a weaker pipeline of the same data whose score guides the model's, "
        "s + (w - 1)(s - s_guide) with w = --guidance_scale (default 1: no guidance); two network calls per step. "
        "A bundled model's guide (NAME/guide, e.g. ncsn-fashion/guide), a folder (ncsn-train's OUTPUT_DIR/guide, "
        "an earlier checkpoint's pipeline) or a repo id",
    )
    parser.add_argument(
        "--image",
        nargs="+",
        default=None,
        help="image files to edit (SDEdit) instead of sampling from noise: each is converted to the model's channels "
        "and resized to its size; --batch_size edits of each are written in its row (default: 8)",
    )
    parser.add_argument(
        "--strength",
        type=unit_float,
        default=None,
        help="with --image: how much of each image is noised away before sampling back, from 0 (the image itself) to "
        "1 (a new sample) (default: 0.5)",
    )
    add_threads_argument(parser)
    return parser


def _read_images(paths: Sequence[str], pipe) -> Tuple[List[PIL.Image.Image], List[str]]:
    """The ``--image`` files as PIL images of the model's channels and size, and a note for each one resized."""
    from ..data.image_files import read_image_file

    channels, height, width = pipe.sample_shape
    images, notes = [], []
    for path in paths:
        image = read_image_file(path, channels)  # as training reads it: 16-bit scaled, transparency, EXIF orientation
        if image.size != (width, height):
            notes.append(f"{path} resized from {image.width}x{image.height}")
            image = image.resize((width, height), resample=PIL.Image.LANCZOS)
        images.append(image)
    return images, notes


def _classifier(name_or_path: Optional[str]):
    """The ``--classifier``: a bundled one by name, or a saved `NoiseConditionalClassifier` folder."""
    if name_or_path is None:
        return None
    if name_or_path in classifier_names():
        return load_pretrained_classifier(name_or_path)
    if not Path(name_or_path).is_dir():
        raise ValueError(
            f"--classifier {name_or_path!r} is neither a bundled classifier ({classifier_names()}) nor a folder saved "
            "by ncsn-train-classifier."
        )
    from ..modeling_classifier import NoiseConditionalClassifier

    return NoiseConditionalClassifier.from_pretrained(name_or_path, use_safetensors=True).eval()


def _load_models(args: argparse.Namespace, device: str):
    """The pipeline (with the sampler ``args`` ask for), the autoguidance network and the classifier (or `None`s),
    on ``device``; the guidance arguments checked."""
    classifier = _classifier(args.classifier)
    if args.guidance_model is not None and classifier is not None:
        raise ValueError("--guidance_model (autoguidance) and --classifier both use --guidance_scale: give one.")
    pipe = load_pipeline(args.model)
    guide = load_pipeline(args.guidance_model).unet if args.guidance_model is not None else None
    classifier_free = getattr(pipe.unet, "unconditional_label", None) is not None
    if args.guidance_scale is not None and classifier is None and guide is None and not classifier_free:
        raise ValueError(
            "--guidance_scale weighs a classifier's gradient: give --classifier too (or --guidance_model for "
            "autoguidance, or use a class-conditional model trained with --label_dropout, for classifier-free "
            f"guidance; {args.model!r} is neither)."
        )
    apply_sampler_arguments(pipe, args)
    pipe.set_progress_bar_config(disable=True)
    if str(device) != "cpu":
        pipe = pipe.to(device)
        guide = None if guide is None else guide.to(device)
        classifier = None if classifier is None else classifier.to(device)
    return pipe, guide, classifier


def _guidance(args: argparse.Namespace, classifier, guide) -> Tuple[dict, str]:
    """The pipeline's guidance arguments, and the words that say what guides the samples."""
    guidance = {} if args.guidance_scale is None else {"guidance_scale": args.guidance_scale}
    guided = "" if not guidance else f", classifier-free guidance (scale {args.guidance_scale:g})"
    if classifier is not None:
        guidance = {"classifier": classifier, "guidance_scale": args.guidance_scale}
        guided = f", guided by {args.classifier} (scale {args.guidance_scale or 1:g})"
    if guide is not None:
        guidance = {"guidance_model": guide, "guidance_scale": args.guidance_scale}
        scale = 1.0 if args.guidance_scale is None else args.guidance_scale
        # Two networks per model call of the sampler (the good one and the guide); w = 1 calls the good one only.
        guided = f", autoguided by {args.guidance_model} (w {scale:g}; {2 if scale != 1 else 1} network calls per "
        guided += "model call)"
    return guidance, guided


def _sample_to_folder(args: argparse.Namespace) -> str:
    """``--output_dir``: ``--num_samples`` images as numbered PNG files, batch b seeded from (``--seed``, b), split
    across processes under ``accelerate launch``; the folder appears complete or not at all."""
    import json
    import shutil

    import torch

    from ..evaluation.batches import finish_processes, launched_processes, process_batches, sample_batch
    from ..files import write_text_atomically
    from ..images import samples_to_pil

    folder = Path(args.output_dir)
    for flag, value in (("--output", args.output), ("--image", args.image), ("--strength", args.strength)):
        if value is not None:
            raise ValueError(f"--output_dir writes new samples one file each; {flag} does not go with it.")
    if args.num_samples is None:
        raise ValueError("--output_dir needs --num_samples, the number of images to write.")
    if folder.exists():
        raise ValueError(f"--output_dir {args.output_dir!r} exists; name a new folder (nothing is overwritten).")
    processes = launched_processes(cpu=torch.device(args.device).type == "cpu")
    pipe, guide, classifier = _load_models(args, args.device if processes is None else processes.device)
    if pipe.config.data_range is None:
        raise ValueError(f"--output_dir writes images; {args.model!r} samples points (use --output for a plot).")
    num_classes = classifier.num_classes if classifier is not None else getattr(pipe.unet, "num_classes", None)
    if args.class_label is not None and num_classes is None:
        raise ValueError(
            f"--class_label needs a class-conditional model or a --classifier; {args.model!r} takes no classes."
        )
    labels = None
    if num_classes is not None:
        labels = torch.arange(args.num_samples) % num_classes
        labels = labels if args.class_label is None else torch.full_like(labels, args.class_label)
    guidance, guided = _guidance(args, classifier, guide)
    batch_size = args.batch_size or 100
    index, count = (0, 1) if processes is None else (processes.process_index, processes.num_processes)
    # Every process writes into the same hidden folder beside the target; the main process renames it when all are done.
    staging = folder.parent / f".{folder.name}.partial"
    started = time.perf_counter()
    try:
        if index == 0:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
            staging.mkdir(parents=True)
        if processes is not None:
            processes.wait_for_everyone()
        for batch_index, start, size in process_batches(args.num_samples, batch_size, index, count):
            images, _ = sample_batch(
                pipe, batch_index, start, size, args.seed, labels, args.num_inference_steps, guidance
            )
            for offset, image in enumerate(samples_to_pil(images, (0.0, 1.0))):
                image.save(staging / f"{start + offset:06d}.png")
        if processes is not None:
            processes.wait_for_everyone()
        if index == 0:
            record = {
                "model": args.model, "sampler": pipe.scheduler.description + guided, "seed": args.seed,
                "batch_size": batch_size, "num_samples": args.num_samples, "processes": count,
                "batch_seeds": "batch b: ncsn_pipeline.evaluation.batches.batch_seed(seed, b)",
                "class_labels": None if labels is None else labels.tolist(),
            }  # fmt: skip
            write_text_atomically(staging / "samples.json", json.dumps(record, indent=2) + "\n")
            staging.rename(folder)
    except BaseException:
        if index == 0:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        finish_processes(processes)
    if index != 0:
        return ""  # the main process reports the run
    seconds = time.perf_counter() - started
    cycled = "" if labels is None or args.class_label is not None else f", the classes in turn (0 to {num_classes - 1})"
    return (
        f"Wrote {args.num_samples} samples to {folder} ({count} process(es)) with {pipe.scheduler.description}"
        f"{guided}{cycled}, {seconds:.1f} s."
    )


def run(args: argparse.Namespace) -> str:
    """Sample as ``args`` says, write the PNG (or ``--output_dir``'s files) and return a one-paragraph summary (empty
    on a launched run's other processes)."""
    import torch  # here, not at the top: --help loads no PyTorch

    from ..images import save_image_grid, save_scatter_plot
    from ..modeling_toy import GaussianMixtureScore
    from ..sampling import plain_and_annealed

    if args.output_dir is not None:
        return _sample_to_folder(args)
    if args.num_samples is not None:
        raise ValueError("--num_samples is the size of --output_dir's folder; a grid has --batch_size samples.")
    output = Path(args.output or "samples.png")
    if output.suffix.lower() != ".png":
        raise ValueError(f"--output must name a .png file, got {args.output!r}.")
    if args.strength is not None and args.image is None:
        raise ValueError("--strength sets how much of --image is noised away: give --image too.")
    for path in args.image or []:
        if not Path(path).is_file():
            raise ValueError(f"--image {path!r} is not a file.")
    pipe, guide, classifier = _load_models(args, args.device)
    is_image = pipe.config.data_range is not None
    if not is_image and pipe.sample_shape != (2,):
        raise ValueError(
            f"Cannot plot samples of shape {pipe.sample_shape}: only 2-D points, or images from a pipeline with a "
            "data_range, can be written as PNG."
        )
    if args.image is not None and not is_image:
        raise ValueError(f"--image edits images; {args.model!r} samples points.")
    if guide is not None and not is_image:
        raise ValueError("--guidance_model guides image models; this model samples points.")
    batch_size = args.batch_size or (64 if is_image else 2000)
    inputs, notes = _read_images(args.image, pipe) if args.image is not None else ([], [])
    if inputs:  # edits: --batch_size of each image
        batch_size = len(inputs) * (args.batch_size or 8)

    started = time.perf_counter()
    num_classes = getattr(pipe.unet, "num_classes", None)
    if classifier is not None:
        if not is_image:
            raise ValueError("--classifier guides image models; this model samples points.")
        num_classes = classifier.num_classes  # the classes the classifier guides toward
    if args.class_label is not None and num_classes is None:
        raise ValueError(
            f"--class_label needs a class-conditional model or a --classifier; {args.model!r} takes no classes."
        )
    labels = None
    cycled = ""
    if num_classes is not None and args.class_label is None and inputs:
        # An edit keeps what the image is: the "no class" label where the model has one, else the class it is given.
        if classifier is not None or getattr(pipe.unet, "unconditional_label", None) is None:
            raise ValueError(
                f"--image with {args.classifier or args.model!r}, which takes classes: give --class_label, the class "
                f"of the image (0 to {num_classes - 1}), so that the edits keep what the image is."
            )
    elif num_classes is not None:  # one class for the batch, or the classes in turn (the summary says so)
        labels = [args.class_label] * batch_size if args.class_label is not None else list(range(num_classes))
        labels = (labels * batch_size)[:batch_size]
        cycled = "" if args.class_label is not None else f", one class per sample in turn (0 to {num_classes - 1})"
    if is_image:
        generator = torch.Generator().manual_seed(args.seed)
        steps = args.num_inference_steps
        guidance, guided = _guidance(args, classifier, guide)
        if inputs:
            return _edit(pipe, inputs, notes, args, output, labels, guidance, guided, started)
        images = pipe(
            batch_size=batch_size, generator=generator, num_inference_steps=steps, class_labels=labels, **guidance
        ).images
        seconds = time.perf_counter() - started
        save_image_grid(images, output)
        return (
            f"Wrote {batch_size} samples to {output} with {pipe.scheduler.description}{guided}{cycled}, "
            f"{seconds:.1f} s."
        )

    plain, annealed = plain_and_annealed(pipe, batch_size, args.seed, num_inference_steps=args.num_inference_steps)
    seconds = time.perf_counter() - started
    calls = pipe.scheduler.num_model_calls
    sigma_min = float(pipe.scheduler.timesteps[-1])
    panels = [
        (f"plain Langevin at sigma={sigma_min:g} ({calls} calls)", plain),
        (f"{pipe.scheduler.sampler_name} ({calls} calls)", annealed),
    ]
    summary = f"Wrote {batch_size} samples to {output} with {pipe.scheduler.description}, {seconds:.1f} s."
    if isinstance(pipe.unet, GaussianMixtureScore):
        true_weights = [round(w, 3) for w in pipe.unet.config.weights]
        plain_weights = [round(w, 3) for w in pipe.unet.mode_weights(plain)]
        annealed_weights = [round(w, 3) for w in pipe.unet.mode_weights(annealed)]
        panels = [
            (f"{panels[0][0]}\nmode weights {plain_weights}", plain),
            (f"{panels[1][0]}\nmode weights {annealed_weights}", annealed),
        ]
        summary += (
            f" True mode weights {true_weights}; plain Langevin recovers {plain_weights}, "
            f"{pipe.scheduler.sampler_name} {annealed_weights}."
        )
    save_scatter_plot(output, panels, title=f"{args.model}: same start, same number of score evaluations")
    return summary


def _edit(pipe, inputs, notes, args, output: Path, labels, guidance, guided: str, started: float) -> str:
    """``--image``: SDEdit each input ``--batch_size`` times; write a row per input (it, then its edits)."""
    import torch

    from ..editing import NCSNImg2ImgPipeline
    from ..images import save_image_grid

    editor = NCSNImg2ImgPipeline(unet=pipe.unet, scheduler=pipe.scheduler, data_range=pipe.config.data_range)
    editor.set_progress_bar_config(disable=True)
    strength = 0.5 if args.strength is None else args.strength
    per_image = args.batch_size or 8
    edits = editor(
        inputs,
        strength=strength,
        num_images_per_prompt=per_image,
        generator=torch.Generator().manual_seed(args.seed),
        num_inference_steps=args.num_inference_steps,
        class_labels=labels,
        **guidance,
    ).images
    seconds = time.perf_counter() - started
    rows = []
    for index, image in enumerate(inputs):
        rows += [image, *edits[index * per_image : (index + 1) * per_image]]
    save_image_grid(rows, output, columns=per_image + 1)
    scheduler = editor.scheduler
    begin = scheduler.begin_index or 0
    calls = 0 if strength == 0 else scheduler.num_model_calls - begin
    begun = "" if strength == 0 else f", begun at sigma {float(scheduler.timesteps[begin]):.4g} ({calls} model calls)"
    resized = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"Wrote {per_image} edits of each of {len(inputs)} image(s){resized} to {output} (rows: the input, then its "
        f"edits), strength {strength:g}{begun}, with {scheduler.description}{guided}, {seconds:.1f} s."
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``ncsn-sample`` console script."""
    errors = (ValueError, FloatingPointError, OSError, HubError)
    return run_command(build_parser(), _print_summary, argv, errors)


def _print_summary(args: argparse.Namespace) -> None:
    summary = run(args)
    if summary:  # empty on the other processes of a launched run: the main process speaks for them
        print(summary)


if __name__ == "__main__":
    sys.exit(main())
