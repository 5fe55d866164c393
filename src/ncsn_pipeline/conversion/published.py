"""The published training configurations, by name: the settings the released checkpoints were trained and
sampled with (from ermongroup/ncsn ``configs/anneal.yml`` and ``runners/anneal_runner.py``, and
ermongroup/ncsnv2 ``configs/*.yml``). Only the sections a conversion reads are kept."""

from __future__ import annotations

from typing import Any, Dict


def _ncsn_v1(dataset: str, image_size: int, channels: int, ngf: int) -> Dict[str, Any]:
    return {
        "data": {"dataset": dataset, "image_size": image_size, "channels": channels, "logit_transform": False},
        "model": {"sigma_begin": 1.0, "sigma_end": 0.01, "num_classes": 10, "batch_norm": False, "ngf": ngf},
    }


def _ncsnv2(
    dataset: str, image_size: int, sigma_begin: float, num_classes: int, step_lr: float, n_steps_each: int
) -> Dict[str, Any]:
    return {
        "sampling": {"step_lr": step_lr, "n_steps_each": n_steps_each, "denoise": True},
        "data": {
            "dataset": dataset,
            "image_size": image_size,
            "channels": 3,
            "logit_transform": False,
            "rescaled": False,
        },
        "model": {
            "sigma_begin": sigma_begin,
            "sigma_end": 0.01,
            "num_classes": num_classes,
            "sigma_dist": "geometric",
            "normalization": "InstanceNorm++",
            "nonlinearity": "elu",
            "ngf": 128,
            "ema": True,
            "ema_rate": 0.999,
            "spec_norm": False,
        },
    }


PUBLISHED_CONFIGS: Dict[str, Dict[str, Any]] = {
    "ncsn-v1-mnist": _ncsn_v1("MNIST", 28, 1, 64),
    "ncsn-v1-cifar10": _ncsn_v1("CIFAR10", 32, 3, 128),
    "ncsn-v1-celeba": _ncsn_v1("CELEBA", 32, 3, 128),
    "ncsnv2-cifar10": _ncsnv2("CIFAR10", 32, 50.0, 232, 6.2e-6, 5),
    "ncsnv2-celeba": _ncsnv2("CELEBA", 64, 90.0, 500, 3.3e-6, 5),
    "ncsnv2-church": _ncsnv2("LSUN", 64, 140.0, 788, 4.9e-6, 4),
    "ncsnv2-bedroom": _ncsnv2("LSUN", 128, 190.0, 1086, 1.8e-6, 3),
    "ncsnv2-tower": _ncsnv2("LSUN", 128, 190.0, 1086, 1.8e-6, 3),
    "ncsnv2-ffhq": _ncsnv2("FFHQ", 256, 348.0, 2311, 9e-7, 3),
}
