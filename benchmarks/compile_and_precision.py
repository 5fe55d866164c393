"""``torch.compile`` and bfloat16 against eager float32, on this machine's CPU (issue 23, item 3).

For each network (the bundled digits and Fashion-MNIST models, and random-weight NCSNv2 and NCSN++ at CIFAR-10
configurations), one forward pass is timed, interleaved, in five forms: eager float32 (the baseline), compiled
float32 (``torch.compile``, inductor), eager bfloat16 (``model.to(torch.bfloat16)``), float32 under
``torch.autocast("cpu", torch.bfloat16)``, and compiled bfloat16; the speed-up of each over the baseline is printed
with the compilation time. Then a whole sampling run of the bundled digits pipeline (its saved sampler), eager and
compiled, the way a user writes it: ``pipe.unet = torch.compile(pipe.unet)``.

Whether bfloat16 pays depends on the CPU: without native bfloat16 instructions (AVX512-BF16 / AMX) PyTorch
emulates it and it runs slower than float32; the table says which it is here.

    python benchmarks/compile_and_precision.py --threads 2
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings
from typing import Callable, Dict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers  # noqa: E402
import torch  # noqa: E402
import torch._dynamo  # noqa: E402

from ncsn_pipeline import NCSNPipeline, NCSNppScoreModel, NCSNScoreModel  # noqa: E402
from ncsn_pipeline.conversion import score_sde  # noqa: E402
from ncsn_pipeline.conversion.published import PUBLISHED_CONFIGS  # noqa: E402
from ncsn_pipeline.pretrained import pretrained_path  # noqa: E402


def networks() -> Dict[str, tuple]:
    """name -> (model, batch of inputs, sigma, extra keyword arguments)."""
    torch.manual_seed(0)
    digits = NCSNPipeline.from_pretrained(pretrained_path("ncsn-digits")).unet
    fashion = NCSNPipeline.from_pretrained(pretrained_path("ncsn-fashion")).unet
    ncsnpp_config = PUBLISHED_CONFIGS["ncsnpp-cifar10-ve"]
    ncsnpp_config = {**ncsnpp_config, "model": {**ncsnpp_config["model"], "nf": 32}}
    return {
        "ncsn-digits (NCSNv2 ngf 24, 8 px, batch 100)": (digits, torch.rand(100, 1, 8, 8), {}),
        "ncsn-fashion (EDM UNet, 28 px, batch 32)": (fashion, torch.rand(32, 1, 28, 28), {"class_labels": 3}),
        "NCSNv2 (ngf 64, 32 px, batch 16)": (NCSNScoreModel(3, 32, 64), torch.rand(16, 3, 32, 32), {}),
        "NCSN++ (nf 32, 32 px, batch 8)": (
            NCSNppScoreModel(**score_sde.ncsnpp_config(ncsnpp_config)), torch.rand(8, 3, 32, 32), {}
        ),
    }


def interleaved_medians(runs: Dict[str, Callable[[], None]], rounds: int) -> Dict[str, float]:
    times = {name: [] for name in runs}
    for round_index in range(rounds):
        for name in runs if round_index % 2 == 0 else reversed(list(runs)):
            started = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def forms(model: torch.nn.Module, sample: torch.Tensor, extra: dict) -> tuple[Dict[str, Callable[[], None]], dict]:
    """The five forms of one forward pass, each warmed up (compiled) once; returns them and the compile seconds."""
    model = model.eval()
    low = copy.deepcopy(model).to(torch.bfloat16)
    sigma = torch.full((sample.shape[0],), 0.5)
    sample_low = sample.to(torch.bfloat16)
    torch._dynamo.reset()
    compiled, compiled_low = torch.compile(model), torch.compile(low)

    def call(network, x):
        def run():
            with torch.no_grad():
                network(x, sigma, **extra)

        return run

    def autocast():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(sample, sigma, **extra)

    runs = {
        "eager float32": call(model, sample),
        "compiled float32": call(compiled, sample),
        "eager bfloat16": call(low, sample_low),
        "autocast bfloat16": autocast,
        "compiled bfloat16": call(compiled_low, sample_low),
    }
    compile_seconds = {}
    for name, run in runs.items():
        started = time.perf_counter()
        run()  # the first call compiles
        compile_seconds[name] = time.perf_counter() - started
        run()
    return runs, compile_seconds


def pipeline_run(rounds: int) -> None:
    pipe = NCSNPipeline.from_pretrained(pretrained_path("ncsn-digits"))
    pipe.set_progress_bar_config(disable=True)
    eager_network = pipe.unet
    compiled_network = torch.compile(eager_network)

    def sample(network):
        def run():
            pipe.unet = network
            pipe(batch_size=100, generator=torch.Generator().manual_seed(0), output_type="pt")

        return run

    runs = {"eager": sample(eager_network), "compiled": sample(compiled_network)}
    started = time.perf_counter()
    runs["compiled"]()
    first = time.perf_counter() - started
    medians = interleaved_medians(runs, rounds)
    calls = pipe.scheduler.num_model_calls
    print(
        f"\nncsn-digits pipeline, 100 samples, {pipe.scheduler.description}:\n"
        f"  eager {medians['eager']:.2f} s, compiled {medians['compiled']:.2f} s per run "
        f"({medians['eager'] / medians['compiled']:.2f}x; first compiled run {first:.1f} s with compilation; "
        f"{calls} network calls, no recompilation between steps)"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9, help="timed calls of each form")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Quiet: diffusers warns on every `.to(dtype)` and dynamo on diffusers' cached helpers; the table is the output.
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"torch {torch.__version__}, {args.threads} threads; speed-up = eager float32 time / the form's time")
    print(f"{'network':46s} {'form':18s} {'ms':>8s} {'speed-up':>8s} {'first call s':>12s}")
    for name, (model, sample, extra) in networks().items():
        runs, compile_seconds = forms(model, sample, extra)
        medians = interleaved_medians(runs, args.rounds)
        for form, seconds in medians.items():
            print(
                f"{name:46s} {form:18s} {1e3 * seconds:8.1f} {medians['eager float32'] / seconds:7.2f}x "
                f"{compile_seconds[form]:12.1f}",
                flush=True,
            )
    pipeline_run(max(3, args.rounds // 3))


if __name__ == "__main__":
    main()
