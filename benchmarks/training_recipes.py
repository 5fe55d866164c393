"""Training recipes for 28 x 28 Fashion-MNIST compared at equal CPU time, judged by the package's Fashion judge.

    python benchmarks/training_recipes.py [--minutes 5] [--threads 2] [--num_samples 300] [--workdir DIR]
        [--recipes A,B,...] [--output benchmarks/results/training_recipes.md]

Each recipe is one ``ncsn-train`` command (class-conditional, full training split, ``--max_train_minutes`` so every
recipe gets the same training time on this machine), then ``ncsn-eval`` with its default sampler (DPM-Solver++
3M-SDE, 50 network calls) and the Fashion judge: confident rate, asked-for class rate and the Fréchet distance in
the judge's features, each beside the floor of real test images at the same number of samples. The table (markdown)
goes to ``--output`` and the console. Run it on an otherwise idle machine: the steps a recipe gets in its minutes
depend on the machine's speed, which the table reports (steps, seconds per step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# name -> (what it is, ncsn-train flags beyond the common ones)
RECIPES = {
    "A": ("NCSNv2 RefineNet ngf 32, NCSN objective (the default)", ["--model", "ncsnv2", "--ngf", "32"]),
    "B": ("NCSNv2 RefineNet ngf 16, NCSN objective", ["--model", "ncsnv2", "--ngf", "16"]),
    "C": (
        "EDM U-Net 32-64-64, NCSN objective (levels, sigma^2)",
        ["--model", "edm-unet", "--noise_sampling", "levels", "--loss_weighting", "sigma2"],
    ),
    "D": ("EDM U-Net 32-64-64, EDM objective (log-normal, EDM weight)", ["--model", "edm-unet"]),
    "E": (
        "EDM U-Net 32-64-64, EDM objective, lr 2e-3",
        ["--model", "edm-unet", "--learning_rate", "2e-3"],
    ),
    "F": (
        "EDM U-Net 64-128-128, EDM objective",
        ["--model", "edm-unet", "--block_out_channels", "64,128,128"],
    ),
    "G": (
        "EDM U-Net 32-64-64, EDM objective, batch 128",
        ["--model", "edm-unet", "--train_batch_size", "128"],
    ),
    "H": (
        "D with EDM2's learning-rate decay (inverse_sqrt from step 200)",
        ["--model", "edm-unet", "--lr_scheduler", "inverse_sqrt", "--lr_decay_steps", "200"],
    ),
    "I": ("D with batch 32", ["--model", "edm-unet", "--train_batch_size", "32"]),
    "J": (
        "D with post-hoc EMA (EDM2), the best width of a sweep",
        ["--model", "edm-unet", "--posthoc_ema", "--posthoc_ema_interval", "25"],
    ),
}
# The widths a post-hoc EMA recipe is judged at (`ncsn-reconstruct-ema --evaluate`); its row shows the best.
SWEEP = ["0.03", "0.05", "0.08", "0.12", "0.18"]
COMMON = [
    "--dataset_name", "fashion-mnist", "--resolution", "28", "--class_conditional", "--auto_noise_schedule",
    "--train_batch_size", "64", "--max_train_steps", "1000000", "--checkpointing_steps", "1000000",
    "--report_to", "none", "--num_samples", "10",
]  # fmt: skip


def _run(command, log: Path) -> None:
    with log.open("w") as handle:
        completed = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ})
    if completed.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({completed.returncode}); see {log}")


def _figures(figures: dict) -> tuple:
    """(confident, asked-for class, Fréchet distance) from a sweep row's card figures."""
    by_start = {name.split(" ")[0]: value for name, value in figures.items()}
    asked = next(value for name, value in figures.items() if name.startswith("samples judged the class asked for"))
    return by_start["confident"], asked, by_start["Fréchet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training minutes per recipe")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num_samples", type=int, default=300)
    parser.add_argument("--workdir", default="recipe-runs")
    parser.add_argument("--recipes", default="A,C,D,E,F")
    parser.add_argument("--output", default=None, help="write the table (markdown) here too")
    parser.add_argument(
        "--reuse", action="store_true", help="keep recipes already trained and judged in --workdir (an interrupted run)"
    )
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.recipes.split(","):
        description, flags = RECIPES[name]
        folder = workdir / f"recipe-{name}"
        report_path = workdir / f"recipe-{name}-eval.json"
        if args.reuse and report_path.is_file() and (folder / "training_args.json").is_file():
            record = json.loads((folder / "training_args.json").read_text())
            rows.append((name, description, record, json.loads(report_path.read_text()), 0.0))
            continue
        shutil.rmtree(folder, ignore_errors=True)
        train = [
            sys.executable, "-m", "ncsn_pipeline.train", *COMMON, *flags, "--output_dir", str(folder),
            "--max_train_minutes", str(args.minutes), "--threads", str(args.threads),
        ]  # fmt: skip
        started = time.time()
        _run(train, workdir / f"recipe-{name}-train.log")
        record = json.loads((folder / "training_args.json").read_text())
        evaluate = [
            sys.executable, "-m", "ncsn_pipeline.cli.evaluate", str(folder), "--num_samples", str(args.num_samples),
            "--judge", "fashion-mnist", "--threads", str(args.threads), "--output", str(report_path),
        ]  # fmt: skip
        _run(evaluate, workdir / f"recipe-{name}-eval.log")
        report = json.loads(report_path.read_text())
        if "--posthoc_ema" in flags:  # judged at each width; the row is the best one's (same N, seed, sampler)
            sweep_path = workdir / f"recipe-{name}-sweep.json"
            sweep = [
                sys.executable, "-m", "ncsn_pipeline.cli.reconstruct_ema", str(folder), "--sigma_rel", *SWEEP,
                "--evaluate", "--num_samples", str(args.num_samples), "--threads", str(args.threads),
                "--report", str(sweep_path),
            ]  # fmt: skip
            _run(sweep, workdir / f"recipe-{name}-sweep.log")
            report["posthoc_sweep"] = json.loads(sweep_path.read_text())
            report_path.write_text(json.dumps(report, indent=2))
        rows.append((name, description, record, report, time.time() - started))
        print(f"recipe {name} done: {record['global_step']} steps in {record['train_seconds']} s", flush=True)

    floor = rows[0][3]["fashion-mnist"]["floor"]
    lines = [
        f"Fashion-MNIST 28x28, class-conditional, {args.minutes:g} training minutes per recipe, {args.threads} "
        f"threads, {args.num_samples} samples per judge figure (default sampler, 50 calls). Floor (real training "
        f"images vs the test split, same N): confident {floor['confident_rate']:.3f}, Fréchet distance "
        f"{floor['frechet_distance']:.1f}.",
        "",
        "| recipe | what | steps | s / step | confident | asked-for class | Fréchet distance (judge) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, description, record, report, _ in rows:
        judged = report["fashion-mnist"]
        samples, requested = judged["samples"], judged["requested_class"]["match_rate"]
        confident, distance = samples["confident_rate"], samples["frechet_distance"]
        seconds_per_step = record["train_seconds"] / record["global_step"]
        if "posthoc_sweep" in report:
            widths = {row["posthoc_ema"]["sigma_rel"]: _figures(row["figures"]) for row in report["posthoc_sweep"]}
            best = min(widths, key=lambda width: widths[width][2])
            shown = ", ".join(f"{width:g}: {figures[2]:.1f}" for width, figures in widths.items())
            description += f" (Fréchet distance by sigma_rel: {shown}; EMA 0.999: {distance:.1f})"
            confident, requested, distance = widths[best]
        lines.append(
            f"| {name} | {description} | {record['global_step']} | {seconds_per_step:.3f} "
            f"| {confident:.3f} | {requested:.3f} | {distance:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        Path(args.output).write_text(f"# python benchmarks/training_recipes.py {' '.join(sys.argv[1:])}\n\n{table}\n")


if __name__ == "__main__":
    main()
