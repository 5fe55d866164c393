"""Autoguidance on the bundled real models: does a weaker model of the same data as the guide help? (issue 30, item 4)

    python benchmarks/autoguidance_bundled.py --threads 2 --fashion_guide GUIDE --digits_guide GUIDE
    python benchmarks/autoguidance_bundled.py --report

Autoguidance (Karras et al. 2024, eq. 2) samples with ``s_good + (w - 1) (s_good - s_bad)``, where ``s_bad`` is a
weaker model of the same data (a smaller network trained for less time; ``ncsn-train --save_guide_at`` leaves one
behind). Each guided step calls both networks, so a guided run of ``n`` sampler steps costs ``2 n`` network calls:
this benchmark counts them all, as issue 30 asks, and measures at equal *steps* too, so that what the guide does to
the score is seen apart from what it costs.

For each model (``--fashion_guide`` and ``--digits_guide`` name the guides: pipeline folders) and each ``w`` in
``--scales`` (1 is the model alone, no guide), the model's own sampler (the bundled DPM-Solver++ 3M-SDE; its tuned
noise levels where it has them for that step count) runs ``--steps`` steps and draws ``--num_samples`` samples per
seed; the package's judges score them as in ``benchmarks/quality_per_call.py`` (Fashion: Fréchet distance in the
Fashion judge's features, asked-for class, confident; digits: the digit classifier's Fréchet distance, confident).
Rows go to ``benchmarks/results/autoguidance_bundled.jsonl`` at once (a stopped run resumes where it stopped);
``--report`` writes ``benchmarks/results/autoguidance_bundled.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "autoguidance_bundled.jsonl"
TABLE = ROOT / "results" / "autoguidance_bundled.md"
KEY = ("model", "guide", "scale", "steps", "seed", "num_samples")


def done_rows() -> List[dict]:
    if not RESULTS.is_file():
        return []
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return list({tuple(row.get(key) for key in KEY): row for row in rows}.values())


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from quality_per_call import judge

    from ncsn_pipeline.evaluation.batches import sample_in_batches
    from ncsn_pipeline.pretrained import load_pipeline

    rows = done_rows()
    guides = {"ncsn-fashion": args.fashion_guide, "ncsn-digits": args.digits_guide}
    for model_name, guide_path in guides.items():
        if guide_path is None:
            continue
        pipe = load_pipeline(model_name)
        pipe.set_progress_bar_config(disable=True)
        guide = load_pipeline(guide_path).unet.eval()
        guide_name = Path(guide_path).name
        for seed in args.seeds:
            for steps in args.steps:
                for scale in args.scales:
                    key = {"model": model_name, "guide": None if scale == 1 else guide_name, "scale": scale,
                           "steps": steps, "seed": seed, "num_samples": args.num_samples}  # fmt: skip
                    if any(all(row.get(k) == v for k, v in key.items()) for row in rows):
                        continue
                    extra = {} if scale == 1 else {"guidance_model": guide, "guidance_scale": scale}
                    started = time.perf_counter()
                    images, labels, calls, _ = sample_in_batches(pipe, args.num_samples, 100, seed, steps,
                                                                 pipe_kwargs=extra)  # fmt: skip
                    row = {**key, "calls": calls[0] * (1 if scale == 1 else 2),
                           "description": pipe.scheduler.description, "batch_seeds": True,
                           **judge(model_name, images, labels),
                           "seconds": time.perf_counter() - started}  # fmt: skip
                    with RESULTS.open("a") as stream:
                        stream.write(json.dumps(row) + "\n")
                    rows.append(row)
                    shown = ", ".join(f"{k} {row[k]:.3f}" for k in ("fd", "asked_for", "confident") if k in row)
                    print(f"{model_name} | w {scale} | {steps} steps, {row['calls']} calls | seed {seed}: {shown} "
                          f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip


def report() -> None:
    sys.path.insert(0, str(ROOT))
    from quality_per_call import SEEDING_NOTE

    rows = done_rows()
    names = {"fd": "Fréchet distance", "asked_for": "asked-for class", "confident": "confident"}
    lines = [
        "# Autoguidance on the bundled models",
        "",
        "Written by `python benchmarks/autoguidance_bundled.py --report` from `autoguidance_bundled.jsonl` (the",
        "command that measured the rows is in the script's docstring). w = 1 is the model alone; a guided step calls",
        "both networks, so its calls are twice its steps. Mean over the seeds, each seed's figure after it.",
        *SEEDING_NOTE,
        "",
    ]
    for model in dict.fromkeys(row["model"] for row in rows):
        measured = [row for row in rows if row["model"] == model]
        present = [k for k in names if any(k in row for row in measured)]
        lines += [f"## {model}", ""]
        lines += ["| steps | guide | w | network calls | " + " | ".join(names[k] for k in present) + " |",
                  "| ---: | --- | ---: | ---: | " + " | ".join("---" for _ in present) + " |"]  # fmt: skip
        combinations = sorted({(row["steps"], row["guide"] or "", row["scale"]) for row in measured})
        for steps, guide, scale in combinations:
            group = [row for row in measured
                     if (row["steps"], row["guide"] or "", row["scale"]) == (steps, guide, scale)]  # fmt: skip
            cells = []
            for k in present:
                values = [row[k] for row in sorted(group, key=lambda row: row["seed"])]
                mean = sum(values) / len(values)
                cells.append(f"{mean:.3f} ({' / '.join(f'{v:.3f}' for v in values)})" if len(values) > 1
                             else f"{mean:.3f}")  # fmt: skip
            row_start = f"| {steps} | {guide or '-'} | {scale:g} | {group[0]['calls']} | "
            lines.append(row_start + " | ".join(cells) + " |")
        lines.append("")
    TABLE.write_text("\n".join(lines))
    print(f"Wrote {TABLE}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (set explicitly: see README)")
    parser.add_argument("--fashion_guide", help="a guide pipeline folder for ncsn-fashion (class-conditional)")
    parser.add_argument("--digits_guide", help="a guide pipeline folder for ncsn-digits (unconditional)")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 1.5, 2.0, 3.0], help="w; 1 = no guide")
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 25], help="sampler steps (calls, unguided)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--report", action="store_true", help="only rewrite the table")
    args = parser.parse_args()
    bad = [s for s in args.scales if not s >= 1] + [n for n in args.steps if n < 2]
    if bad:
        parser.error(f"--scales must be >= 1 and --steps >= 2, got {bad}")
    torch.set_num_threads(args.threads)
    if not args.report:
        run(args)
    report()


if __name__ == "__main__":
    main()
