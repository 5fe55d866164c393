"""The published training configurations, by name: the settings the released checkpoints were trained and
sampled with (from ermongroup/ncsn ``configs/anneal.yml`` and ``runners/anneal_runner.py``, ermongroup/ncsnv2
``configs/*.yml`` and yang-song/score_sde_pytorch ``configs/ve/*_ncsnpp_continuous.py``). Only the sections a
conversion reads are kept."""

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


# score_sde_pytorch's VE NCSN++ configs (configs/ve/*_ncsnpp_continuous.py with their defaults), the keys a
# conversion reads.
_NCSNPP_COMMON = {
    "name": "ncsnpp",
    "attn_resolutions": [16],
    "resblock_type": "biggan",
    "progressive_combine": "sum",
    "fir": True,
    "fir_kernel": [1, 3, 3, 1],
    "resamp_with_conv": True,
    "skip_rescale": True,
    "fourier_scale": 16,
    "scale_by_sigma": True,
    "embedding_type": "fourier",
    "conditional": True,
    "normalization": "GroupNorm",
    "nonlinearity": "swish",
    "attention_type": "ddpm",
    "conv_size": 3,
    "sigma_min": 0.01,
}


def _ncsnpp(data: Dict[str, Any], sampling: Dict[str, Any], model: Dict[str, Any]) -> Dict[str, Any]:
    return {"data": data, "sampling": sampling, "model": {**_NCSNPP_COMMON, **model}}


PUBLISHED_CONFIGS.update(
    {
        "ncsnpp-cifar10-ve": _ncsnpp(
            data={"dataset": "CIFAR10", "image_size": 32, "num_channels": 3, "centered": False},
            sampling={"snr": 0.16, "n_steps_each": 1},
            model={
                "nf": 128,
                "ch_mult": [1, 2, 2, 2],
                "num_res_blocks": 4,
                "progressive": "none",
                "progressive_input": "residual",
                "dropout": 0.1,
                "sigma_max": 50,
                "num_scales": 1000,
            },
        ),
        "ncsnpp-deep-cifar10-ve": _ncsnpp(
            data={"dataset": "CIFAR10", "image_size": 32, "num_channels": 3, "centered": False},
            sampling={"snr": 0.16, "n_steps_each": 1},
            model={
                "nf": 128,
                "ch_mult": [1, 2, 2, 2],
                "num_res_blocks": 8,
                "progressive": "none",
                "progressive_input": "residual",
                "dropout": 0.1,
                "sigma_max": 50,
                "num_scales": 1000,
            },
        ),
        "ncsnpp-celebahq-256-ve": _ncsnpp(
            data={"dataset": "CelebAHQ", "image_size": 256, "num_channels": 3, "centered": False},
            sampling={"snr": 0.075, "n_steps_each": 1},
            model={
                "nf": 128,
                "ch_mult": [1, 1, 2, 2, 2, 2, 2],
                "num_res_blocks": 2,
                "progressive": "output_skip",
                "progressive_input": "input_skip",
                "dropout": 0.0,
                "sigma_max": 348,
                "num_scales": 2000,
            },
        ),
        "ncsnpp-ffhq-256-ve": _ncsnpp(
            data={"dataset": "FFHQ", "image_size": 256, "num_channels": 3, "centered": False},
            sampling={"snr": 0.075, "n_steps_each": 1},
            model={
                "nf": 128,
                "ch_mult": [1, 1, 2, 2, 2, 2, 2],
                "num_res_blocks": 2,
                "progressive": "output_skip",
                "progressive_input": "input_skip",
                "dropout": 0.0,
                "sigma_max": 348,
                "num_scales": 2000,
            },
        ),
        "ncsnpp-ffhq-1024-ve": _ncsnpp(
            data={"dataset": "FFHQ", "image_size": 1024, "num_channels": 3, "centered": False},
            sampling={"snr": 0.15, "n_steps_each": 1},
            model={
                "nf": 16,
                "ch_mult": [1, 2, 4, 8, 16, 32, 32, 32],
                "num_res_blocks": 1,
                "progressive": "output_skip",
                "progressive_input": "input_skip",
                "dropout": 0.0,
                "sigma_max": 1348,
                "num_scales": 2000,
            },
        ),
        "ncsnpp-church-256-ve": _ncsnpp(
            data={"dataset": "LSUN", "image_size": 256, "num_channels": 3, "centered": False},
            sampling={"snr": 0.075, "n_steps_each": 1},
            model={
                "nf": 128,
                "ch_mult": [1, 1, 2, 2, 2, 2, 2],
                "num_res_blocks": 2,
                "progressive": "output_skip",
                "progressive_input": "input_skip",
                "dropout": 0.0,
                "sigma_max": 380,
                "num_scales": 2000,
            },
        ),
        "ncsnpp-bedroom-256-ve": _ncsnpp(
            data={"dataset": "LSUN", "image_size": 256, "num_channels": 3, "centered": False},
            sampling={"snr": 0.075, "n_steps_each": 1},
            model={
                "nf": 128,
                "ch_mult": [1, 1, 2, 2, 2, 2, 2],
                "num_res_blocks": 2,
                "progressive": "output_skip",
                "progressive_input": "input_skip",
                "dropout": 0.0,
                "sigma_max": 378,
                "num_scales": 2000,
            },
        ),
        "ncsnpp-celebahq-1024-ve": _ncsnpp(
            data={"dataset": "CelebAHQ", "image_size": 1024, "num_channels": 3, "centered": False},
            sampling={"snr": 0.15, "n_steps_each": 1},
            model={
                "nf": 16,
                "ch_mult": [1, 2, 4, 8, 16, 32, 32, 32],
                "num_res_blocks": 1,
                "progressive": "output_skip",
                "progressive_input": "input_skip",
                "dropout": 0.0,
                "sigma_max": 1348,
                "num_scales": 2000,
            },
        ),
    }
)
