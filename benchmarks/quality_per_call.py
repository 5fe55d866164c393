"""Sample quality per network call on the bundled real models and on exact-score mixtures (issue 30, item 1).

For each model, sampler and call budget (5, 6, 8, 10, 12, 15, 20, 30, 50 by default) and each seed, draws
``--num_samples`` samples and scores them:

* ``ncsn-fashion``: the package's Fashion-MNIST judge (Fréchet distance in its features to the 10,000 test images,
  the share judged the class asked for, 100 per class, and the confident share), beside the floor (real training
  images, same N);
* ``ncsn-digits``: the package's digit classifier (Fréchet distance to the held-out digits, confident share);
* ``--mixtures``: the exact-score mixtures of ``benchmarks/calls_to_floor.py`` (NCSN's 2-D toy, a 10-mode 64-D
  mixture; 5,000 samples; mode-weight total variation and within-mode spread against exact samples), so that the
  evidence of exact scores and of learned ones sits side by side.

A sampler with two calls per level (Heun, EDM, predictor-corrector) gets the most levels its budget allows, so its
row may spend one call less; annealed Langevin takes one Langevin step per level plus the denoising call. The
adaptive solver is left out: its calls follow from a tolerance, not a budget. Models sample with their own saved
settings (``sigma_max``, ``sigma_min``) on Karras et al.'s levels; the row "DPM-Solver++ 3M-SDE, tuned levels" uses
the levels ``ncsn-tune-steps`` stored in the model's config, at the call counts that have them.

Every finished row is appended to ``benchmarks/results/quality_per_call.jsonl`` at once and skipped when the
command runs again, so a long run can be stopped and resumed; ``--report`` only rewrites the table
(``benchmarks/results/quality_per_call.md``) and the plot (``docs/quality_per_call.png``) from the rows.

    python benchmarks/quality_per_call.py --threads 2                       # both models, every sampler (hours)
    python benchmarks/quality_per_call.py --threads 2 --models ncsn-fashion --samplers "DPM-Solver++ 3M-SDE"
    python benchmarks/quality_per_call.py --mixtures --threads 2            # exact scores (minutes)
    python benchmarks/quality_per_call.py --report
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ncsn_pipeline import NCSNPipeline, score_schedulers
from ncsn_pipeline.noise_schedules import sigma_max_for_prior, step_lr_for

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "quality_per_call.jsonl"
TABLE = ROOT / "results" / "quality_per_call.md"
PLOT = ROOT.parent / "docs" / "quality_per_call.png"
CALLS = (5, 6, 8, 10, 12, 15, 20, 30, 50)
MODELS = ("ncsn-fashion", "ncsn-digits")

# Label -> (sampler class, options set on top of the model's own config).
# Rows on Karras et al.'s levels drop the model's tuned levels; the "tuned levels" row keeps them and runs only the
# call counts that have them.
GRID = {"tuned_noise_levels": None}
TUNED = "DPM-Solver++ 3M-SDE, tuned levels"
SAMPLERS: Dict[str, Tuple[str, Dict]] = {
    TUNED: ("DPMSolverPlusPlusScheduler", {"algorithm": "3m-sde"}),
    "DPM-Solver++ 3M-SDE": ("DPMSolverPlusPlusScheduler", {"algorithm": "3m-sde", **GRID}),
    "DPM-Solver++ 2M-SDE": ("DPMSolverPlusPlusScheduler", {"algorithm": "2m-sde", **GRID}),
    "DPM-Solver++ 2M": ("DPMSolverPlusPlusScheduler", {"algorithm": "2m", **GRID}),
    "iPNDM": ("IPNDMScoreScheduler", GRID),
    "UniPC": ("UniPCScheduler", GRID),
    "probability-flow Heun": ("ProbabilityFlowHeunScheduler", {}),
    "EDM stochastic": ("EDMStochasticScheduler", {}),
    "predictor-corrector": ("VEPredictorCorrectorScheduler", {}),
    "annealed Langevin": ("NCSNScheduler", {}),
}


def levels_for_budget(scheduler_class: type, config: dict, options: dict, budget: int) -> Tuple[object, int]:
    """The sampler with the most noise levels whose planned run takes at most ``budget`` calls, and its calls."""
    best = None
    for levels in range(2, budget + 1):
        extra = dict(options)
        if scheduler_class.__name__ == "NCSNScheduler":
            extra.update(steps_per_level=1, final_denoise=True)
        if scheduler_class.__name__ == "VEPredictorCorrectorScheduler":
            extra.update(num_corrector_steps=1)
        scheduler = scheduler_class.from_config(dict(config), **extra, num_noise_levels=levels)
        if scheduler_class.__name__ == "NCSNScheduler":  # NCSNv2's technique 4 for a step size on these levels
            gamma = (scheduler.config.sigma_max / scheduler.config.sigma_min) ** (1 / (levels - 1))
            step_lr = float(f"{step_lr_for(gamma, scheduler.config.sigma_min, 1):.3g}")
            scheduler = scheduler_class.from_config(dict(scheduler.config), step_lr=step_lr)
        if scheduler.num_model_calls > budget:
            break
        best = scheduler
    if best is None:
        raise ValueError(f"{scheduler_class.__name__} cannot run within {budget} calls.")
    return best, best.num_model_calls


KEY = ("model", "sampler", "budget", "seed", "num_samples")
# Shared with autoguidance_bundled.py's table: which rows seed their batches how.
SEEDING_NOTE = (
    "Rows marked `batch_seeds` in the JSONL (recorded from 2026-12-08 on) seed batch b from (seed, b), as every",
    "evaluation does since multi-process sampling (`ncsn_pipeline.evaluation.batches`); earlier rows drew a seed's",
    "batches from one generator. Same distributions, other images: re-running an earlier row gives figures within",
    "the seed-to-seed spread, not the same digits.",
)


def done_rows() -> List[dict]:
    """The rows recorded so far, one per (model, sampler, budget, seed, N): two runs that measured the same row (they
    agree: sampling is seeded) count once."""
    if not RESULTS.is_file():
        return []
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return list({tuple(row.get(key) for key in KEY): row for row in rows}.values())


def append_row(row: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as stream:
        stream.write(json.dumps(row) + "\n")


def judge(model_name: str, images: torch.Tensor, labels: Optional[torch.Tensor]) -> Dict[str, float]:
    if model_name == "ncsn-fashion" or images.shape[-1] == 28:
        from ncsn_pipeline.evaluation import fashion_judge

        figures = fashion_judge.evaluate_fashion_samples(images)
        row = {"fd": figures["frechet_distance"], "confident": figures["confident_rate"]}
        if labels is not None:
            row["asked_for"] = fashion_judge.requested_class_rate(images, labels)["match_rate"]
        return row
    from ncsn_pipeline.evaluation.digits_judge import (
        default_digit_classifier,
        evaluate_digit_samples,
        requested_class_rate,
        resize_to_digits,
    )

    classifier = default_digit_classifier()
    figures = evaluate_digit_samples(resize_to_digits(images), classifier)
    row = {"fd": figures["frechet_distance"], "confident": figures["confident_rate"]}
    if labels is not None:
        row["asked_for"] = requested_class_rate(resize_to_digits(images), labels, classifier)["match_rate"]
    return row


def floor(model_name: str, num_samples: int) -> Dict[str, float]:
    if model_name == "ncsn-fashion":
        from ncsn_pipeline.evaluation import fashion_judge

        figures = fashion_judge.floor_metrics(num_samples=num_samples)
    else:
        from ncsn_pipeline.evaluation.digits_judge import default_digit_classifier, floor_metrics

        figures = floor_metrics(default_digit_classifier(), num_samples=num_samples)
    return {"fd": figures["frechet_distance"], "confident": figures["confident_rate"]}


def run_models(args: argparse.Namespace) -> None:
    from ncsn_pipeline.evaluation.batches import sample_in_batches
    from ncsn_pipeline.pretrained import resolve_pipeline

    rows = done_rows()
    for model_name in args.models:
        pipe, _ = resolve_pipeline(model_name)
        pipe.set_progress_bar_config(disable=True)
        pipe.unet.to(memory_format=torch.channels_last)  # faster CPU convolutions (see the demo); same samples
        saved = dict(pipe.scheduler.config)
        key = {"model": model_name, "sampler": "floor", "num_samples": args.num_samples}
        if not any(all(row.get(k) == v for k, v in key.items()) for row in rows):
            append_row({**key, **floor(model_name, args.num_samples)})
        for label in args.samplers:
            class_name, options = SAMPLERS[label]
            for budget in args.calls:
                if label == TUNED and str(budget) not in (saved.get("tuned_noise_levels") or {}):
                    continue
                for seed in args.seeds:
                    key = {"model": model_name, "sampler": label, "budget": budget, "seed": seed,
                           "num_samples": args.num_samples}  # fmt: skip
                    if any(all(row.get(k) == v for k, v in key.items()) for row in rows):
                        continue
                    scheduler, calls = levels_for_budget(score_schedulers()[class_name], saved, options, budget)
                    pipe.scheduler = scheduler
                    started = time.perf_counter()
                    images, labels, _, _ = sample_in_batches(pipe, args.num_samples, 100, seed, None)
                    row = {**key, "calls": calls, "description": scheduler.description, "batch_seeds": True,
                           **judge(model_name, images, labels), "seconds": time.perf_counter() - started}  # fmt: skip
                    append_row(row)
                    rows.append(row)
                    shown = ", ".join(f"{k} {row[k]:.3f}" for k in ("fd", "asked_for", "confident") if k in row)
                    print(f"{model_name} | {label} | {calls} calls | seed {seed}: {shown} ({row['seconds']:.0f} s)",
                          flush=True)  # fmt: skip
    pipe.scheduler = type(pipe.scheduler).from_config(saved)


def run_mixtures(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from calls_to_floor import COUNT, mixtures
    from sampler_quality import exact_samples, metrics

    rows = done_rows()
    for name, model in mixtures().items():
        reference = exact_samples(model, COUNT, torch.Generator().manual_seed(123))
        sigma_max = sigma_max_for_prior(exact_samples(model, 20000, torch.Generator().manual_seed(7)), tolerance=0.01)
        key = {"model": name, "sampler": "floor", "num_samples": COUNT}
        if not any(all(row.get(k) == v for k, v in key.items()) for row in rows):
            floor_samples = exact_samples(model, COUNT, torch.Generator().manual_seed(124))
            total_variation, spread, _ = metrics(model, floor_samples, reference)
            append_row({**key, "tv": total_variation, "spread": spread})
        config = {"sigma_max": sigma_max, "sigma_min": 0.01}
        for label in [label for label in args.samplers if label != TUNED]:  # no tuned levels for the mixtures
            class_name, options = SAMPLERS[label]
            for budget in args.calls:
                for seed in args.seeds:
                    key = {"model": name, "sampler": label, "budget": budget, "seed": seed, "num_samples": COUNT}
                    if any(all(row.get(k) == v for k, v in key.items()) for row in rows):
                        continue
                    scheduler, calls = levels_for_budget(score_schedulers()[class_name], config, options, budget)
                    pipe = NCSNPipeline(unet=model, scheduler=scheduler)
                    pipe.set_progress_bar_config(disable=True)
                    samples = pipe(batch_size=COUNT, generator=torch.Generator().manual_seed(seed),
                                   output_type="pt").images  # fmt: skip
                    total_variation, spread, _ = metrics(model, samples.reshape(COUNT, -1), reference)
                    row = {**key, "calls": calls, "description": scheduler.description, "tv": total_variation,
                           "spread": spread}  # fmt: skip
                    append_row(row)
                    rows.append(row)
                    print(f"{name} | {label} | {calls} calls | seed {seed}: TV {total_variation:.4f}, spread "
                          f"{spread:.3f}", flush=True)  # fmt: skip


def _mean(values: List[float]) -> float:
    return sum(values) / len(values)


def report() -> None:
    """The table (mean over seeds, each seed in brackets) and the plot, from the rows recorded so far."""
    rows = done_rows()
    models = list(dict.fromkeys(row["model"] for row in rows))
    lines = [
        "# Quality per network call",
        "",
        "Written by `python benchmarks/quality_per_call.py --report` from `quality_per_call.jsonl` (every row the",
        "benchmark measured; the commands are in its docstring). Mean over the seeds, each seed's figure after it.",
        *SEEDING_NOTE,
        "",
    ]
    for model in models:
        measured = [row for row in rows if row["model"] == model and row["sampler"] != "floor"]
        floors = [row for row in rows if row["model"] == model and row["sampler"] == "floor"]
        exact = "tv" in (floors or measured or [{}])[0]
        keys = ("tv", "spread") if exact else ("fd", "asked_for", "confident")
        names = {"tv": "mode-weight TV", "spread": "within-mode spread", "fd": "Fréchet distance",
                 "asked_for": "asked-for class", "confident": "confident"}  # fmt: skip
        lines += [f"## {model}", ""]
        if floors:
            shown = ", ".join(f"{names[k]} {floors[0][k]:.4g}" for k in keys if k in floors[0])
            lines += [f"Floor ({'two exact sample sets' if exact else 'real training images'}, N = "
                      f"{floors[0]['num_samples']}): {shown}.", ""]  # fmt: skip
        present = [k for k in keys if any(k in row for row in measured)]
        lines += ["| sampler | calls | " + " | ".join(names[k] for k in present) + " |",
                  "| --- | ---: | " + " | ".join("---" for _ in present) + " |"]  # fmt: skip
        for label in dict.fromkeys(row["sampler"] for row in measured):
            for budget in sorted({row["budget"] for row in measured if row["sampler"] == label}):
                group = [row for row in measured if row["sampler"] == label and row["budget"] == budget]
                cells = []
                for k in present:
                    values = [row[k] for row in group if k in row]
                    seeds = " / ".join(f"{value:.3f}" for value in values)
                    cells.append(f"{_mean(values):.3f} ({seeds})" if len(values) > 1 else f"{values[0]:.3f}")
                lines.append(f"| {label} | {group[0]['calls']} | " + " | ".join(cells) + " |")
        lines.append("")
    TABLE.write_text("\n".join(lines))
    print(f"Wrote {TABLE}.")

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = [model for model in models if model in MODELS]
    if not plotted:
        return
    figure, axes = plt.subplots(1, len(plotted), figsize=(6.5 * len(plotted), 4.6), squeeze=False)
    for axis, model in zip(axes[0], plotted):
        measured = [row for row in rows if row["model"] == model and row["sampler"] != "floor"]
        for label in dict.fromkeys(row["sampler"] for row in measured):
            points = {}
            for row in measured:
                if row["sampler"] == label:
                    points.setdefault(row["calls"], []).append(row["fd"])
            calls = sorted(points)
            axis.plot(calls, [_mean(points[c]) for c in calls], marker="o", markersize=3, label=label)
        floors = [row for row in rows if row["model"] == model and row["sampler"] == "floor"]
        if floors:
            axis.axhline(floors[0]["fd"], color="black", linestyle="--", linewidth=1, label="floor (real images)")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(list(CALLS))
        axis.set_xticklabels([str(c) for c in CALLS])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("network calls per sample")
        axis.set_ylabel("Fréchet distance in the judge's features")
        axis.set_title(model)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    print(f"Wrote {PLOT}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (set explicitly: see README)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--calls", nargs="+", type=int, default=list(CALLS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--mixtures", action="store_true", help="the exact-score mixtures instead of the models")
    parser.add_argument("--report", action="store_true", help="only rewrite the table and the plot")
    args = parser.parse_args()
    if any(calls < 2 or not math.isfinite(calls) for calls in args.calls):
        parser.error(f"--calls must be 2 or more, got {args.calls}")
    torch.set_num_threads(args.threads)
    if not args.report:
        (run_mixtures if args.mixtures else run_models)(args)
    report()


if __name__ == "__main__":
    main()
