"""Evaluate the bundled pretrained pipelines, write their ``evaluation.json`` and re-render their model cards.

* ``ncsn-digits``: ``ncsn-eval ncsn-digits --data digits --record`` (classifier trained on real digits:
  confident-classification rate, class coverage, class entropy, Fréchet distance in the classifier's feature
  space, next to the floor of real training digits scored the same way, same N; network calls and seconds per
  sample; bits/dim of the held-out digits), and a new ``sample_grid.png`` from the saved sampler.
* ``ncsn-digits-classes``: the same samples scores (asked for the digits in turn) and how often the judge sees the
  digit asked for; its ``sample_grid.png`` shows one column per digit. (No bits/dim: the likelihood of a
  class-conditional model is per class.)
* ``ncsn-fashion``: ``ncsn-eval ncsn-fashion --record`` with the Fashion-MNIST judge (confident rate, share per class,
  Fréchet distance in the judge's features against the test split, each beside real training images, same N; the
  class asked for; calls and seconds per sample), and its ``sample_grid.png`` (one column per class).
* ``ncsn-two-gaussians``: recovered weight and spread of the (5, 5) mode, next to the same sampler
  driven by the exact score (``GaussianMixtureScore.ncsn_toy()``).

    python benchmarks/evaluate_bundled_models.py [--num_samples 1000] [--only ncsn-fashion] [--fid] [--cards_only]

``--cards_only`` re-renders the model cards from the records already there (after a change of the card template).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline  # noqa: E402
from ncsn_pipeline.cli.evaluate import build_parser  # noqa: E402
from ncsn_pipeline.evaluation import evaluate  # noqa: E402
from ncsn_pipeline.folder_records import write_evaluation  # noqa: E402
from ncsn_pipeline.hub import write_model_card  # noqa: E402
from ncsn_pipeline.pretrained import pretrained_path  # noqa: E402
from ncsn_pipeline.training.loop import save_sample_preview  # noqa: E402

REPO_OWNER = "ncsn-pipeline"


def evaluate_images(num_samples: int, name: str = "ncsn-digits", fid: bool = False) -> None:
    """Evaluate a bundled image model with ``ncsn-eval`` (samples with its judge, and for the unconditional digits
    model held-out bits/dim) into its evaluation.json."""
    folder = pretrained_path(name)
    output = folder / "evaluation-run.json"
    pipe = NCSNPipeline.from_pretrained(folder)
    conditional = getattr(pipe.unet, "num_classes", None) is not None
    likelihood = [] if conditional else ["--data", "digits"]
    argv = [name, "--num_samples", str(num_samples), "--seed", "0", *likelihood, *(["--fid"] if fid else [])]
    argv += ["--output", str(output)]
    evaluate.run(build_parser().parse_args([*argv, "--record"]))
    output.unlink()  # the card's evaluation.json keeps what matters
    # The card's picture: samples of the saved sampler (as ncsn-train draws its preview; one column per class).
    save_sample_preview(pipe, folder / "sample_grid.png", num_samples=100 if conditional else 64, seed=0)


def _mode_statistics(pipe: NCSNPipeline, num_samples: int) -> tuple:
    pipe.set_progress_bar_config(disable=True)
    points = pipe(batch_size=num_samples, generator=torch.Generator().manual_seed(0), output_type="pt").images
    exact = GaussianMixtureScore.ncsn_toy()
    weight = exact.mode_weights(points)[1]
    upper = points[points.sum(dim=1) > 0].double()
    return weight, upper.var(dim=0).mean().item()


def evaluate_two_gaussians(num_samples: int) -> None:
    folder = pretrained_path("ncsn-two-gaussians")
    trained = NCSNPipeline.from_pretrained(folder)
    started = time.perf_counter()
    trained_weight, trained_spread = _mode_statistics(trained, num_samples)
    seconds = time.perf_counter() - started
    exact = NCSNPipeline(GaussianMixtureScore.ncsn_toy(), trained.scheduler)
    exact_weight, exact_spread = _mode_statistics(exact, num_samples)
    write_evaluation(
        folder,
        reference_label="same sampler, exact score",
        metrics=[
            {"name": "weight of the (5, 5) mode (true: 0.8)", "value": trained_weight, "reference": exact_weight},
            {"name": "per-axis variance of the (5, 5) mode", "value": trained_spread, "reference": exact_spread},
        ],
        notes=(
            f"{num_samples} samples (seed 0) with the saved annealed-Langevin sampler ({seconds:.1f} s on the CPU). "
            "The sampler stops at sigma_min = 1, so each mode's variance is about 1 + 1 = 2, not the data's 1; "
            "plain Langevin dynamics at sigma = 1 from the same start gives a weight near 0.5."
        ),
        command="python benchmarks/evaluate_bundled_models.py --only ncsn-two-gaussians",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_samples", type=int, default=1000, help="digits samples (and real ones for the floor)")
    parser.add_argument("--toy_samples", type=int, default=10000)
    parser.add_argument(
        "--only", choices=("ncsn-fashion", "ncsn-digits", "ncsn-digits-classes", "ncsn-two-gaussians"), default=None
    )
    parser.add_argument("--cards_only", action="store_true", help="only re-render the cards from the records")
    parser.add_argument(
        "--fid",
        action="store_true",
        help="also standard FID / KID for the image models (ncsn-eval --fid: the Inception network installed or "
        "cached; Fashion-MNIST against its test split, digits against the 359 held-out digits, each with a floor)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set explicitly: see DESIGN.md §12)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    jobs = {
        "ncsn-fashion": lambda: evaluate_images(args.num_samples, "ncsn-fashion", args.fid),
        "ncsn-digits": lambda: evaluate_images(args.num_samples, fid=args.fid),
        "ncsn-digits-classes": lambda: evaluate_images(args.num_samples, "ncsn-digits-classes", args.fid),
        "ncsn-two-gaussians": lambda: evaluate_two_gaussians(args.toy_samples),
    }
    for name, job in jobs.items():
        if args.only and name != args.only:
            continue
        if not args.cards_only:
            job()
        folder = pretrained_path(name)
        evaluation = json.loads((folder / "evaluation.json").read_text())
        write_model_card(folder, repo_id=f"{REPO_OWNER}/{name}")
        print(f"{name}:")
        for metric in evaluation["metrics"]:
            reference = metric.get("reference")
            reference = f" ({evaluation['reference_label']}: {reference:.4g})" if reference is not None else ""
            print(f"  {metric['name']}: {metric['value']:.4g}{reference}")


if __name__ == "__main__":
    main()
