"""Classifier-free guidance on class-conditional digits: the class asked for and the Fréchet distance against w.

    python benchmarks/classifier_free_digits.py --threads 2 [--model FOLDER] [--per_class 100] [--scales 0 1 2 3 5]

A class-conditional digits pipeline trained with label dropout (default: the bundled ``ncsn-digits-classes``, which
must know the "no class" label; or ``--model FOLDER`` from ``ncsn-train --class_conditional --label_dropout 0.1``)
samples ``--per_class`` images of every digit with its saved sampler at each guidance scale ``w`` (1 = the plain
conditional model, 0 = the unconditional one: its digits do not follow the label). The package's digits judge (the
classifier of ``ncsn-digits-eval``) scores them: how often it sees the digit asked for, how often confidently (max
probability >= 0.9), the worst digit's rate, and the Fréchet distance in its features to the held-out digits (real
training digits, the same number, give the floor). With ``--model``, the bundled ``ncsn-digits-classes`` (trained
without label dropout) is scored beside it, plain conditional. Writes ``benchmarks/results/classifier_free_digits.txt``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline import NCSNPipeline  # noqa: E402
from ncsn_pipeline.evaluation.digits_judge import (  # noqa: E402
    evaluate_digit_samples,
    floor_metrics,
    requested_class_rate,
    resize_to_digits,
)
from ncsn_pipeline.pretrained import load_pretrained  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set it: a busy machine oversubscribes)")
    parser.add_argument("--model", default=None, help="a class-conditional digits pipeline folder with label dropout")
    parser.add_argument("--per_class", type=int, default=100)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 1.5, 2.0, 3.0, 5.0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = NCSNPipeline.from_pretrained(args.model) if args.model else load_pretrained("ncsn-digits-classes")
    if getattr(pipe.unet, "unconditional_label", None) is None:
        raise SystemExit("the model does not know the 'no class' label: train it with --label_dropout")
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    floor = floor_metrics(num_samples=len(labels))
    lines = [
        f"{args.model or 'ncsn-digits-classes'}: {len(labels)} samples ({args.per_class} per digit), "
        f"{pipe.scheduler.description}; judged by the package's digits classifier",
        f"floor (real training digits, same N): confident {floor['confident_rate']:.3f}, Fréchet distance "
        f"{floor['frechet_distance']:.2f}",
        f"{'w':>5} {'match':>6} {'confident match':>16} {'worst digit':>12} {'Fréchet':>8} {'calls':>6} {'seconds':>8}",
    ]
    print("\n".join(lines), flush=True)
    runs = [(f"{scale:g}", pipe, {"guidance_scale": scale}) for scale in args.scales]
    if args.model:
        bundled = load_pretrained("ncsn-digits-classes")
        bundled.set_progress_bar_config(disable=True)
        runs.append(("bundled ncsn-digits-classes, no label dropout (w = 1)", bundled, {}))
    for name, model, guidance in runs:
        started = time.perf_counter()
        images = model(batch_size=len(labels), class_labels=labels, generator=torch.Generator().manual_seed(0),
                       output_type="pt", **guidance).images  # fmt: skip
        seconds = time.perf_counter() - started
        digits = resize_to_digits(images)
        rates = requested_class_rate(digits, labels)
        worst = min(rate for rate in rates["per_class_match_rate"] if rate is not None)
        frechet = evaluate_digit_samples(digits)["frechet_distance"]
        lines.append(
            f"{name:>5} {rates['match_rate']:>6.3f} {rates['confident_match_rate']:>16.3f} {worst:>12.3f} "
            f"{frechet:>8.2f} {model.scheduler.num_model_calls:>6} {seconds:>8.1f}"
        )
        print(lines[-1], flush=True)
    (ROOT / "benchmarks" / "results" / "classifier_free_digits.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
