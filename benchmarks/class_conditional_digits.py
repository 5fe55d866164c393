"""Do class-conditional digits come out as the digit asked for? A class-conditional model and classifier guidance.

    python benchmarks/class_conditional_digits.py --threads 2 [--per_class 50] [--guidance_scales 1 2 4]

Samples ``--per_class`` images of every digit with (a) the bundled class-conditional digits model
(``ncsn-digits-classes``, or ``--conditional FOLDER``) and (b) the bundled unconditional ``ncsn-digits`` guided by the
bundled noise-conditional classifier (``ncsn-digits-classifier``, or ``--classifier FOLDER``) at each guidance scale,
all with the model's saved sampler, and scores them with the package's digits classifier (the judge of
``ncsn-digits-eval``, a different network from the guiding classifier): how often the judge's prediction is the
requested digit (``match``), with probability >= 0.9 (``confident``), and the worst digit's rate.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline import NCSNPipeline, NoiseConditionalClassifier  # noqa: E402
from ncsn_pipeline.evaluation.digits_judge import requested_class_rate, resize_to_digits  # noqa: E402
from ncsn_pipeline.pretrained import load_pretrained, load_pretrained_classifier  # noqa: E402


def _score(pipe, labels, **kwargs):
    started = time.perf_counter()
    images = pipe(
        batch_size=len(labels), class_labels=labels, generator=torch.Generator().manual_seed(0), output_type="pt",
        **kwargs,
    ).images  # fmt: skip
    seconds = time.perf_counter() - started
    rates = requested_class_rate(resize_to_digits(images), labels)
    worst = min(rate for rate in rates["per_class_match_rate"] if rate is not None)
    return rates["match_rate"], rates["confident_match_rate"], worst, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per_class", type=int, default=50)
    parser.add_argument("--guidance_scales", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--conditional", default=None, help="a class-conditional digits pipeline folder")
    parser.add_argument("--classifier", default=None, help="a NoiseConditionalClassifier folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    labels = torch.arange(10).repeat_interleave(args.per_class)
    print(f"{len(labels)} samples, {args.per_class} per digit; judged by the package's digits classifier")
    print(f"{'model':<52} {'match':>6} {'confident':>10} {'worst digit':>12} {'seconds':>8}")
    conditional = (
        NCSNPipeline.from_pretrained(args.conditional) if args.conditional else load_pretrained("ncsn-digits-classes")
    )
    conditional.set_progress_bar_config(disable=True)
    match, confident, worst, seconds = _score(conditional, labels)
    print(f"{'class-conditional model':<52} {match:>6.3f} {confident:>10.3f} {worst:>12.3f} {seconds:>8.1f}")

    unconditional = load_pretrained("ncsn-digits")
    unconditional.set_progress_bar_config(disable=True)
    if args.classifier:
        classifier = NoiseConditionalClassifier.from_pretrained(args.classifier)
    else:
        classifier = load_pretrained_classifier("ncsn-digits-classifier")
    for scale in args.guidance_scales:
        match, confident, worst, seconds = _score(unconditional, labels, classifier=classifier, guidance_scale=scale)
        name = f"unconditional + classifier guidance, scale {scale:g}"
        print(f"{name:<52} {match:>6.3f} {confident:>10.3f} {worst:>12.3f} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
