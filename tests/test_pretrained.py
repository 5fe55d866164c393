"""The bundled pretrained pipelines: they load offline, sample, and their committed cards are current."""

import json
from pathlib import Path

import pytest
import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline
from ncsn_pipeline.hub import render_model_card
from ncsn_pipeline.pretrained import guided_names, load_pipeline, load_pretrained, pretrained_names, pretrained_path

BUNDLED = ["ncsn-digits", "ncsn-digits-classes", "ncsn-fashion", "ncsn-two-gaussians"]


def test_the_bundled_models_are_shipped():
    assert pretrained_names() == BUNDLED
    total_bytes = sum(path.stat().st_size for name in BUNDLED for path in pretrained_path(name).rglob("*"))
    assert total_bytes < 16 * 2**20  # a few MB each (ncsn-fashion: 4.5 MB of weights)
    with pytest.raises(ValueError, match=r"Unknown pretrained model 'nope'; the package ships \['ncsn-digits'"):
        pretrained_path("nope")


GUIDED = ["ncsn-digits"]  # the bundled models that ship a guide for autoguidance (README: where it helped)


@pytest.mark.parametrize("name", GUIDED)
def test_a_bundled_guide_is_a_weaker_model_of_the_same_data_and_noise_levels(name):
    assert guided_names() == GUIDED
    model, guide = load_pretrained(name), load_pipeline(f"{name}/guide")
    assert type(guide.unet) is type(model.unet) and tuple(guide.sample_shape) == tuple(model.sample_shape)
    assert sum(p.numel() for p in guide.unet.parameters()) < sum(p.numel() for p in model.unet.parameters()) / 2
    for key in ("sigma_max", "sigma_min"):
        assert guide.scheduler.config[key] == model.scheduler.config[key], key
    assert getattr(guide.unet, "num_classes", None) == getattr(model.unet, "num_classes", None)


def test_a_bundled_model_without_a_guide_says_which_have_one():
    unguided = next(name for name in BUNDLED if name not in GUIDED)
    with pytest.raises(ValueError, match=rf"'{unguided}' ships no guide for autoguidance; the bundled models with one"):
        load_pipeline(f"{unguided}/guide")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_pipeline_loads_offline_and_is_deterministic(name):
    pipe = load_pretrained(name)
    pipe.set_progress_bar_config(disable=True)
    record = json.loads((pretrained_path(name) / "training_args.json").read_text())
    assert record["command"].startswith("ncsn-train ")
    kwargs = dict(batch_size=2, num_inference_steps=3, output_type="pt")
    if getattr(pipe.unet, "num_classes", None) is not None:
        kwargs["class_labels"] = [3, 8]
    first = pipe(generator=torch.Generator().manual_seed(3), **kwargs).images
    second = pipe(generator=torch.Generator().manual_seed(3), **kwargs).images
    assert torch.equal(first, second) and torch.isfinite(first).all()


@pytest.mark.parametrize("name", BUNDLED)
def test_committed_model_card_matches_its_template_and_records(name):
    folder = pretrained_path(name)
    rendered = str(render_model_card(folder, repo_id=f"ncsn-pipeline/{name}"))
    committed = (folder / "README.md").read_text(encoding="utf-8")
    assert committed == rendered, f"{folder}/README.md is stale: run python benchmarks/evaluate_bundled_models.py"
    assert "library_name: diffusers" in committed and "pipeline_tag: unconditional-image-generation" in committed
    assert "| Metric | This model |" in committed  # measured evaluation numbers are in the card


@pytest.mark.slow
def test_bundled_toy_model_recovers_the_mode_weights():
    pipe = NCSNPipeline.from_pretrained(pretrained_path("ncsn-two-gaussians"))
    pipe.set_progress_bar_config(disable=True)
    points = pipe(batch_size=4000, generator=torch.Generator().manual_seed(1), output_type="pt").images
    # Binomial standard error 0.0063; sampler bias -0.011 with the exact score; 0.04 leaves room for the model.
    assert GaussianMixtureScore.ncsn_toy().mode_weights(points)[1] == pytest.approx(0.8, abs=0.04)


def test_the_bundled_classifier_loads_and_is_accurate_on_slightly_noisy_held_out_digits():
    from ncsn_pipeline.data.digits import load_digits_split
    from ncsn_pipeline.demo.inpainting import held_out_image
    from ncsn_pipeline.pretrained import classifier_names, load_pretrained_classifier
    from ncsn_pipeline.training.classifier import accuracy_by_noise_level

    assert classifier_names() == ["ncsn-digits-classifier"]
    classifier = load_pretrained_classifier("ncsn-digits-classifier")
    images = torch.stack([held_out_image("digits", index, 1, 8) for index in range(359)])
    labels = load_digits_split("held_out")[1]
    (result,) = accuracy_by_noise_level(classifier, images, labels, [0.05])
    assert result["accuracy"] > 0.95  # recorded: 0.989 at sigma 0.047
    with pytest.raises(ValueError, match=r"Unknown classifier 'nope'; the package ships \['ncsn-digits-classifier'\]"):
        load_pretrained_classifier("nope")


def _metric(evaluation, prefix):
    (row,) = [row for row in evaluation["metrics"] if row["name"].startswith(prefix)]
    return row


def test_ncsn_fashion_meets_issue_20s_bars_in_its_recorded_evaluation():
    """The card's figures (ncsn-eval, 1,000 samples, the saved default sampler, the Fashion-MNIST judge) against the
    acceptance: confident rate >= 0.75 x real images', asked-for class >= 0.85, Fréchet distance in the judge's
    features <= 3 x the floor (real training vs test images, same N); trained in <= 90 minutes on 2 CPU cores by the
    recorded command; weights <= 20 MB; the default sampler takes <= 50 network calls."""
    from ncsn_pipeline import DPMSolverPlusPlusScheduler, EDMScoreModel
    from ncsn_pipeline.folder_records import read_evaluation, read_training

    folder = pretrained_path("ncsn-fashion")
    record, evaluation = read_training(folder), read_evaluation(folder)
    assert (
        record["command"].startswith("ncsn-train --dataset_name fashion-mnist")
        and "--class_conditional" in record["command"]
    )
    assert record["train_seconds"] <= 90 * 60 and "2 cores" in record["hardware"]
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size <= 20 * 2**20
    pipe = load_pretrained("ncsn-fashion")
    assert isinstance(pipe.unet, EDMScoreModel) and pipe.unet.num_classes == 10 and pipe.sample_shape == (1, 28, 28)
    assert isinstance(pipe.scheduler, DPMSolverPlusPlusScheduler) and pipe.scheduler.max_model_calls <= 50
    assert evaluation["command"].startswith("ncsn-eval <this folder> --num_samples 1000")
    confident = _metric(evaluation, "confident judgements")
    assert confident["value"] >= 0.75 * confident["reference"]
    assert _metric(evaluation, "samples judged the class asked for")["value"] >= 0.85
    distance = _metric(evaluation, "Fréchet distance in the judge's features")
    assert distance["value"] <= 3 * distance["reference"]
    assert _metric(evaluation, "network calls per sample")["value"] <= 50


@pytest.mark.slow  # a statistical run: 100 samples of the Fashion-MNIST U-Net (~36 s on 2 cores)
def test_ncsn_fashion_draws_the_class_asked_for():
    """A fresh draw (100 samples, ten per class, seed 1 rather than the card's 0) judged by the Fashion-MNIST judge:
    the card's rate on 1,000 samples is >= 0.85; 100 draws have a binomial standard deviation of 0.036, so 0.78 leaves
    two of them for this seed."""
    from ncsn_pipeline.evaluation.fashion_judge import requested_class_rate

    pipe = load_pretrained("ncsn-fashion")
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(10).repeat(10)
    images = pipe(
        batch_size=100, class_labels=labels, generator=torch.Generator().manual_seed(1), output_type="pt"
    ).images
    assert requested_class_rate(images, labels)["match_rate"] >= 0.78


def test_a_local_pipeline_folder_wins_over_a_named_model_in_every_command(tmp_path, monkeypatch):
    """One rule (diffusers' ``from_pretrained`` prefers a local folder): beside a folder saved as ``ncsn-digits``,
    ``load_pipeline`` (``ncsn-sample``, ``ncsn-tune-steps``, ``app.py --model``) and ``resolve_pipeline``
    (``ncsn-eval``, whose ``--record`` writes there) take the folder."""
    from ncsn_pipeline.pretrained import is_local_pipeline, resolve_pipeline

    monkeypatch.chdir(tmp_path)
    toy = load_pretrained("ncsn-toy")  # an exact 2-D score: unlike the bundled digits model in every way
    toy.save_pretrained("ncsn-digits")
    assert is_local_pipeline("ncsn-digits") and not is_local_pipeline("ncsn-fashion")
    assert tuple(load_pipeline("ncsn-digits").sample_shape) == (2,)
    pipe, folder = resolve_pipeline("ncsn-digits")
    assert tuple(pipe.sample_shape) == (2,) and folder == Path("ncsn-digits")
    assert tuple(load_pipeline("ncsn-fashion").sample_shape) == (1, 28, 28)  # no such folder: the named model


def test_ncsn_fashion_samples_by_default_on_its_tuned_15_levels():
    """Issue 30, item 5: the tuned 15-call run matched the 50-call run on the judge (README: Fréchet distance 0.96x,
    asked-for class within 0.005 over four seeds), so it is the model's default; 10, 12 and 50 calls stay available,
    10 and 12 on their own tuned levels."""
    pipe = load_pretrained("ncsn-fashion")
    pipe.scheduler.set_timesteps()
    tuned = pipe.scheduler.config.tuned_noise_levels
    assert pipe.scheduler.num_model_calls == 15 and sorted(tuned, key=int) == ["10", "12", "15"]
    assert pipe.scheduler.sigmas.tolist() == tuned["15"]
    pipe.scheduler.set_timesteps(num_inference_steps=50)
    assert pipe.scheduler.num_model_calls == 50 and float(pipe.scheduler.sigmas[14]) != tuned["15"][-1]
