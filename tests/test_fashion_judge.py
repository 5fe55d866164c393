"""The Fashion-MNIST judge: its accuracy, its floor, that it tells real garments from poor ones, and ncsn-eval's use.

These read Debian's dataset-fashion-mnist (``.ci/run`` installs it) and skip without it.
"""

import json

import pytest
import torch

from ncsn_pipeline import NCSNPipeline, NCSNScheduler, NCSNScoreModel
from ncsn_pipeline.data.fashion_mnist import DEBIAN_FOLDER, idx_folder_has_split, load_fashion_mnist
from ncsn_pipeline.evaluation import fashion_judge

pytestmark = pytest.mark.skipif(
    not idx_folder_has_split(DEBIAN_FOLDER, "train"), reason="Debian's dataset-fashion-mnist is absent"
)
N = 500


def test_the_shipped_judge_is_accurate_on_the_test_split():
    record = fashion_judge.judge_record()
    assert record["test_accuracy"] >= 0.90, record
    images, labels = load_fashion_mnist("test")
    _, probabilities = fashion_judge.classify(
        fashion_judge.default_fashion_classifier(), fashion_judge.to_unit_images(images[:2000])
    )
    accuracy = float((probabilities.argmax(dim=1) == labels[:2000]).double().mean())
    assert abs(accuracy - record["test_accuracy"]) < 0.03  # a 2,000-image subset: standard error ~0.007


@pytest.mark.slow
def test_real_garments_score_at_the_floor_and_poor_ones_do_not():
    """The floor (real training images, N = 500) is mostly confident (measured 0.76: shirts, T-shirts, pullovers
    and coats look alike at 28x28), covers the classes, and sits close to the test split; the same images blurred to
    7x7 and back, or replaced by noise, are judged worse."""
    floor = fashion_judge.floor_metrics(num_samples=N)
    assert floor["confident_rate"] > 0.7 and floor["class_coverage"] == 10 and floor["class_entropy_bits"] > 3.2
    real = fashion_judge.to_unit_images(load_fashion_mnist("train")[0][:N])
    blurred = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(real, 4), size=(28, 28), mode="nearest")
    noise = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for poor in (blurred, noise):
        metrics = fashion_judge.evaluate_fashion_samples(poor)
        assert metrics["frechet_distance"] > 3 * floor["frechet_distance"]
        assert metrics["confident_rate"] < floor["confident_rate"]


@pytest.mark.slow
def test_the_test_split_is_classified_once_per_process_and_as_a_fresh_judge_would(monkeypatch):
    """The shipped judge's features of the 10,000 test images are kept after the first evaluation: a later one does
    not classify them again, and its figures equal those of an equal but distinct judge, which is classified afresh
    (the cache is the shipped judge's only)."""
    import copy

    samples = fashion_judge.to_unit_images(load_fashion_mnist("train")[0][:50])
    cached = fashion_judge.evaluate_fashion_samples(samples)
    classified = []
    real_classify = fashion_judge.classify
    monkeypatch.setattr(
        fashion_judge, "classify", lambda judge, images: classified.append(len(images)) or real_classify(judge, images)
    )
    assert fashion_judge.evaluate_fashion_samples(samples) == cached and classified == []
    fresh = fashion_judge.evaluate_fashion_samples(samples, copy.deepcopy(fashion_judge.default_fashion_classifier()))
    assert fresh["frechet_distance"] == pytest.approx(cached["frechet_distance"], rel=1e-9)
    assert {key: value for key, value in fresh.items() if key not in ("frechet_distance", "test_accuracy")} == {
        key: value for key, value in cached.items() if key not in ("frechet_distance", "test_accuracy")
    }
    from ncsn_pipeline.evaluation.digits_judge import judge_samples

    with pytest.raises(ValueError, match="reference_features holds 3 rows for 50 reference images"):
        judge_samples(fashion_judge.default_fashion_classifier(), samples, samples, 10, 0.9, "x", torch.zeros(3, 8))


def test_asked_for_classes_are_matched_for_real_images():
    images, labels = load_fashion_mnist("test")
    result = fashion_judge.requested_class_rate(fashion_judge.to_unit_images(images[:N]), labels[:N])
    assert result["match_rate"] > 0.85 and len(result["per_class_match_rate"]) == 10
    with pytest.raises(ValueError, match="class_labels must hold one class per sample"):
        fashion_judge.requested_class_rate(fashion_judge.to_unit_images(images[:N]), labels[:3])


@pytest.mark.slow  # ncsn-eval end to end on 28x28 samples (~18 s)
def test_ncsn_eval_judges_a_28x28_model_with_the_fashion_judge(tmp_path):
    from ncsn_pipeline.cli import evaluate

    torch.manual_seed(0)
    scheduler = NCSNScheduler(sigma_max=2.0, sigma_min=0.01, num_noise_levels=5, steps_per_level=1, step_lr=1e-5)
    pipe = NCSNPipeline(NCSNScoreModel(in_channels=1, sample_size=28, ngf=8), scheduler, data_range=(0, 1))
    pipe.save_pretrained(tmp_path / "untrained")
    output = tmp_path / "report.json"
    arguments = [str(tmp_path / "untrained"), "--num_samples", "20", "--batch_size", "10", "--output", str(output)]
    assert evaluate.main([*arguments, "--record"]) == 0
    report = json.loads(output.read_text())
    block = report["fashion-mnist"]
    assert block["samples"]["num_samples"] == 20 and block["floor"]["num_samples"] == 20
    # An untrained model's samples are far from garments: the Fréchet distance shows it against the floor.
    assert block["samples"]["frechet_distance"] > 3 * block["floor"]["frechet_distance"]
    card = json.loads((tmp_path / "untrained" / "evaluation.json").read_text())
    assert card["reference_label"].startswith("floor: real training images") and "Fashion-MNIST" in card["notes"]
