"""Speed of each score network against the original implementation it reproduces (issue 23, item 2).

For every network of the package, the original research code at the same configuration (built from the same
published config, with the same weights copied over by the package's converter, and checked to give the same
output) is timed side by side in this one process: forward passes (``no_grad``, eval mode) and training steps
(denoising score matching loss, backward, Adam), interleaved ours / original / original / ours ... so that a busy
neighbour slows both alike; the medians are compared. Beside each ratio, the achieved floating-point rate (the
network's FLOPs, counted by ``torch.utils.flop_counter``, over its median time) against the machine's measured
peak for one large convolution says how close to the limit a network runs.

The original code is not part of the package: point ``--originals`` at a folder holding the three repositories
(``ermongroup+ncsnv2``, ``ermongroup+ncsn``, ``yang-song+score_sde_pytorch``), e.g. unpacked from GitHub; in the
score-SDE copy, ``op/`` must import on a machine without CUDA (its ``upfirdn2d`` falls back to PyTorch on the CPU
anyway): replace ``from torch.utils.cpp_extension import load`` in ``op/upfirdn2d.py`` and ``op/fused_act.py`` by
``load = lambda *args, **kwargs: None``.

    python benchmarks/network_speed.py --originals /work/originals --threads 2
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode

from ncsn_pipeline import NCSNppScoreModel
from ncsn_pipeline.conversion import ermongroup, score_sde
from ncsn_pipeline.conversion.published import PUBLISHED_CONFIGS
from ncsn_pipeline.noise_schedules import geometric_noise_levels


def namespace(value):
    """A nested config dict as the attribute tree (``config.model.ngf``) the original code reads."""
    if isinstance(value, dict):
        return types.SimpleNamespace(**{key: namespace(item) for key, item in value.items()})
    return value


def import_isolated(repository: Path, module: str):
    """Import ``module`` from ``repository``: all three repositories call their package ``models``, so each is
    imported alone and its modules are then forgotten by name (the classes keep their own globals)."""
    for name in [name for name in sys.modules if name.split(".")[0] in ("models", "op", "sde_lib")]:
        del sys.modules[name]
    sys.path.insert(0, str(repository))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(repository))
        for name in [name for name in sys.modules if name.split(".")[0] in ("models", "op", "sde_lib")]:
            del sys.modules[name]


@dataclass
class Pair:
    """One network at one configuration: ours and the original, each called as ``call(model, x, level_index)``."""

    name: str
    ours: torch.nn.Module
    original: torch.nn.Module
    call_ours: Callable
    call_original: Callable
    sigmas: torch.Tensor  # the noise levels a batch is drawn at
    shape: tuple  # (batch, channels, height, width)


def ermongroup_pair(name, originals: Path, config_name, architecture, ngf, size, batch, model_class) -> Pair:
    published = PUBLISHED_CONFIGS[config_name]
    config = {**published, "data": {**published["data"], "image_size": size}, "model": {**published["model"]}}
    config["model"]["ngf"] = ngf
    v1 = ermongroup.family(config) == "ncsn-v1"
    repository = originals / ("ermongroup+ncsn" if v1 else "ermongroup+ncsnv2")
    module = import_isolated(repository, "models.cond_refinenet_dilated" if v1 else "models.ncsnv2")
    original_config = namespace({**config, "device": torch.device("cpu")})
    if not v1:
        original_config.data.rescaled = False
    original = getattr(module, model_class)(original_config)
    converted = ermongroup.build(config, [original.state_dict()], "raw", architecture).model
    model_config = config["model"]
    sigmas = geometric_noise_levels(model_config["sigma_begin"], model_config["sigma_end"], model_config["num_classes"])
    sigmas = sigmas.float()  # the original's float32 levels; ours looks its levels up to a relative 1e-4
    return Pair(
        name,
        converted,
        original,
        call_ours=lambda model, x, index: model(x, sigmas[index], return_dict=False)[0],
        call_original=lambda model, x, index: model(x, index),
        sigmas=sigmas,
        shape=(batch, config["data"]["channels"], size, size),
    )


def ncsnpp_pair(originals: Path, nf: int, batch: int) -> Pair:
    published = PUBLISHED_CONFIGS["ncsnpp-cifar10-ve"]
    config = {**published, "model": {**published["model"], "nf": nf}}
    repository = originals / "yang-song+score_sde_pytorch"
    module = import_isolated(repository, "models.ncsnpp")
    original_config = namespace(
        {**config, "training": {"continuous": True}, "model": {**config["model"], "init_scale": 0.0}}
    )
    original = module.NCSNpp(original_config)
    _, weights, _ = score_sde.build_model(config, {"model": original.state_dict()}, "raw")
    ours = NCSNppScoreModel(**score_sde.ncsnpp_config(config))
    ours.load_state_dict(weights)
    sigmas = geometric_noise_levels(config["model"]["sigma_max"], config["model"]["sigma_min"], 100).float()
    return Pair(
        f"NCSN++ (CIFAR-10 VE, nf {nf}, 32 px, batch {batch})",
        ours,
        original,
        call_ours=lambda model, x, index: model(x, sigmas[index], return_dict=False)[0],
        call_original=lambda model, x, index: model(x, sigmas[index]),
        sigmas=sigmas,
        shape=(batch, 3, 32, 32),
    )


def pairs(originals: Path, quick: bool, only: str = "") -> List[Pair]:
    found = [
        ermongroup_pair("NCSNv2 (ngf 64, 32 px, batch 16)", originals, "ncsnv2-cifar10", "ncsnv2", 64, 32, 16,
                        "NCSNv2"),
        ermongroup_pair("NCSNv2 deeper (ngf 32, 64 px, batch 4)", originals, "ncsnv2-celeba", "ncsnv2-deeper", 32, 64,
                        4, "NCSNv2Deeper"),
        ermongroup_pair("NCSNv2 deepest (ngf 16, 128 px, batch 2)", originals, "ncsnv2-ffhq", "ncsnv2-deepest", 16,
                        128, 2, "NCSNv2Deepest"),
        ermongroup_pair("NCSN v1 (ngf 64, 28 px, batch 16)", originals, "ncsn-v1-mnist", None, 64, 28, 16,
                        "CondRefineNetDilated"),
        ncsnpp_pair(originals, nf=32, batch=8),
    ]  # fmt: skip
    if only:
        return [pair for pair in found if pair.name.startswith(only)]
    return found[:1] + found[-1:] if quick else found


def check_same_function(pair: Pair) -> float:
    """The largest relative difference between the two networks' scores on one batch (eval mode)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(pair.shape, generator=generator)
    index = torch.randint(len(pair.sigmas), (pair.shape[0],), generator=generator)
    pair.ours.eval(), pair.original.eval()
    with torch.no_grad():
        ours = pair.call_ours(pair.ours, x, index)
        original = pair.call_original(pair.original, x, index)
    return float((ours - original).abs().max() / original.abs().max())


def forward_runner(model, call, shape, sigmas) -> Callable[[], None]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=generator)
    index = torch.randint(len(sigmas), (shape[0],), generator=generator)

    def run():
        with torch.no_grad():
            call(model, x, index)

    model.eval()
    return run


def training_runner(model, call, shape, sigmas) -> Callable[[], None]:
    """One step of denoising score matching (Song & Ermon 2019, eq. 2, weighted by sigma**2), backward, Adam."""
    generator = torch.Generator().manual_seed(2)
    clean = torch.rand(shape, generator=generator)
    index = torch.randint(len(sigmas), (shape[0],), generator=generator)
    sigma = sigmas[index].view(-1, 1, 1, 1)
    noise = torch.randn(shape, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)

    def run():
        output = call(model, clean + sigma * noise, index)
        loss = 0.5 * (output * sigma + noise).pow(2).sum(dim=(1, 2, 3)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    return run


def flops_of(run: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops()


def interleaved_medians(runs: Dict[str, Callable[[], None]], rounds: int, warmup: int) -> Dict[str, float]:
    """Median seconds per call of each run, timed in rounds whose order alternates (ABBA ...)."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            started = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_flops(rounds: int) -> float:
    """The machine's rate on one large, well-shaped convolution (16 x 256 x 32 x 32, 3x3, 256 -> 256), float32, the
    faster of the NCHW and channels-last layouts."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(16, 256, 32, 32)
    runs = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        layout_input = x.contiguous(memory_format=layout)
        layout_conv = copy.deepcopy(conv).to(memory_format=layout)

        def run(layout_conv=layout_conv, layout_input=layout_input):
            with torch.no_grad():
                layout_conv(layout_input)

        runs[str(layout)] = run
    seconds = min(interleaved_medians(runs, rounds, warmup=2).values())
    return flops_of(run) / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", type=Path, required=True, help="folder with the three original repositories")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9, help="timed calls of each network per measurement")
    parser.add_argument("--quick", action="store_true", help="NCSNv2 and NCSN++ only, 3 rounds")
    parser.add_argument("--only", default="", help="only the networks whose name starts so (e.g. 'NCSN v1')")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else args.rounds
    torch.manual_seed(0)

    peak = peak_flops(rounds)
    print(f"torch {torch.__version__}, {args.threads} threads; measured peak (one large 3x3 convolution): "
          f"{peak / 1e9:.1f} GFLOP/s")  # fmt: skip
    print("speed = original's median time / ours (above 1: ours is faster); utilisation = FLOP/s / peak")
    print(f"{'network':45s} {'mode':8s} {'same output':>11s} {'ours ms':>9s} {'orig ms':>9s} {'speed':>6s} "
          f"{'GFLOP/s':>8s} {'of peak':>7s}")  # fmt: skip
    for pair in pairs(args.originals, args.quick, args.only):
        assert sum(p.numel() for p in pair.ours.parameters()) == sum(p.numel() for p in pair.original.parameters())
        difference = check_same_function(pair)
        for mode in ("forward", "training"):
            if mode == "forward":
                runs = {
                    "ours": forward_runner(pair.ours, pair.call_ours, pair.shape, pair.sigmas),
                    "original": forward_runner(pair.original, pair.call_original, pair.shape, pair.sigmas),
                }
            else:
                runs = {
                    "ours": training_runner(pair.ours, pair.call_ours, pair.shape, pair.sigmas),
                    "original": training_runner(pair.original, pair.call_original, pair.shape, pair.sigmas),
                }
            medians = interleaved_medians(runs, rounds, warmup=2)
            rate = flops_of(runs["ours"]) / medians["ours"]
            print(
                f"{pair.name:45s} {mode:8s} {difference:11.1e} {1e3 * medians['ours']:9.1f} "
                f"{1e3 * medians['original']:9.1f} {medians['original'] / medians['ours']:5.2f}x "
                f"{rate / 1e9:8.1f} {rate / peak:6.0%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
