"""Published NCSN v1 / NCSNv2 checkpoints -> pipeline folders (``ncsn-convert``), and the architectures they need.

The reference folders (tests/data/reference-checkpoints, copied from the shared fixtures) hold checkpoints in the
original formats. ``original_code_outputs.safetensors`` in each is the output of the original model code
(ermongroup/ncsn @7f27f4a, ermongroup/ncsnv2 @1bcea03) with the checkpoint's model state dict on the folder's
``x`` and ``labels``, computed once outside this repository; ``reference.safetensors`` is the fixture's own.

Tolerance: 1e-4 of the output's largest magnitude. Both sides run the same float32 operations in a different
order (the fused per-level lookup, the loops), and the original code itself differs from the fixture's
``out_ema`` by up to 6.4e-6 relative on the deepest network, so 1e-4 leaves a 15x margin while any wrong mapping
(a swapped key, a missing ``2x - 1``, a missing division by sigma) is off by 30-150 %.
"""

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import HOSTILE_PICKLES, write_wide_ncsnpp_config
from ncsn_pipeline import NCSNPipeline, NCSNScheduler, NCSNScoreModel, VEPredictorCorrectorScheduler, score_schedulers
from ncsn_pipeline.cli import convert as convert_cli
from ncsn_pipeline.conversion import PUBLISHED_CONFIGS, ConversionError, convert_checkpoint, load_original_config
from ncsn_pipeline.modeling_ncsn_v1 import NCSNv1ScoreModel

REFERENCES = Path(__file__).parent / "data" / "reference-checkpoints"
ERMONGROUP = {
    "ncsn-v1-mnist-tiny": ("NCSNv1ScoreModel", None),
    "ncsn-v1-cifar10-tiny": ("NCSNv1ScoreModel", None),
    "ncsnv2-cifar10-tiny": ("NCSNScoreModel", "ncsnv2"),
    "ncsnv2-lsun-tiny": ("NCSNScoreModel", "ncsnv2-deeper"),
    "ncsnv2-ffhq-tiny": ("NCSNScoreModel", "ncsnv2-deepest"),
}
RTOL = 1e-4


def _relative_error(output: torch.Tensor, expected: torch.Tensor) -> float:
    return ((output - expected).abs().max() / expected.abs().max()).item()


def _convert(name: str, tmp_path: Path, weights=None, config=None) -> Path:
    folder = REFERENCES / name
    return convert_checkpoint(
        folder / "checkpoint.pth", config or folder / "config.yml", tmp_path / f"{name}-{weights}", weights=weights
    )


# --------------------------------------------------------------------------------------------------
# Architectures at the published sizes
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: NCSNv1ScoreModel(in_channels=1, sample_size=28, ngf=64), 7_638_657),  # NCSN v1 MNIST
        (lambda: NCSNv1ScoreModel(in_channels=3, sample_size=32, ngf=128), 30_117_635),  # NCSN v1 CIFAR-10
        (lambda: NCSNScoreModel(3, 32, 128), 29_694_083),  # NCSNv2 CIFAR-10
        (lambda: NCSNScoreModel(3, 128, 128, architecture="ncsnv2-deeper"), 83_445_379),  # NCSNv2 LSUN 128
        (lambda: NCSNScoreModel(3, 256, 128, architecture="ncsnv2-deepest"), 94_132_611),  # NCSNv2 FFHQ 256
    ],
)
def test_published_parameter_counts(build, expected):
    with torch.device("meta"):  # no memory for the weights: only their shapes are counted
        model = build()
    assert sum(parameter.numel() for parameter in model.parameters()) == expected


def test_deeper_networks_need_sides_they_can_halve():
    with pytest.raises(ValueError, match="sample_size must be a multiple of 4 for architecture 'ncsnv2-deeper'"):
        NCSNScoreModel(3, 30, 8, architecture="ncsnv2-deeper")
    with pytest.raises(ValueError, match="Unknown architecture 'ncsnv3'"):
        NCSNScoreModel(3, 32, 8, architecture="ncsnv3")
    model = NCSNScoreModel(3, 16, 4, architecture="ncsnv2-deepest")
    with pytest.raises(ValueError, match="multiples of 8 and >= 16, got 20x20"):
        model(torch.zeros(1, 3, 20, 20), 1.0)


def test_ncsn_v1_model_accepts_only_its_levels():
    model = NCSNv1ScoreModel(in_channels=1, sample_size=28, ngf=4, sigma_max=1.0, sigma_min=0.01, num_noise_levels=10)
    levels = model.noise_levels
    x = torch.rand(3, 1, 28, 28)
    per_example = model(x, levels[[0, 4, 9]].float()).sample
    for index, level in enumerate([0, 4, 9]):  # one level per example = each example at its own level
        alone = model(x[index : index + 1], float(levels[level])).sample
        torch.testing.assert_close(per_example[index : index + 1], alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"knows only its 10 training noise levels \[1.0, 0.599484.*got sigma=\[0.5\]"):
        model(x, 0.5)


# --------------------------------------------------------------------------------------------------
# Conversion: outputs of the original code
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ERMONGROUP))
def test_converted_model_reproduces_the_original_code(name, tmp_path):
    reference = load_file(REFERENCES / name / "reference.safetensors")
    original = load_file(REFERENCES / name / "original_code_outputs.safetensors")["out"]
    pipe = NCSNPipeline.from_pretrained(_convert(name, tmp_path))
    class_name, architecture = ERMONGROUP[name]
    assert type(pipe.unet).__name__ == class_name
    assert pipe.unet.config.get("architecture") == architecture
    assert pipe.config.data_range == [0.0, 1.0]
    with torch.no_grad():
        output = pipe.unet(reference["x"], reference["sigmas"]).sample
    assert _relative_error(output, original) < RTOL
    if class_name == "NCSNScoreModel":  # NCSNv2: EMA by default; the fixture's EMA output
        assert _relative_error(output, reference["out_ema"]) < RTOL
        record = json.loads((tmp_path / f"{name}-None" / "conversion.json").read_text())
        assert record["weights"] == "ema" and record["license"] == "mit"


@pytest.mark.parametrize("name", ["ncsnv2-cifar10-tiny", "ncsnv2-ffhq-tiny"])
def test_raw_weights_are_the_model_state_dict(name, tmp_path):
    """``--weights raw`` loads item 0 of the checkpoint; ``ema`` its 5th item over it (swapped here to tell them
    apart, since these fixtures store the same values in both)."""
    folder = REFERENCES / name
    checkpoint = torch.load(folder / "checkpoint.pth", weights_only=True)
    shadow = {key: value + 0.01 * torch.randn_like(value) for key, value in checkpoint[4].items()}
    modified = tmp_path / "checkpoint.pth"
    torch.save([checkpoint[0], checkpoint[1], checkpoint[2], checkpoint[3], shadow], modified)
    reference = load_file(folder / "reference.safetensors")
    original = load_file(folder / "original_code_outputs.safetensors")["out"]
    outputs = {}
    for weights in ("raw", "ema"):
        pipe = NCSNPipeline.from_pretrained(
            convert_checkpoint(modified, folder / "config.yml", tmp_path / weights, weights=weights)
        )
        with torch.no_grad():
            outputs[weights] = pipe.unet(reference["x"], reference["sigmas"]).sample
    assert _relative_error(outputs["raw"], original) < RTOL
    assert _relative_error(outputs["ema"], original) > 100 * RTOL  # really the other weights


def test_ncsn_v1_has_no_ema_weights(tmp_path):
    with pytest.raises(ConversionError, match=r"holds no EMA weights .*\(--weights raw\)"):
        _convert("ncsn-v1-mnist-tiny", tmp_path, weights="ema")
    assert not any(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------------------------------
# Sampling a converted pipeline with every sampler
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ERMONGROUP))
@pytest.mark.parametrize("sampler", sorted(score_schedulers()))
def test_converted_pipeline_samples_with_every_sampler(name, sampler, tmp_path):
    """NCSNv2 (sigma-scaled, any level) runs with every sampler; NCSN v1 runs where the sampler's levels are its
    own and otherwise is refused before sampling, with its levels listed."""
    pipe = NCSNPipeline.from_pretrained(_convert(name, tmp_path))
    pipe.set_progress_bar_config(disable=True)
    levels = pipe.scheduler.config.num_noise_levels
    options = {"NCSNScheduler": {"steps_per_level": 1}, "VEPredictorCorrectorScheduler": {"num_corrector_steps": 1}}
    pipe.scheduler = score_schedulers()[sampler].from_config(pipe.scheduler.config, **options.get(sampler, {}))
    is_v1 = isinstance(pipe.unet, NCSNv1ScoreModel)
    steps = None if is_v1 else 4  # NCSN v1 only on its own 10 levels; NCSNv2 on a short ladder
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        images = pipe(
            batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=steps, output_type="np"
        )
    except ValueError as error:
        assert is_v1 and "knows only its 10 training noise levels" in str(error), error
        assert not calls  # refused before any network call
        return
    assert images.images.shape == (2, *pipe.unet.sample_shape[1:], pipe.unet.sample_shape[0])
    assert len(calls) == pipe.scheduler.num_model_calls
    if is_v1:
        assert levels == 10


def test_ncsn_v1_refuses_a_shorter_ladder_before_sampling(tmp_path):
    pipe = NCSNPipeline.from_pretrained(_convert("ncsn-v1-mnist-tiny", tmp_path))
    with pytest.raises(ValueError, match="knows only its 10 training noise levels"):
        pipe(batch_size=1, num_inference_steps=3)


# --------------------------------------------------------------------------------------------------
# Refusals: unsafe checkpoints, mismatched configs, unknown names, bad paths
# --------------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this would create a file (a stand-in for arbitrary code in a checkpoint)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    state = torch.load(REFERENCES / "ncsnv2-cifar10-tiny" / "checkpoint.pth", weights_only=True)
    hostile = tmp_path / "hostile.pth"
    torch.save([state[0], _Payload(marker)], hostile)
    with pytest.raises(ConversionError, match=r"names __builtin__.getattr, pathlib.* it was not loaded") as error:
        convert_checkpoint(hostile, REFERENCES / "ncsnv2-cifar10-tiny" / "config.yml", tmp_path / "out")
    assert "weights_only=False" not in str(error.value)
    assert not marker.exists() and not (tmp_path / "out").exists()
    with open(tmp_path / "plain.pkl", "wb") as handle:  # a plain pickle, not a torch file
        pickle.dump({"a": 1}, handle)
    with pytest.raises(ConversionError, match="plain.pkl"):
        convert_checkpoint(tmp_path / "plain.pkl", "ncsnv2-cifar10", tmp_path / "out")


@pytest.mark.parametrize("payload, named", HOSTILE_PICKLES)
def test_a_checkpoint_pickle_is_read_opcode_by_opcode_before_it_is_unpickled(tmp_path, monkeypatch, payload, named):
    """As for `.bin` weights: what weights_only would still call (bytearray of 2 GiB, _codecs.encode, set) is named and
    refused before torch.load runs, so a tiny file costs no CPU or memory beyond reading it."""
    checkpoint = tmp_path / "checkpoint.pth"
    checkpoint.write_bytes(payload)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("unpickled before the check"))
    with pytest.raises(ConversionError, match=re.escape(named)):
        convert_checkpoint(checkpoint, "ncsnv2-cifar10", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_config_that_does_not_match_names_keys_and_shapes(tmp_path):
    with pytest.raises(ConversionError) as error:
        _convert("ncsnv2-cifar10-tiny", tmp_path, config=REFERENCES / "ncsnv2-ffhq-tiny" / "config.yml")
    message = str(error.value)
    assert "missing (84): ['refine31." in message  # the deepest network's extra blocks
    assert "of another shape (" in message and "checkpoint (16, 16, 3, 3) vs config (32, 32, 3, 3)" in message
    wider = load_original_config(REFERENCES / "ncsnv2-cifar10-tiny" / "config.yml")
    wider["model"]["ngf"] = 16
    with pytest.raises(
        ConversionError,
        match=r"of another shape .*begin_conv.weight: checkpoint \(8, 3, 3, 3\) vs config \(16, 3, 3, 3\)",
    ):
        _convert("ncsnv2-cifar10-tiny", tmp_path, config=wider)
    assert not any(tmp_path.iterdir())


def test_unknown_config_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ConversionError, match=r"Unknown config 'ncsnv2-imagenet'.*'ncsnv2-bedroom'"):
        convert_checkpoint(REFERENCES / "ncsnv2-cifar10-tiny" / "checkpoint.pth", "ncsnv2-imagenet", tmp_path / "o")


def test_published_configs_by_name(tmp_path):
    """A published name works like the YAML file when the checkpoint has that shape (here: a tiny model in the
    published CIFAR-10 layout)."""
    config = load_original_config("ncsnv2-cifar10")
    assert config["model"]["num_classes"] == 232 and config["sampling"]["step_lr"] == 6.2e-6
    assert set(PUBLISHED_CONFIGS) >= {"ncsn-v1-mnist", "ncsn-v1-cifar10", "ncsnv2-cifar10", "ncsnv2-ffhq"}
    config["model"]["ngf"] = 8
    pipe = NCSNPipeline.from_pretrained(_convert("ncsnv2-cifar10-tiny", tmp_path, config=config))
    # The saved sampler is the package's default; the original's annealed Langevin settings stay in its config.
    assert type(pipe.scheduler).__name__ == "DPMSolverPlusPlusScheduler" and pipe.scheduler.num_model_calls == 50
    assert pipe.scheduler.config.num_train_noise_levels == 232
    original = NCSNScheduler.from_config(pipe.scheduler.config)
    settings = (original.config.num_noise_levels, original.config.steps_per_level, original.config.step_lr)
    assert settings == (232, 5, 6.2e-6)
    assert original.num_model_calls == 1161


def test_existing_output_folder_and_missing_checkpoint(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        convert_checkpoint(REFERENCES / "ncsnv2-cifar10-tiny" / "checkpoint.pth", "ncsnv2-cifar10", tmp_path / "taken")
    with pytest.raises(ConversionError, match="does not exist"):
        convert_checkpoint(tmp_path / "nothing.pth", "ncsnv2-cifar10", tmp_path / "out")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((REFERENCES / "ncsnv2-cifar10-tiny" / "checkpoint.pth").read_bytes()[:5000])
    with pytest.raises(ConversionError, match="not a readable PyTorch checkpoint"):
        convert_checkpoint(truncated, REFERENCES / "ncsnv2-cifar10-tiny" / "config.yml", tmp_path / "out")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken", "truncated.pth"]


# --------------------------------------------------------------------------------------------------
# The command and the card
# --------------------------------------------------------------------------------------------------
def test_command_line_and_card(tmp_path, capsys):
    folder = REFERENCES / "ncsn-v1-cifar10-tiny"
    output = tmp_path / "ncsn-v1-cifar10"
    assert (
        convert_cli.main(
            [str(folder / "checkpoint.pth"), "--config", str(folder / "config.yml"), "--output_dir", str(output)]
        )
        == 0
    )
    assert "NCSNPipeline.from_pretrained" in capsys.readouterr().out
    card = (output / "README.md").read_text()
    assert "license: gpl-3.0" in card and "https://github.com/ermongroup/ncsn" in card
    assert "ncsn-convert checkpoint.pth --config config.yml --output_dir ncsn-v1-cifar10 --weights raw" in card
    assert "# ncsn-v1-cifar10" in card and ".converting" not in card
    assert str(tmp_path) not in card  # no local paths in a card meant for the Hub
    # Errors: one line, exit status 2, nothing written.
    assert (
        convert_cli.main([str(folder / "checkpoint.pth"), "--config", "nope", "--output_dir", str(tmp_path / "x")]) == 2
    )
    assert "ncsn-convert: error: Unknown config 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        convert_cli.main(["--help"])
    text = capsys.readouterr().out
    for option in ("checkpoint", "--config", "--output_dir", "--weights", "ncsnv2-ffhq", "raw"):
        assert option in text
    with pytest.raises(SystemExit):  # abbreviations are refused, as in every CLI of the package
        convert_cli.main(["c.pth", "--conf", "x", "--output_dir", "y"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, config, model_file, model_class, scheduler_class",
    [
        ("ncsn-v1-mnist-tiny", "config.yml", "modeling_ncsn_v1.py", "NCSNv1ScoreModel", "NCSNScheduler"),
        (
            "score-sde-ncsnpp-cifar10-tiny",
            "config.json",
            "modeling_ncsnpp.py",
            "NCSNppScoreModel",
            "DPMSolverPlusPlusScheduler",
        ),
    ],
)
def test_converted_pipeline_exports_for_plain_diffusers(
    name, config, model_file, model_class, scheduler_class, tmp_path
):
    """The Hub layout of a converted pipeline: its own code files, the provenance in the card, and plain diffusers
    (package blocked) samples the same images."""
    import subprocess
    import sys

    from ncsn_pipeline.hub import export_for_hub
    from test_hub_export import PLAIN_DIFFUSERS

    source = REFERENCES / name
    folder = convert_checkpoint(source / "checkpoint.pth", source / config, tmp_path / "converted")
    scheduler_config = folder / "scheduler" / "scheduler_config.json"  # a short run keeps the test fast
    short = {"steps_per_level": 1} if scheduler_class == "NCSNScheduler" else {"num_noise_levels": 5}
    scheduler_config.write_text(json.dumps({**json.loads(scheduler_config.read_text()), **short}))
    export = export_for_hub(folder, tmp_path / "export", repo_id=f"someone/{name}", pipeline_class=NCSNPipeline)
    assert (export / "conversion.json").is_file() and (export / "unet" / model_file).is_file()
    assert json.loads((export / "conversion.json").read_text())["code"] in (export / "README.md").read_text()
    script = PLAIN_DIFFUSERS.replace("num_inference_steps=3", "num_inference_steps=None")
    environment = {
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "HF_HOME": str(tmp_path / "hf"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(export), str(tmp_path / "plain.npy")],
        capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["NCSNPipeline", model_class, scheduler_class]
    pipe = NCSNPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=3, generator=torch.Generator().manual_seed(5), output_type="np").images
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), expected)


# --------------------------------------------------------------------------------------------------
# score_sde NCSN++ -> diffusers' UNet2DModel (the large reference folder, read from ../shared)
# --------------------------------------------------------------------------------------------------
# ../shared next to the checkout (the repository root's parent), as on the development machine and in CI.
LARGE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference-checkpoints-large"
NCSNPP_LARGE = LARGE / "score-sde-ncsnpp-celebahq-nf128"
needs_large = pytest.mark.skipif(
    not (NCSNPP_LARGE / "checkpoint.pth").is_file(),
    reason=f"the 40 MB NCSN++ reference checkpoint is not in this checkout ({NCSNPP_LARGE}); CI has it",
)


@needs_large
@pytest.mark.parametrize("weights", [None, "raw"])
def test_ncsnpp_output_skip_goes_to_unet2dmodel_and_reproduces_the_original(weights, tmp_path):
    """EMA by default (the fixture's out_ema); raw weights give the original code's output with the model state
    dict (the fixture's own out_raw is not reproducible, see tests/data/reference-checkpoints/README.md)."""
    from diffusers import UNet2DModel

    reference = load_file(NCSNPP_LARGE / "reference.safetensors")
    original = load_file(REFERENCES / "score-sde-ncsnpp-celebahq-nf128.original_code_outputs.safetensors")
    folder = convert_checkpoint(
        NCSNPP_LARGE / "checkpoint.pth", NCSNPP_LARGE / "config.json", tmp_path / "ncsnpp", weights=weights
    )
    pipe = NCSNPipeline.from_pretrained(folder)
    assert type(pipe.unet) is UNet2DModel and pipe.unet.config.center_input_sample
    config = pipe.scheduler.config
    assert type(pipe.scheduler).__name__ == "DPMSolverPlusPlusScheduler"  # the default; the original's PC settings:
    original_pc = VEPredictorCorrectorScheduler.from_config(config).config
    assert (original_pc.num_noise_levels, original_pc.snr, original_pc.num_corrector_steps) == (2000, 0.075, 1)
    assert (config.sigma_min, config.sigma_max, config.num_train_noise_levels) == (0.01, 348.0, 2000)
    record = json.loads((folder / "conversion.json").read_text())
    assert record["original_sampler"] == "VEPredictorCorrectorScheduler"
    assert "2000 noise levels" in record["original_sampling"]
    with torch.no_grad():
        output = pipe.unet(reference["x"], reference["sigmas"]).sample
    if weights is None:
        assert _relative_error(output, reference["out_ema"]) < RTOL
        assert _relative_error(output, original["out_ema_weights"]) < RTOL
    else:
        assert _relative_error(output, original["out_raw_weights"]) < RTOL
    card = (folder / "README.md").read_text()
    assert "license: apache-2.0" in card and "score_sde_pytorch" in card and "UNet2DModel" in card
    pipe.set_progress_bar_config(disable=True)
    for sampler in score_schedulers().values():  # a tiny run with every sampler
        pipe.scheduler = sampler.from_config(config)
        images = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
        assert images.images.shape == (1, 16, 16, 3) and np.isfinite(images.images).all()


@needs_large
def test_converted_ncsnpp_exports_as_diffusers_own_unet(tmp_path):
    from ncsn_pipeline.hub import export_for_hub

    folder = convert_checkpoint(NCSNPP_LARGE / "checkpoint.pth", NCSNPP_LARGE / "config.json", tmp_path / "ncsnpp")
    export = export_for_hub(folder, tmp_path / "export", pipeline_class=NCSNPipeline)
    index = json.loads((export / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DModel"] and not (export / "unet" / "modeling_ncsn.py").exists()
    reloaded = NCSNPipeline.from_pretrained(export)
    original = NCSNPipeline.from_pretrained(folder)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.unet(x, 3.0).sample, original.unet(x, 3.0).sample)


@pytest.mark.parametrize("name", ["score-sde-ncsnpp-cifar10-tiny", "score-sde-ncsnpp-celebahq-tiny"])
@pytest.mark.parametrize("weights", [None, "raw"])
def test_ncsnpp_configs_unet2dmodel_cannot_represent_go_to_the_package_model(name, weights, tmp_path):
    """The CIFAR-10 layout (progressive_input 'residual') and small channel counts: NCSNppScoreModel, which gives
    the original code's output (EMA by default: also the fixture's out_ema)."""
    folder = REFERENCES / name
    reference = load_file(folder / "reference.safetensors")
    original = load_file(folder / "original_code_outputs.safetensors")
    converted = convert_checkpoint(folder / "checkpoint.pth", folder / "config.json", tmp_path / "out", weights=weights)
    pipe = NCSNPipeline.from_pretrained(converted)
    assert type(pipe.unet).__name__ == "NCSNppScoreModel"
    with torch.no_grad():
        output = pipe.unet(reference["x"], reference["sigmas"]).sample
    if weights is None:
        assert _relative_error(output, reference["out_ema"]) < RTOL
    assert _relative_error(output, original["out_ema_weights" if weights is None else "out_raw_weights"]) < RTOL
    assert "NCSN++ (`NCSNppScoreModel`" in (converted / "README.md").read_text()
    pipe.set_progress_bar_config(disable=True)
    for sampler in score_schedulers().values():
        pipe.scheduler = sampler.from_config(pipe.scheduler.config)
        images = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
        assert np.isfinite(images.images).all()


def test_ncsnpp_settings_the_package_does_not_build_are_refused(tmp_path):
    folder = REFERENCES / "score-sde-ncsnpp-cifar10-tiny"
    config = load_original_config(folder / "config.json")
    config["model"]["embedding_type"] = "positional"
    with pytest.raises(ConversionError, match="model.embedding_type is 'positional'"):
        convert_checkpoint(folder / "checkpoint.pth", config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ncsnpp_model_checks_its_config():
    from ncsn_pipeline import NCSNppScoreModel

    with pytest.raises(ValueError, match="Unknown progressive_input 'pyramid'"):
        NCSNppScoreModel(sample_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, progressive_input="pyramid")
    with pytest.raises(ValueError, match="sample_size must be a multiple of 4 for 3 levels, got 10"):
        NCSNppScoreModel(sample_size=10, nf=8, ch_mult=(1, 2, 2), num_res_blocks=1)
    model = NCSNppScoreModel(sample_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
    with pytest.raises(ValueError, match="must be finite and > 0"):
        model(torch.rand(1, 3, 8, 8), 0.0)


@pytest.mark.parametrize(
    "name, network, parameters",
    [  # parameter counts of the original NCSNpp built from the same configs (score_sde_pytorch @cb1f359)
        ("ncsnpp-cifar10-ve", "NCSNppScoreModel", 62_758_915),
        ("ncsnpp-deep-cifar10-ve", "NCSNppScoreModel", 107_587_075),
        ("ncsnpp-celebahq-1024-ve", "NCSNppScoreModel", 105_785_896),
        ("ncsnpp-celebahq-256-ve", "UNet2DModel", 65_574_549),
        ("ncsnpp-church-256-ve", "UNet2DModel", 65_574_549),
    ],
)
def test_published_ncsnpp_configs_by_name(name, network, parameters):
    from ncsn_pipeline import NCSNppScoreModel
    from ncsn_pipeline.conversion.score_sde import build_scheduler, ncsnpp_config, unet2d_problems

    config = load_original_config(name)
    assert ("UNet2DModel" if not unet2d_problems(config) else "NCSNppScoreModel") == network
    with torch.device("meta"):
        model = NCSNppScoreModel(**ncsnpp_config(config))
    assert sum(parameter.numel() for parameter in model.parameters()) == parameters
    scheduler = build_scheduler(config)
    assert scheduler.config.num_noise_levels == config["model"]["num_scales"]
    assert scheduler.config.snr == config["sampling"]["snr"]


def test_input_mapping_follows_the_config(tmp_path):
    """``rescaled`` data is fed as it is (range [-1, 1]); ``logit_transform`` is refused; otherwise 2x - 1."""
    folder = REFERENCES / "ncsnv2-cifar10-tiny"
    rescaled = load_original_config(folder / "config.yml")
    rescaled["data"]["rescaled"] = True
    pipe = NCSNPipeline.from_pretrained(_convert("ncsnv2-cifar10-tiny", tmp_path, config=rescaled))
    assert pipe.unet.config.center_input is False and pipe.config.data_range == [-1.0, 1.0]
    reference = load_file(folder / "reference.safetensors")
    original = load_file(folder / "original_code_outputs.safetensors")["out"]
    with torch.no_grad():  # fed 2x - 1 by hand, the rescaled model computes what the original does on x
        output = pipe.unet(2 * reference["x"] - 1, reference["sigmas"]).sample
    assert _relative_error(output, original) < RTOL
    logit = load_original_config(folder / "config.yml")
    logit["data"]["logit_transform"] = True
    with pytest.raises(ConversionError, match="logit_transform is true"):
        _convert("ncsnv2-cifar10-tiny", tmp_path / "logit", config=logit)


# --------------------------------------------------------------------------------------------------
# Hostile configs (issue 21): not regular files, aliases, markup for the card
# --------------------------------------------------------------------------------------------------
def _config_text(name: str = "ncsnv2-cifar10-tiny") -> str:
    return (REFERENCES / name / "config.yml").read_text()


def test_a_config_that_is_not_a_regular_file_or_too_big_is_refused(tmp_path, capsys):
    import os

    fifo = tmp_path / "config.yml"
    os.mkfifo(fifo)  # reading it would block forever
    checkpoint = REFERENCES / "ncsnv2-cifar10-tiny" / "checkpoint.pth"
    with pytest.raises(ConversionError, match="is not a regular file"):
        load_original_config(fifo)
    with pytest.raises(ConversionError, match="is not a regular file"):
        load_original_config("/dev/zero")  # endless
    big = tmp_path / "big.yml"
    big.write_text(_config_text() + "# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConversionError, match="over 1,048,576 bytes"):
        load_original_config(big)
    assert convert_cli.main([str(checkpoint), "--config", str(fifo), "--output_dir", str(tmp_path / "out")]) == 2
    assert "is not a regular file" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    """A 7-level alias chain in data.dataset once wrote a 72 MB conversion.json and a 144 MB card."""
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    text = "\n".join(levels) + "\n" + _config_text().replace("dataset: CIFAR10", "dataset: *a7")
    bomb = tmp_path / "bomb.yml"
    bomb.write_text(text)
    assert bomb.stat().st_size < 5000
    with pytest.raises(ConversionError, match=r"uses a YAML alias \(\*a0, line 2\)"):
        load_original_config(bomb)


@pytest.mark.parametrize(
    "dataset",
    ['"<img src=x onerror=alert(1)>"', '"CIFAR10\\n# Fake heading\\nlicense: mit"', "[1, 2]", '"' + "A" * 65 + '"'],
)
def test_a_dataset_name_that_is_not_a_plain_name_is_refused(dataset, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(_config_text().replace("dataset: CIFAR10", f"dataset: {dataset}"))
    folder = REFERENCES / "ncsnv2-cifar10-tiny"
    with pytest.raises(ConversionError, match="data.dataset must be a plain name of at most 64") as error:
        convert_checkpoint(folder / "checkpoint.pth", config, tmp_path / "out")
    assert len(str(error.value)) < 300 and not (tmp_path / "out").exists()


def test_record_values_reach_the_card_escaped(tmp_path):
    """Whatever a folder's records hold, the card shows it as text: no HTML, no new lines, headings or table rows."""
    from ncsn_pipeline.folder_records import write_evaluation
    from ncsn_pipeline.hub import render_model_card

    folder = _convert("ncsnv2-cifar10-tiny", tmp_path)
    write_evaluation(
        folder,
        metrics=[{"name": "<script>alert(1)</script> | injected | row", "value": 1.0}],
        reference_label="# Heading\nfloor",
        notes="<b>bold</b>\n---\nlicense: mit",
        command="ncsn-eval `rm -rf /` <this folder>",
    )
    card = render_model_card(folder).text
    assert "<script>" not in card and "<b>" not in card and "# Heading" not in card.replace("\\# Heading", "")
    assert "&lt;script>alert(1)&lt;/script> \\| injected \\| row" in card
    assert "\nlicense: mit" not in card.split("---", 2)[2]  # no metadata-looking line below the real metadata
    assert "Measured with `ncsn-eval 'rm -rf /' <this folder>`" in card  # a code span keeps <>, loses backticks


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_a_signal_while_writing_leaves_nothing_and_stale_staging_is_removed(signal_name, tmp_path, monkeypatch, capsys):
    """SIGTERM / SIGHUP once left the hidden staging folder (114 MB for an NCSNv2 CIFAR-10 checkpoint) that no later
    run removed; now the write is cleaned up, and a later run removes what a killed one left."""
    import os
    import signal

    from ncsn_pipeline.conversion import convert as convert_module

    folder = REFERENCES / "ncsnv2-cifar10-tiny"
    output = tmp_path / "out"
    stale = tmp_path / ".out.converting-999999"  # a conversion killed outright (no such process)
    stale.mkdir()
    (stale / "model_index.json").write_text("{}")
    real_write = convert_module.write_conversion

    def write_then_signal(staging, record):
        real_write(staging, record)
        os.kill(os.getpid(), getattr(signal, signal_name))  # arrives while the staging folder is half written

    monkeypatch.setattr(convert_module, "write_conversion", write_then_signal)
    number = getattr(signal, signal_name)
    outer = signal.signal(number, signal.SIG_DFL)  # as in a terminal (under nohup, SIGHUP is ignored: see below)
    try:
        arguments = [
            str(folder / "checkpoint.pth"),
            "--config",
            str(folder / "config.yml"),
            "--output_dir",
            str(output),
        ]
        assert convert_cli.main(arguments) == 128 + number
        assert f"{signal_name} received" in capsys.readouterr().err
        assert sorted(path.name for path in tmp_path.iterdir()) == []  # no staging, no output, the stale one gone
        assert signal.getsignal(number) is signal.SIG_DFL  # the handler is put back
        # A signal the process ignores (nohup) stays ignored: the conversion runs to the end.
        signal.signal(number, signal.SIG_IGN)
        assert convert_cli.main(arguments) == 0 and (output / "model_index.json").is_file()
        assert signal.getsignal(number) is signal.SIG_IGN
    finally:
        signal.signal(number, outer)


@pytest.mark.parametrize(
    "edit, message",
    [
        (("model", "ngf", "wide"), "ncsn-convert: error: "),
        (("model", "ngf", [64]), "ncsn-convert: error: "),
        (("data", "image_size", None), "ncsn-convert: error: "),
        (("model", None, "not a section"), "ncsn-convert: error: "),
    ],
)
def test_configs_of_the_wrong_shape_end_in_one_line_not_a_traceback(edit, message, tmp_path, capsys):
    import yaml

    folder = REFERENCES / "ncsnv2-cifar10-tiny"
    config = yaml.safe_load((folder / "config.yml").read_text())
    section, key, value = edit
    if key is None:
        config[section] = value
    else:
        config[section][key] = value
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    arguments = [str(folder / "checkpoint.pth"), "--config", str(path), "--output_dir", str(tmp_path / "out")]
    assert convert_cli.main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_expands_far_beyond_its_size_is_refused_before_loading(tmp_path):
    """A deflated zip entry of zeros once made the converter allocate ~1 GB per MB of file; the zip directory says
    how much an entry expands to, so the check costs nothing."""
    import zipfile

    plain = tmp_path / "plain.pth"
    torch.save({"weights": torch.zeros(4 * 2**20)}, plain)  # 16 MB of zeros, stored as torch.save does
    forged = tmp_path / "checkpoint.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(forged, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    assert forged.stat().st_size < 2**20
    folder = REFERENCES / "ncsnv2-cifar10-tiny"
    with pytest.raises(ConversionError, match=r"expands to 16,7\d\d,\d\d\d bytes from"):
        convert_checkpoint(forged, folder / "config.yml", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_ncsnpp_config_that_would_build_a_huge_network_is_refused(tmp_path):
    """The package's NCSN++ refused nf > 256, diffusers' UNet2DModel path had no limit (nf = 4096: many GB)."""
    checkpoint, huge = write_wide_ncsnpp_config(tmp_path, nf=4096)
    with pytest.raises(ConversionError, match="nf must be a whole number from 4 to 256, got 4096"):
        convert_checkpoint(checkpoint, huge, tmp_path / "out")
    checkpoint, huge = write_wide_ncsnpp_config(tmp_path, nf=128, ch_mult=[1, 64])
    with pytest.raises(ConversionError, match="8192 channels at the widest level; at most 2048"):
        convert_checkpoint(checkpoint, huge, tmp_path / "out")


@pytest.mark.parametrize("weights, key", [("ema", "out_ema"), ("raw", "out_raw")])
def test_a_28_pixel_ncsnv2_is_known_by_its_keys_and_reproduces_the_original_code(weights, key, tmp_path):
    """A 28-pixel NCSNv2 (data.dataset MNIST, which the reference's table of four data sets lacks) was refused; its
    network is now read off the checkpoint's keys, and the conversion gives the original code's output (made with
    ermongroup/ncsnv2's own models, tests/data/reference-checkpoints/README.md), raw and EMA weights alike."""
    name = "ncsnv2-mnist28-tiny"
    reference = load_file(REFERENCES / name / "reference.safetensors")
    pipe = NCSNPipeline.from_pretrained(_convert(name, tmp_path, weights=weights))
    assert type(pipe.unet).__name__ == "NCSNScoreModel" and pipe.unet.config.architecture == "ncsnv2"
    assert pipe.sample_shape == (1, 28, 28)
    with torch.no_grad():
        output = pipe.unet(reference["x"], reference["sigmas"]).sample
    assert _relative_error(output, reference[key]) < RTOL
    assert _relative_error(reference["out_raw"], reference["out_ema"]) > 0.01  # the two weight sets do differ


def test_architecture_override_and_inference_from_keys(tmp_path, capsys):
    from ncsn_pipeline.conversion.ermongroup import ncsnv2_architecture

    config = {"data": {"dataset": "MNIST"}}
    assert ncsnv2_architecture(config, ["res1.0.conv1.weight", "res4.1.conv2.weight"]) == "ncsnv2"
    assert ncsnv2_architecture(config, ["res5.0.conv1.weight"]) == "ncsnv2-deeper"
    assert ncsnv2_architecture(config, ["res5.0.conv1.weight", "res31.0.conv1.weight"]) == "ncsnv2-deepest"
    assert ncsnv2_architecture({"data": {"dataset": "lsun"}}, ["res1.0.conv1.weight"]) == "ncsnv2-deeper"  # dataset
    assert ncsnv2_architecture(config, [], "ncsnv2-deepest") == "ncsnv2-deepest"  # the override wins
    with pytest.raises(ConversionError, match="pass --architecture"):
        ncsnv2_architecture(config)
    # The override reaches the network (a wrong one is then named by the weights that do not fit) and the record.
    folder = REFERENCES / "ncsnv2-mnist28-tiny"
    arguments = [str(folder / "checkpoint.pth"), "--config", str(folder / "config.yml")]
    assert convert_cli.main([*arguments, "--output_dir", str(tmp_path / "a"), "--architecture", "ncsnv2-deeper"]) == 2
    assert "does not match the model its config describes" in capsys.readouterr().err
    assert convert_cli.main([*arguments, "--output_dir", str(tmp_path / "b"), "--architecture", "ncsnv2"]) == 0
    assert "--architecture ncsnv2" in json.loads((tmp_path / "b" / "conversion.json").read_text())["command"]
    sde = REFERENCES / "score-sde-ncsnpp-cifar10-tiny"
    code = convert_cli.main([str(sde / "checkpoint.pth"), "--config", str(sde / "config.json"), "--output_dir",
                             str(tmp_path / "c"), "--architecture", "ncsnv2"])  # fmt: skip
    assert code == 2 and "this is a score-SDE NCSN++" in capsys.readouterr().err


def test_a_write_error_while_saving_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Issue 21, item 1: a full disk or a file-size limit while the weights are written raised safetensors'
    SafetensorError, which escaped main() as a traceback; now one line, exit 1, no output and no staging folder."""
    import safetensors.torch
    from safetensors import SafetensorError

    def disk_full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    folder = REFERENCES / "ncsnv2-cifar10-tiny"
    output = tmp_path / "out"
    arguments = [str(folder / "checkpoint.pth"), "--config", str(folder / "config.yml"), "--output_dir", str(output)]
    assert convert_cli.main(arguments) == 1
    err = capsys.readouterr().err
    assert err.startswith("ncsn-convert: error: ") and "StorageFull" in err and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither the output nor a hidden staging folder
