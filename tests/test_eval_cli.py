"""``ncsn-eval``: samples, bits/dim and speed in one report, and the card rows it records."""

import json
import shutil

import pytest
import torch

from ncsn_pipeline.cli import evaluate
from ncsn_pipeline.folder_records import read_evaluation
from ncsn_pipeline.hub import render_model_card
from ncsn_pipeline.hub.model_card import _format_number
from ncsn_pipeline.pretrained import pretrained_path

SMALL = ["--num_samples", "20", "--batch_size", "10", "--data", "digits", "--likelihood_samples", "4"]
FAST_ODE = ["--tolerance", "1e-3"]


def test_every_option_is_explained_in_help(capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    text = capsys.readouterr().out
    for action in evaluate.build_parser()._actions:
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in text


def test_a_run_records_what_the_card_shows(tmp_path):
    folder = shutil.copytree(pretrained_path("ncsn-digits"), tmp_path / "digits")
    (folder / "evaluation.json").unlink()
    output = tmp_path / "run.json"
    assert evaluate.main([str(folder), *SMALL, *FAST_ODE, "--output", str(output), "--record"]) == 0
    report = json.loads(output.read_text())
    recorded = read_evaluation(folder)
    assert recorded["metrics"] == report["card"]["metrics"]  # the JSON it writes is what the card shows
    names = [metric["name"] for metric in recorded["metrics"]]
    assert names[0].startswith("confident-classification rate") and "network calls per sample" in names
    assert any(name.startswith("bits per dimension (digits, held out") for name in names)
    assert report["sampling"]["network_calls_per_sample"] == 50  # the bundled model's default sampler
    likelihood = report["likelihood"]
    assert likelihood["num_examples"] == 4 and 0.5 < likelihood["bits_per_dim"] < 4.1  # below log2(17) = 4.09
    assert recorded["command"].startswith("ncsn-eval <this folder> --num_samples 20 --seed 0")
    card = render_model_card(folder, repo_id="user/digits").text
    # The card's own rounding (4 significant digits): a fixed 3 failed whenever the 4th digit made them differ.
    assert "bits per dimension (digits, held out" in card and _format_number(likelihood["bits_per_dim"]) in card


def test_a_sampler_can_be_chosen_and_its_calls_are_reported(tmp_path):
    output = tmp_path / "run.json"
    arguments = ["ncsn-digits", "--num_samples", "10", "--sampler", "AdaptiveSDEScheduler", "--output", str(output)]
    assert evaluate.main(arguments) == 0
    report = json.loads(output.read_text())
    assert "adaptive-step SDE solver" in report["sampler"] and "likelihood" not in report
    assert report["sampling"]["network_calls_per_sample"] == report["sampling"]["model_calls_per_batch"][0] > 10


def test_a_float32_evaluation_prints_no_casting_warning(tmp_path):
    """diffusers' `ModelMixin.to` warns "modules ... should be kept in float32" whenever a dtype is passed, even the
    model's own: an ordinary float32 evaluation must not show users that warning."""
    import logging

    warnings_seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings_seen.append(record.getMessage())
    logging.getLogger("diffusers").addHandler(handler)  # diffusers' logger does not propagate to pytest's
    try:
        output = tmp_path / "run.json"
        arguments = ["ncsn-digits", "--num_samples", "10", "--num_inference_steps", "5", "--output", str(output)]
        assert evaluate.main(arguments) == 0
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert not [message for message in warnings_seen if "should be kept in float32" in message], warnings_seen
    report = json.loads(output.read_text())
    assert report["dtype"] == "float32"
    # 10 samples with the default --batch_size 100: one batch of 10, and the row says so (it said "batch 100").
    assert "seconds per sample (batch 10, cpu)" in json.dumps(report)


def test_a_bfloat16_evaluation_samples_in_bfloat16_and_says_so(tmp_path, monkeypatch):
    """Issue 23, item 3: ``--dtype bfloat16`` runs the network in bfloat16 (the judge's figures of such a run are the
    README's) and the report names the precision."""
    from ncsn_pipeline import NCSNScoreModel

    seen = []
    original_forward = NCSNScoreModel.forward

    def recording_forward(self, sample, *args, **kwargs):
        seen.append((sample.dtype, self.dtype))
        return original_forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(NCSNScoreModel, "forward", recording_forward)
    output = tmp_path / "run.json"
    arguments = ["ncsn-digits", "--num_samples", "10", "--num_inference_steps", "5", "--dtype", "bfloat16"]
    assert evaluate.main([*arguments, "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["dtype"] == "bfloat16" and 0 <= report["digits"]["samples"]["confident_rate"] <= 1
    assert seen and set(seen) == {(torch.bfloat16, torch.bfloat16)}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["no-such-model"], "'no-such-model' is neither a named model ("),
        (["ncsn-digits", "--data", "cifar10"], "Unknown --data 'cifar10'; choose one of"),
        (["ncsn-toy", "--record"], "--record writes a local folder's evaluation.json; 'ncsn-toy' has no local"),
        (["ncsn-digits", "--skip_samples"], "Nothing to evaluate: --skip_samples without --data"),
        (["ncsn-toy", "--skip_samples", "--data", "digits"], "--data needs an image pipeline (this one makes raw"),
        (["ncsn-digits", "--output", "report.txt"], "--output must name a .json file"),
        (["ncsn-digits", "--tolerance", "0"], "--tolerance must be a positive finite number, got 0.0"),
        (["ncsn-digits", "--dtype", "bfloat16", "--record"], "--dtype bfloat16 evaluates samples only: --record"),
        (["ncsn-digits", "--dtype", "bfloat16", "--data", "digits"], "--dtype bfloat16 evaluates samples only"),
        (["ncsn-digits", "--dtype", "float64"], "argument --dtype: invalid choice: 'float64'"),
    ],
)
def test_bad_arguments_exit_with_a_message(arguments, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(arguments)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "evaluation-run.json").exists()


def test_bits_per_dim_of_an_image_folder(tmp_path):
    """8-bit images of any size are prepared as ncsn-train prepares them and dequantized over 256 levels."""
    import numpy as np
    from PIL import Image

    from ncsn_pipeline.data.digits import load_digits_split

    folder = tmp_path / "held-out images"
    folder.mkdir()
    for index, digit in enumerate(load_digits_split("held_out")[0][:3]):
        pixels = (digit[0].numpy().astype(np.float64) * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels).resize((16, 16)).save(folder / f"{index}.png")  # resized back to 8 x 8
    output = tmp_path / "run.json"
    arguments = ["ncsn-digits", "--skip_samples", "--data", str(folder), *FAST_ODE, "--output", str(output)]
    assert evaluate.main(arguments) == 0
    likelihood = json.loads(output.read_text())["likelihood"]
    assert likelihood["num_examples"] == 3 and "8-bit" in likelihood["data"]
    assert str(tmp_path) not in likelihood["data"]  # no local path in what a card may show
    assert 0 < likelihood["bits_per_dim"] < 8  # 8 bits/dim is a flat density
    with pytest.raises(SystemExit):
        evaluate.main(["ncsn-digits", "--skip_samples", "--data", str(tmp_path / "run.json")])


def test_frechet_distance_in_a_user_given_feature_network(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from ncsn_pipeline.data.digits import load_digits_split

    network_file = tmp_path / "features.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8))).save(str(network_file))
    reference = tmp_path / "real digits"
    reference.mkdir()
    for index, digit in enumerate(load_digits_split("held_out")[0][:40]):
        Image.fromarray((digit[0].numpy() * 255 / 16).round().astype(np.uint8)).save(reference / f"{index}.png")
    output = tmp_path / "run.json"
    arguments = ["ncsn-digits", "--num_samples", "30", "--feature_network", str(network_file)]
    assert evaluate.main([*arguments, "--reference", str(reference), "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["feature_frechet_distance"]["value"] > 0
    assert report["feature_frechet_distance"]["features"] == "features.pt features to 40 images of real digits"
    rows = [row["name"] for row in report["card"]["metrics"]]
    assert any(name.startswith("Fréchet distance in features.pt features") for name in rows)
    with pytest.raises(SystemExit):  # one without the other
        evaluate.main(["ncsn-digits", "--feature_network", str(network_file), "--output", str(output)])


def test_the_judge_is_chosen_by_the_training_record_or_the_shape(tmp_path):
    import json as json_module

    from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler, NCSNScoreModel
    from ncsn_pipeline.evaluation.evaluate import choose_judge
    from ncsn_pipeline.pretrained import load_pretrained

    scheduler = NCSNScheduler(num_noise_levels=3)
    fashion = NCSNPipeline(NCSNScoreModel(in_channels=1, sample_size=28, ngf=8), scheduler, data_range=(0, 1))
    digits = load_pretrained("ncsn-digits")
    points = NCSNPipeline(GaussianMixtureScore.ncsn_toy(), scheduler)
    assert choose_judge("auto", fashion, None) == "fashion-mnist"
    assert choose_judge("auto", digits, None) == "digits" and choose_judge("auto", points, None) == "none"
    # A 56x56 model trained on Fashion-MNIST: its record says so.
    big = NCSNPipeline(NCSNScoreModel(in_channels=1, sample_size=56, ngf=8), scheduler, data_range=(0, 1))
    (tmp_path / "training_args.json").write_text(json_module.dumps({"args": {"dataset_name": "fashion-mnist"}}))
    assert choose_judge("auto", big, tmp_path) == "fashion-mnist" and choose_judge("auto", big, None) == "digits"
    assert choose_judge("none", digits, None) == "none"
    with pytest.raises(ValueError, match="Unknown judge 'mnist'; choose one of"):
        choose_judge("mnist", digits, None)


def _stand_in_inception(path):
    """A TorchScript file with the interface of NVlabs' Inception (see tests/test_inception_metrics.py)."""
    import torch

    class StandIn(torch.nn.Module):
        def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)

    torch.jit.script(StandIn()).save(str(path))
    return path


def test_fid_and_kid_against_a_reference_folder_reach_the_card(tmp_path):
    pytest.importorskip("torchmetrics")
    import numpy as np
    from PIL import Image

    from ncsn_pipeline.data.digits import load_digits_split

    inception = _stand_in_inception(tmp_path / "inception-2015-12-05.pt")
    reference = tmp_path / "real digits"
    reference.mkdir()
    for index, digit in enumerate(load_digits_split("held_out")[0][:30]):
        Image.fromarray((digit[0].numpy() * 255 / 16).round().astype(np.uint8)).save(reference / f"{index}.png")
    folder = shutil.copytree(pretrained_path("ncsn-digits"), tmp_path / "digits")
    output = tmp_path / "run.json"
    arguments = [str(folder), "--num_samples", "30", "--fid", "--inception", str(inception), "--reference"]
    assert evaluate.main([*arguments, str(reference), "--output", str(output), "--record", "--judge", "none"]) == 0
    report = json.loads(output.read_text())
    assert report["inception"]["samples"]["fid"] > 0 and report["inception"]["samples"]["num_reference"] == 30
    names = [row["name"] for row in read_evaluation(folder)["metrics"]]
    assert names[:2] == [
        "FID (Inception, 30 samples vs 30 images of real digits; lower is better)",
        "KID (Inception, subsets of 30; lower is better)",
    ]
    assert "FID (Inception, 30 samples" in render_model_card(folder).text
    assert read_evaluation(folder)["command"].endswith("--judge none --fid --reference real digits")


# ------------------------------------------------------------------------------------------------ hostile inputs


def test_a_feature_network_with_setstate_is_refused_unloaded_and_before_sampling(tmp_path, capsys, monkeypatch):
    """TorchScript's __setstate__ runs as the file loads (it can write files through torch.from_file): ncsn-eval
    reads the archive's code first and refuses it, and loads any feature network only after sampling."""
    from typing import Tuple

    import torch

    class Sneaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.ones(1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.flatten(1) * self.scale

        @torch.jit.export
        def __getstate__(self) -> Tuple[torch.Tensor, bool]:
            return (self.scale, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
            self.scale = state[0]
            self.training = state[1]

    sneaky = tmp_path / "sneaky.pt"
    torch.jit.script(Sneaky()).save(str(sneaky))
    loads = []
    monkeypatch.setattr(torch.jit, "load", lambda *args, **kwargs: loads.append(args) or None)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["ncsn-digits", "--feature_network", str(sneaky), "--reference", str(tmp_path)])
    assert exit_info.value.code == 2 and "defines __setstate__" in capsys.readouterr().err and loads == []
    not_torchscript = tmp_path / "notes.txt"
    not_torchscript.write_text("hello")
    with pytest.raises(SystemExit):
        evaluate.main(["ncsn-digits", "--feature_network", str(not_torchscript), "--reference", str(tmp_path)])
    assert "is not a TorchScript file" in capsys.readouterr().err and loads == []


def test_one_held_out_example_gives_bits_per_dim_without_a_standard_error(tmp_path):
    output = tmp_path / "run.json"
    arguments = ["ncsn-digits", "--skip_samples", "--data", "digits", "--likelihood_samples", "1", *FAST_ODE]
    assert evaluate.main([*arguments, "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["likelihood"]["num_examples"] == 1 and report["likelihood"]["bits_per_dim_standard_error"] is None
    assert "standard error not defined for one example" in report["card"]["notes"]


@pytest.mark.parametrize("flag", ["--fid", "--feature_network"])
def test_a_reference_folder_of_decompression_bombs_and_a_junk_network_stop_the_run_before_sampling(
    flag, tmp_path, capsys, monkeypatch
):
    """Both are read before the first network call: a junk network file (not TorchScript) and a reference folder
    whose only image declares 50000 x 50000 pixels are named at once."""
    from helpers import png_declaring
    from ncsn_pipeline.evaluation import batches

    pytest.importorskip("torchmetrics")
    monkeypatch.setattr(batches, "sample_in_batches", lambda *a, **k: pytest.fail("sampled before checking"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a network")
    network = ["--inception" if flag == "--fid" else "--feature_network"]
    with pytest.raises(SystemExit):
        evaluate.main(["ncsn-digits", *(["--fid"] if flag == "--fid" else []), *network, str(junk),
                       "--reference", str(tmp_path)])  # fmt: skip
    assert "junk.pt' is not a TorchScript file" in capsys.readouterr().err
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    png_declaring(bombs / "bomb.png", 50_000, 50_000)
    good = str(_stand_in_inception(tmp_path / "inception.pt"))
    fid = ["--fid"] if flag == "--fid" else []
    with pytest.raises(SystemExit):
        evaluate.main(["ncsn-digits", *fid, *network, good, "--reference", str(bombs)])
    assert "bomb.png" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["ncsn-digits", "--fid", "--skip_samples", "--data", "digits"], "--fid measures samples"),
        (["ncsn-toy", "--fid"], "--fid needs a pipeline of 1- or 3-channel images"),
        (["ncsn-digits", "--fid", "--inception", "nowhere.pt"], "--inception 'nowhere.pt' is not a file"),
        (["color-glyphs", "--fid", "--inception", "{file}"], "--fid needs real images to compare with"),
        (["ncsn-digits", "--fid", "--inception", "{file}", "--reference", "nowhere"], "is not a folder of images"),
    ],
)
def test_fid_problems_are_named_before_any_sampling(arguments, message, capsys, tmp_path, monkeypatch):
    pytest.importorskip("torchmetrics")
    monkeypatch.chdir(tmp_path)
    file = str(_stand_in_inception(tmp_path / "inception.pt"))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([argument.replace("{file}", file) for argument in arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "evaluation-run.json").exists()


def test_fid_of_a_digits_model_defaults_to_the_held_out_digits_at_one_n(tmp_path):
    """8 x 8 digits models compare with the 359 held-out digits: samples, reference and the floor (real training
    digits) all at min(N, 359), and the report names the network and its resize."""
    pytest.importorskip("torchmetrics")
    output = tmp_path / "run.json"
    inception = _stand_in_inception(tmp_path / "inception.pt")
    arguments = ["ncsn-digits", "--num_samples", "360", "--num_inference_steps", "3", "--judge", "none", "--fid"]
    assert evaluate.main([*arguments, "--inception", str(inception), "--output", str(output)]) == 0
    report = json.loads(output.read_text())["inception"]
    assert report["reference"] == "359 held-out scikit-learn digits"
    assert report["samples"]["num_samples"] == report["samples"]["num_reference"] == report["floor"]["num_samples"]
    assert report["samples"]["num_samples"] == 359 and report["floor"]["fid"] < report["samples"]["fid"]
    assert report["network"] == "nvlabs" and "NVlabs' inception-2015-12-05.pt" in report["note"]


def test_fid_of_a_fashion_mnist_model_defaults_to_the_test_split_with_a_floor(tmp_path):
    pytest.importorskip("torchmetrics")
    from ncsn_pipeline import EDMScoreModel, NCSNPipeline, NCSNScheduler
    from ncsn_pipeline.data.fashion_mnist import DEBIAN_FOLDER, idx_folder_has_split

    if not idx_folder_has_split(DEBIAN_FOLDER, "test"):
        pytest.skip("Debian's dataset-fashion-mnist is absent (.ci/run installs it)")
    model = EDMScoreModel(sample_size=28, block_out_channels=(8, 16), norm_num_groups=4)
    NCSNPipeline(model, NCSNScheduler(sigma_max=20.0, num_noise_levels=3), data_range=(0, 1)).save_pretrained(
        tmp_path / "fashion"
    )
    output = tmp_path / "run.json"
    inception = _stand_in_inception(tmp_path / "inception.pt")
    arguments = [str(tmp_path / "fashion"), "--num_samples", "12", "--num_inference_steps", "3", "--judge", "none"]
    assert evaluate.main([*arguments, "--fid", "--inception", str(inception), "--output", str(output)]) == 0
    inception_report = json.loads(output.read_text())["inception"]
    assert inception_report["reference"] == "12 Fashion-MNIST test images"
    # Real training images against real test images: far closer than an untrained model's samples.
    assert inception_report["floor"]["fid"] < inception_report["samples"]["fid"]
    row = json.loads(output.read_text())["card"]["metrics"][0]
    assert row["reference"] == inception_report["floor"]["fid"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["ncsn-digits", "--num_samples", "1"], "--num_samples must be at least 2 for Fréchet distances"),
        (["ncsn-digits", "--num_samples", "1439"], "--num_samples 1439 is above the 1,438 real training images"),
        (["ncsn-digits", "--num_probes", "1001", "--data", "digits"], "expected an integer from 1 to 1000"),
        (["ncsn-digits", "--data", "no-such-folder"], "Unknown --data 'no-such-folder'"),
    ],
)
def test_limits_are_checked_before_any_sampling(arguments, message, capsys, tmp_path, monkeypatch):
    from ncsn_pipeline.evaluation import batches

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batches, "sample_in_batches", lambda *a, **k: pytest.fail("sampled before checking"))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(arguments)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_log_likelihood_checks_its_settings_before_the_first_solve():
    import torch

    from ncsn_pipeline.pretrained import load_pretrained

    pipe = load_pretrained("ncsn-digits")
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    data = torch.rand(2, 1, 8, 8)
    try:
        for options, message in (
            ({"num_levels": 0}, "num_levels must be an integer >= 2, got 0"),
            ({"num_probes": 5000}, "num_probes must be a whole number from 1 to 1000"),
            ({"divergence": "trace"}, "divergence"),
        ):
            with pytest.raises(ValueError, match=message):
                pipe.log_likelihood(data, **options)
        with pytest.raises(ValueError, match="at least one finite floating-point example"):
            pipe.log_likelihood(torch.zeros(0, 1, 8, 8))
        with pytest.raises(ValueError, match="integer pixels: dequantize them first"):
            pipe.log_likelihood(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    finally:
        hook.remove()
    assert calls == []  # refused before any network call


def test_an_evaluation_runs_from_python_with_a_typed_config(tmp_path):
    """`EvaluationConfig` holds ``ncsn-eval``'s flags (same names and defaults); `run(config)` is the command's work
    without a command line, and a bad field is refused before anything is loaded."""
    from ncsn_pipeline.cli.evaluate import build_parser
    from ncsn_pipeline.evaluation.config import DigitsEvaluationConfig, EvaluationConfig
    from ncsn_pipeline.evaluation.evaluate import run

    parsed = EvaluationConfig(**vars(build_parser().parse_args(["ncsn-digits"])))
    assert parsed == EvaluationConfig(pipeline="ncsn-digits")
    report = run(EvaluationConfig(pipeline="ncsn-digits", num_samples=10, num_inference_steps=5,
                                  output=str(tmp_path / "run.json")))  # fmt: skip
    assert json.loads((tmp_path / "run.json").read_text()) == json.loads(json.dumps(report))
    with pytest.raises(ValueError, match=r"num_samples must be an integer >= 1, got 0\."):
        EvaluationConfig(pipeline="ncsn-digits", num_samples=0).validate()
    with pytest.raises(ValueError, match=r"judge must be one of \['auto', 'digits', 'fashion-mnist', 'none'\]"):
        EvaluationConfig(pipeline="ncsn-digits", judge="x").validate()
    with pytest.raises(ValueError, match=r"--confidence must lie in \(0, 1\), got 1\.5"):
        DigitsEvaluationConfig(pipeline="ncsn-digits", confidence=1.5).validate()
