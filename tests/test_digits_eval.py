"""The digits sample-quality evaluation: classifier, metrics, their floor and the CLI."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler
from ncsn_pipeline.cli.digits_eval import main
from ncsn_pipeline.data.digits import load_digits_split
from ncsn_pipeline.evaluation.digits_judge import (
    classifier_accuracy,
    classify,
    default_digit_classifier,
    evaluate_digit_samples,
    floor_metrics,
    frechet_distance,
    resize_to_digits,
    train_digit_classifier,
    upsample_digits,
)
from ncsn_pipeline.folder_records import read_evaluation
from ncsn_pipeline.hub import render_model_card

N = 100  # every Fréchet-distance comparison below uses the same N: the estimate is biased upward for small N


@pytest.fixture(scope="module")
def classifier():
    return default_digit_classifier()  # trained once per process (a few seconds), shared with the CLI test


@pytest.fixture(scope="module")
def floor(classifier):
    return floor_metrics(classifier, num_samples=N)


@pytest.fixture(scope="module")
def held_out():
    images, labels = load_digits_split("held_out")
    return upsample_digits(images), labels


def test_classifier_is_accurate_on_held_out_digits(classifier):
    assert classifier_accuracy(classifier, "held_out") >= 0.95


def test_same_seed_gives_identical_weights_and_leaves_the_global_rng_alone(classifier):
    rng_state = torch.get_rng_state()
    retrained = train_digit_classifier(seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)
    for (name, weight), (_, again) in zip(classifier.state_dict().items(), retrained.state_dict().items()):
        assert torch.equal(weight, again), name
    other_seed = train_digit_classifier(seed=1, epochs=1)
    assert not torch.equal(other_seed.head.weight, classifier.head.weight)


def test_floor_of_real_digits_is_good(floor, classifier):
    assert floor["num_samples"] == N and floor["num_reference"] == 359 and floor["reference"] == "held_out"
    assert floor["confident_rate"] >= 0.9
    assert floor["class_coverage"] == 10
    assert floor["class_entropy_bits"] > 3.2  # near log2(10) = 3.32: the train split is balanced
    assert sum(floor["class_histogram"]) == N
    assert floor["held_out_accuracy"] == classifier_accuracy(classifier)
    json.dumps(floor)  # plain Python numbers only


def test_floor_subset_is_deterministic_and_the_full_split_has_a_lower_fd(floor, classifier):
    assert floor_metrics(classifier, num_samples=N) == floor
    full = floor_metrics(classifier)
    assert full["num_samples"] == 1438
    assert full["frechet_distance"] < floor["frechet_distance"]  # the small-N upward bias


@pytest.mark.parametrize("kind", ["uniform noise", "constant grey"])
def test_noise_and_constant_images_score_far_worse_than_the_floor(kind, classifier, floor):
    if kind == "uniform noise":
        samples = torch.rand(N, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    else:
        samples = torch.full((N, 1, 16, 16), 0.3)
    metrics = evaluate_digit_samples(samples, classifier)
    assert metrics["frechet_distance"] > 10 * floor["frechet_distance"]
    assert metrics["class_coverage"] <= 3
    assert metrics["confident_rate"] < 0.3


def test_mode_collapse_gives_coverage_one_and_a_large_fd(classifier, floor):
    images, labels = load_digits_split("train")
    collapsed = upsample_digits(images[labels == 0][:N])  # N distinct real zeros: a generator stuck on one class
    metrics = evaluate_digit_samples(collapsed, classifier)
    assert metrics["class_coverage"] == 1
    assert metrics["class_histogram"][0] >= 0.95 * N
    assert metrics["class_entropy_bits"] < 0.5
    assert metrics["confident_rate"] > 0.8  # each sample looks fine on its own...
    assert metrics["frechet_distance"] > 10 * floor["frechet_distance"]  # ...the set does not


def test_frechet_distance_of_a_set_with_itself_is_zero_and_symmetric(classifier, held_out):
    images, _ = held_out
    features, _ = classify(classifier, images)
    scale = float(features.var(dim=0).sum())
    assert frechet_distance(features, features) < 1e-8 * scale
    first, second = features[:150], features[150:]
    forward, backward = frechet_distance(first, second), frechet_distance(second, first)
    # Not to round-off: dead ReLU units make the covariances singular, and the square root of an eigenvalue
    # that should be 0 but is 1e-16 is 1e-8.
    assert forward > 0 and forward == pytest.approx(backward, rel=1e-6)


def test_frechet_distance_matches_the_scipy_sqrtm_formula():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(300, 5, generator=generator, dtype=torch.float64) @ torch.randn(5, 5, generator=generator).double()
    b = torch.randn(200, 5, generator=generator, dtype=torch.float64) + 0.5
    mean_a, mean_b = a.mean(0).numpy(), b.mean(0).numpy()
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    trace_sqrt_product = np.trace(scipy.linalg.sqrtm(cov_a @ cov_b).real)  # the usual FID code's formula
    expected = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b) - 2 * trace_sqrt_product
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    # Fewer samples than dimensions: singular covariances still give a finite, non-negative distance.
    assert 0 < frechet_distance(a[:3], b[:3]) < float("inf")


def test_samples_are_clamped_to_the_unit_interval(classifier, held_out):
    images, _ = held_out
    exact = evaluate_digit_samples(images[:N], classifier)
    overshoot = images[:N] * 1.05 - 0.025  # within the tolerance; clamping undoes most of it
    assert evaluate_digit_samples(overshoot, classifier)["class_coverage"] == exact["class_coverage"]


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (torch.rand(4, 16, 16), "must have shape (N, 1, 16, 16)"),
        (torch.rand(4, 1, 8, 8), "must have shape (N, 1, 16, 16)"),
        (torch.rand(1, 1, 16, 16), "with N >= 2, got (1, 1, 16, 16)"),
        (torch.full((4, 1, 16, 16), float("nan")), "NaN or infinite"),
        (torch.rand(4, 1, 16, 16) * 255, "must lie in [0, 1]"),
        (torch.rand(4, 1, 16, 16) * 2 - 1, "must lie in [0, 1]"),
        (torch.zeros(4, 1, 16, 16, dtype=torch.uint8), "must be a float tensor"),
    ],
)
def test_bad_samples_raise_a_value_error_naming_the_problem(samples, message, classifier):
    with pytest.raises(ValueError) as error:
        evaluate_digit_samples(samples, classifier)
    assert message in str(error.value) and "samples" in str(error.value)


def test_bad_arguments_raise_value_errors(classifier):
    with pytest.raises(ValueError, match="confidence"):
        evaluate_digit_samples(torch.rand(4, 1, 16, 16), classifier, confidence=0.0)
    with pytest.raises(ValueError, match="reference must be"):
        evaluate_digit_samples(torch.rand(4, 1, 16, 16), classifier, reference="test")
    with pytest.raises(ValueError, match=r"must be a whole number from 2 to 1438"):
        floor_metrics(classifier, num_samples=5000)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(torch.rand(5, 3), torch.rand(5, 4))


def test_resize_to_digits_turns_8x8_into_the_2x2_blocks(held_out):
    images, _ = load_digits_split("held_out")
    eight_by_eight = (images[:5].float() + 0.5) / 17
    assert torch.equal(resize_to_digits(eight_by_eight), upsample_digits(images[:5]))
    assert resize_to_digits(torch.rand(3, 1, 32, 32)).shape == (3, 1, 16, 16)


def _tiny_digit_pipeline(held_out):
    images, labels = held_out
    means = [images[labels == digit][0].tolist() for digit in (0, 1, 2)]
    return NCSNPipeline(
        unet=GaussianMixtureScore(weights=[0.4, 0.3, 0.3], means=means, stds=0.05),
        scheduler=NCSNScheduler(sigma_max=3.0, sigma_min=0.01, num_noise_levels=10, steps_per_level=5, step_lr=3e-5),
        data_range=(0.0, 1.0),
    )


def test_cli_writes_sample_and_floor_metrics(tmp_path, capsys, held_out, classifier):
    folder = tmp_path / "pipeline"
    _tiny_digit_pipeline(held_out).save_pretrained(folder)
    output = tmp_path / "out" / "metrics.json"
    argv = ["--pipeline", str(folder), "--num_samples", "40", "--batch_size", "16", "--seed", "0"]
    assert main([*argv, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "frechet_distance" in printed and "floor" in printed
    result = json.loads(output.read_text())
    samples, floor = result["samples"], result["floor"]
    assert samples["num_samples"] == floor["num_samples"] == 40  # same N: comparable Fréchet distances
    assert sum(samples["class_histogram"]) == 40
    assert samples["class_coverage"] <= 3  # a three-mode mixture cannot cover ten classes
    assert floor["class_coverage"] == 10
    assert samples["frechet_distance"] > floor["frechet_distance"]
    assert set(result["seconds"]) == {"classifier_training", "sampling", "evaluation"}
    assert [path.name for path in output.parent.iterdir()] == ["metrics.json"]  # no temporary file left
    # Same seed, same samples: the run is reproducible.
    again = tmp_path / "again.json"
    assert main([*argv, "--output", str(again)]) == 0
    assert json.loads(again.read_text())["samples"] == samples
    assert read_evaluation(folder) is None  # the folder's record is written only when asked


def test_cli_record_writes_the_evaluation_the_card_shows_for_any_sampler(tmp_path, held_out, classifier):
    folder = tmp_path / "pipeline"
    _tiny_digit_pipeline(held_out).save_pretrained(folder)
    argv = ["--pipeline", str(folder), "--num_samples", "20", "--batch_size", "20"]
    argv += ["--output", str(tmp_path / "m.json")]
    argv += ["--sampler", "VEPredictorCorrectorScheduler", "--num_inference_steps", "10", "--record"]
    assert main(argv) == 0
    record = read_evaluation(folder)
    result = json.loads((tmp_path / "m.json").read_text())
    assert [metric["value"] for metric in record["metrics"]][-1] == result["samples"]["frechet_distance"]
    assert "predictor-corrector" in record["notes"] and "predictor-corrector" in result["sampler"]
    card = render_model_card(folder).text
    assert "Fréchet distance in classifier features" in card and "floor: real training digits (same N = 20)" in card


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pipeline", "no-such-folder"], "'no-such-folder' is neither a named model"),
        (["--pipeline", "glyph-mixture", "--record"], "--record writes into a local pipeline folder; --pipeline"),
        (["--pipeline", "x", "--num_samples", "5000"], "--num_samples must be from 2 to 1438"),
        (["--pipeline", "x", "--output", "metrics.txt"], "--output must name a .json file"),
    ],
)
def test_cli_errors_exit_with_a_message_and_write_nothing(extra, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(extra)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
