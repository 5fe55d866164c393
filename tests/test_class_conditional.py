"""Class-conditional sampling and classifier guidance: exact-score mixtures for every sampler, the class-conditional
NCSNv2 model, labelled training data (digits, class subfolders, a data set's label column) and clear errors.

The exact tests sample a three-mode mixture whose modes are 10 apart with std 0.5 (mode k is class k): a sample of
class k lands nearer another mode only if it strays 5 = 10 std from its own, so any sampler that follows the exact
conditional score puts ~100 % of its samples in mode k (the acceptance asks >= 99 %). With N = 300 per class the
per-coordinate std has a standard error of 0.5 / sqrt(2 N) = 0.02; the tolerance 0.1 also absorbs the samplers'
discretisation (measured at 50 levels: at most 0.06, annealed Langevin's variance inflation) and, for the
deterministic probability-flow sampler, the prior mismatch of starting at N(0, sigma_max^2) rather than around the
mode: a mean offset of |mu| s / sigma_max = 10 x 0.5 / 100 = 0.05 (sigma_max = 100 keeps it small).
"""

import numpy as np
import PIL.Image
import pytest
import torch

from helpers import reset_accelerate_state
from ncsn_pipeline import (
    GaussianMixtureClassifier,
    GaussianMixtureScore,
    NCSNPipeline,
    NCSNScoreModel,
    score_schedulers,
)
from ncsn_pipeline.inpainting import NCSNColorizePipeline, NCSNInpaintPipeline
from ncsn_pipeline.training.data import load_training_data

MIXTURE = dict(weights=[0.6, 0.3, 0.1], means=[[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]], stds=[0.5, 0.5, 0.5])


def _sampler(name):
    # 50 noise levels 100 -> 0.01 for every sampler (annealed Langevin picks its step size, NCSNv2's technique 4).
    return score_schedulers()[name].from_config(dict(sigma_max=100.0, sigma_min=0.01, num_noise_levels=50))


def _check_class(points, label):
    model = GaussianMixtureScore(**MIXTURE)
    fractions = model.mode_weights(points)
    assert fractions[label] >= 0.99, fractions
    in_mode = points[torch.cdist(points.double(), model.mode_means).argmin(dim=1) == label].double()
    torch.testing.assert_close(in_mode.mean(0), model.mode_means[label], atol=0.1, rtol=0)
    torch.testing.assert_close(in_mode.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.1, rtol=0)


@pytest.mark.parametrize("name", sorted(score_schedulers()))
def test_a_class_conditional_exact_model_samples_the_requested_mode(name):
    pipe = NCSNPipeline(GaussianMixtureScore(**MIXTURE, class_conditional=True), _sampler(name))
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(900) % 3  # each class 300 times, the rarest mode (weight 0.1) included
    points = pipe(batch_size=900, class_labels=labels, generator=torch.Generator().manual_seed(0), output_type="pt")
    for label in range(3):
        _check_class(points.images[labels == label], label)


@pytest.mark.parametrize("name", sorted(score_schedulers()))
def test_guidance_with_the_exact_classifier_samples_the_requested_mode(name):
    # grad log p(x) + grad log p(y | x) = grad log p(x | y): the unconditional mixture guided at scale 1.
    pipe = NCSNPipeline(GaussianMixtureScore(**MIXTURE), _sampler(name))
    pipe.set_progress_bar_config(disable=True)
    classifier = GaussianMixtureClassifier(**MIXTURE)
    labels = torch.arange(900) % 3
    points = pipe(
        batch_size=900, class_labels=labels, classifier=classifier, guidance_scale=1.0,
        generator=torch.Generator().manual_seed(1), output_type="pt",
    ).images  # fmt: skip
    for label in range(3):
        _check_class(points[labels == label], label)


def test_guidance_scale_zero_is_the_unconditional_model_and_one_int_labels_the_batch():
    pipe = NCSNPipeline(GaussianMixtureScore(**MIXTURE), _sampler("DPMSolverPlusPlusScheduler"))
    pipe.set_progress_bar_config(disable=True)
    classifier = GaussianMixtureClassifier(**MIXTURE)
    plain = pipe(batch_size=50, generator=torch.Generator().manual_seed(2), output_type="pt").images
    unguided = pipe(
        batch_size=50, class_labels=2, classifier=classifier, guidance_scale=0.0,
        generator=torch.Generator().manual_seed(2), output_type="pt",
    ).images  # fmt: skip
    assert torch.equal(plain, unguided)
    guided = pipe(
        batch_size=50, class_labels=2, classifier=classifier, generator=torch.Generator().manual_seed(2),
        output_type="pt",
    ).images  # fmt: skip
    assert GaussianMixtureScore(**MIXTURE).mode_weights(guided)[2] == 1.0  # default scale 1: the exact conditional


def test_inpainting_and_colorization_take_class_labels():
    means = torch.zeros(2, 3, 2, 2)
    means[1] = 1.0
    model = GaussianMixtureScore(weights=[0.5, 0.5], means=means.tolist(), stds=[0.05, 0.05], class_conditional=True)
    scheduler = _sampler("VEPredictorCorrectorScheduler")
    inpaint = NCSNInpaintPipeline(model, scheduler, data_range=(-1, 2))
    inpaint.set_progress_bar_config(disable=True)
    image, mask = torch.full((3, 2, 2), 0.5), torch.ones(1, 2, 2)
    mask[:, 0, 0] = 0  # keep one pixel
    filled = inpaint(image, mask, batch_size=4, class_labels=1, generator=torch.Generator().manual_seed(0),
                     output_type="pt").images  # fmt: skip
    assert torch.equal(filled[:, :, 0, 0], torch.full((4, 3), 0.5))
    assert (filled[:, :, 1, 1] - 2 / 3).abs().max() < 0.1  # data value 1 in the pixel range (-1, 2)
    colorize = NCSNColorizePipeline(model, scheduler, data_range=(-1, 2))
    colorize.set_progress_bar_config(disable=True)
    colour = colorize(torch.full((2, 2), 1 / 3), batch_size=4, class_labels=[0, 0, 0, 0],
                      generator=torch.Generator().manual_seed(0), output_type="pt").images  # fmt: skip
    assert (colour - 1 / 3).abs().max() < 0.1  # data value 0 for class 0


def _conditional_model():
    torch.manual_seed(0)
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8, num_class_embeds=10)
    for name, parameter in model.named_parameters():
        if "class_scale_shift" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # as after training: classes differ
    return model


def test_the_class_conditional_ncsn_model_depends_on_the_label_and_round_trips(tmp_path):
    fresh = NCSNScoreModel(in_channels=1, sample_size=8, ngf=8, num_class_embeds=10)
    noisy = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # Zero-initialised class scale and shift: before training every class gives the unconditional output.
    torch.testing.assert_close(fresh(noisy, 1.0, class_labels=torch.tensor([0, 9])).sample,
                               fresh(noisy, 1.0, class_labels=torch.tensor([3, 3])).sample)  # fmt: skip
    model = _conditional_model()
    first = model(noisy, 1.0, class_labels=torch.tensor([0, 0])).sample
    second = model(noisy, 1.0, class_labels=torch.tensor([5, 5])).sample
    assert not torch.allclose(first, second)
    assert model.num_classes == 10 and NCSNScoreModel(in_channels=1, sample_size=8, ngf=8).num_classes is None
    model.save_pretrained(tmp_path / "unet")
    loaded = NCSNScoreModel.from_pretrained(tmp_path / "unet")
    assert loaded.config.num_class_embeds == 10
    torch.testing.assert_close(loaded(noisy, 1.0, class_labels=torch.tensor([5, 5])).sample, second)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, r"class-conditional \(10 classes\): pass class_labels, one class index in \[0, 9\]"),
        ({"class_labels": 10}, r"class_labels must lie in \[0, 9\] for this model, got 10"),
        ({"class_labels": [1, 2, 3]}, r"one class index per sample \(2\), got shape \(3,\)"),
        ({"class_labels": torch.tensor([0.5, 1.0])}, "class_labels must be integer class indices"),
        ({"class_labels": "3"}, r"class_labels must be an int, a sequence of ints or an integer tensor .* got str"),
        ({"class_labels": [[1], [2, 3]]}, r"class_labels must be an int, .* \[0, 9\] per sample\), got list"),
        ({"class_labels": 1, "guidance_scale": 2.0}, "guidance_scale=2.0 needs a classifier"),
        ({"class_labels": 1, "classifier": "resnet"}, "classifier must be a noise-conditional classifier"),
    ],
)
def test_bad_class_arguments_are_refused_with_a_message(kwargs, message):
    pipe = NCSNPipeline(_conditional_model(), _sampler("DPMSolverPlusPlusScheduler"), data_range=(0, 1))
    with pytest.raises(ValueError, match=message):
        pipe(batch_size=2, output_type="np", **kwargs)


def test_unconditional_models_refuse_class_labels_and_guidance_needs_labels():
    pipe = NCSNPipeline(GaussianMixtureScore(**MIXTURE), _sampler("DPMSolverPlusPlusScheduler"))
    with pytest.raises(ValueError, match="not class-conditional, so it takes no class_labels"):
        pipe(batch_size=2, class_labels=[0, 1], output_type="pt")
    with pytest.raises(ValueError, match=r"Classifier guidance needs class_labels: .* in \[0, 2\]"):
        pipe(batch_size=2, classifier=GaussianMixtureClassifier(**MIXTURE), output_type="pt")
    classifier = GaussianMixtureClassifier(**MIXTURE)
    with pytest.raises(ValueError, match="guidance_scale must be a finite number from 0 to 1000, got -1"):
        pipe(batch_size=2, class_labels=0, classifier=classifier, guidance_scale=-1, output_type="pt")
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 2\] for this model, got 3"):
        pipe(batch_size=2, class_labels=3, classifier=classifier, output_type="pt")


# ------------------------------------------------------------------------------------------------ labelled data


def test_digits_come_with_their_labels():
    data = load_training_data(dataset_name="digits", resolution=8, class_conditional=True, max_train_samples=50)
    image, label = data.dataset[0]
    assert data.class_names == [str(digit) for digit in range(10)] and image.shape == (1, 8, 8)
    from ncsn_pipeline.data.digits import load_digits_split

    assert [int(data.dataset[i][1]) for i in range(50)] == load_digits_split("train")[1][:50].tolist()
    assert data.description.endswith("10 classes")


def test_a_folder_with_one_subfolder_per_class(tmp_path):
    for name, value in (("cat", 10), ("dog", 200)):
        (tmp_path / name).mkdir()
        for index in range(2):
            PIL.Image.new("L", (8, 8), value + index).save(tmp_path / name / f"{index}.png")
    data = load_training_data(train_data_dir=str(tmp_path), resolution=8, class_conditional=True)
    assert data.class_names == ["cat", "dog"]
    pairs = sorted((int(data.dataset[i][0][0, 0, 0]), int(data.dataset[i][1])) for i in range(4))
    assert pairs == [(10, 0), (11, 0), (200, 1), (201, 1)]
    PIL.Image.new("L", (8, 8), 0).save(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="needs one subfolder per class .*loose.png"):
        load_training_data(train_data_dir=str(tmp_path), resolution=8, class_conditional=True)


def test_class_folders_that_lie_are_named_or_kept_inside_the_data(tmp_path, caplog):
    """An empty class folder is an error naming it (not a silent renumbering), a link to a folder outside the data
    is not followed (a link to / once made training walk the whole file system), and --max_train_samples keeps the
    class numbering of the whole folder."""
    root = tmp_path / "data"
    for name, value in (("a-cat", 10), ("b-dog", 200)):
        (root / name).mkdir(parents=True)
        for index in range(2):
            PIL.Image.new("L", (8, 8), value + index).save(root / name / f"{index}.png")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    PIL.Image.new("L", (8, 8), 99).save(outside / "stray.png")
    (root / "c-link").symlink_to(outside, target_is_directory=True)
    (root / "a-cat" / "stray.png").symlink_to(outside / "stray.png")
    data = load_training_data(train_data_dir=str(root), resolution=8, class_conditional=True)
    assert data.class_names == ["a-cat", "b-dog"] and len(data.dataset) == 4  # nothing from outside
    assert "leads out of" in caplog.text
    subset = load_training_data(train_data_dir=str(root), resolution=8, class_conditional=True, max_train_samples=2)
    assert subset.class_names == ["a-cat", "b-dog"] and [int(subset.dataset[i][1]) for i in range(2)] == [0, 0]
    (root / "a-empty").mkdir()
    with pytest.raises(ValueError, match=r"Class folder\(s\) \['a-empty'\] in .* hold no images"):
        load_training_data(train_data_dir=str(root), resolution=8, class_conditional=True)


def test_a_label_column_with_a_huge_label_is_refused_before_building_class_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [PIL.Image.new("L", (8, 8), index) for index in range(3)]
    saved = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 10**12]})
    saved.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"holds the label 1000000000000, but 3 examples can hold at most 3 classes"):
        load_training_data(dataset_name=str(tmp_path / "saved"), resolution=8, class_conditional=True)


def test_a_data_set_label_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [PIL.Image.new("L", (8, 8), index) for index in range(4)]
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=["a", "b", "c"])})
    saved = datasets.Dataset.from_dict({"img": images, "kind": [2, 0, 1, 2]}, features=features)
    saved.save_to_disk(str(tmp_path / "saved"))
    data = load_training_data(
        dataset_name=str(tmp_path / "saved"), image_column="img", label_column="kind", resolution=8,
        class_conditional=True,
    )  # fmt: skip
    assert data.class_names == ["a", "b", "c"]
    assert [int(data.dataset[i][1]) for i in range(4)] == [2, 0, 1, 2]
    with pytest.raises(ValueError, match=r"label_column 'label' is not a column .*\['img', 'kind'\]"):
        load_training_data(dataset_name=str(tmp_path / "saved"), image_column="img", resolution=8,
                           class_conditional=True)  # fmt: skip


def test_toys_have_no_classes():
    with pytest.raises(ValueError, match="the toy 'two-gaussians' has no classes"):
        load_training_data(dataset_name="two-gaussians", class_conditional=True)


def test_class_conditional_training_writes_a_conditional_pipeline(tmp_path):
    from ncsn_pipeline.cli.train import main

    output = tmp_path / "run"
    try:
        code = main([
            "--dataset_name", "digits", "--resolution", "8", "--ngf", "8", "--class_conditional",
            "--auto_noise_schedule", "--max_train_steps", "3", "--train_batch_size", "16", "--num_samples", "10",
            "--report_to", "none", "--checkpointing_steps", "2", "--output_dir", str(output),
        ])  # fmt: skip
    finally:
        reset_accelerate_state()
    assert code == 0
    pipe = NCSNPipeline.from_pretrained(output)
    assert pipe.unet.num_classes == 10
    import json

    assert json.loads((output / "training_args.json").read_text())["class_names"] == [str(d) for d in range(10)]
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, class_labels=[3, 7], num_inference_steps=3, output_type="np").images
    assert images.shape == (2, 8, 8, 1) and np.isfinite(images).all()


@pytest.mark.parametrize("model", ["ncsnv2", "edm-unet"])
def test_label_dropout_trains_a_model_that_knows_the_no_class_label(tmp_path, model):
    """``--label_dropout``: the saved network has one more class embedding, the "no class" label, and samples with
    classifier-free guidance (and without labels: the whole data)."""
    from ncsn_pipeline.cli.train import main

    output = tmp_path / "run"
    size = ["--ngf", "8"] if model == "ncsnv2" else ["--block_out_channels", "8,8"]
    try:
        code = main([
            "--dataset_name", "digits", "--resolution", "8", "--model", model, *size, "--class_conditional",
            "--label_dropout", "0.2", "--auto_noise_schedule", "--max_train_steps", "2", "--train_batch_size", "16",
            "--num_samples", "10", "--report_to", "none", "--output_dir", str(output),
        ])  # fmt: skip
    finally:
        reset_accelerate_state()
    assert code == 0
    pipe = NCSNPipeline.from_pretrained(output)
    assert pipe.unet.num_classes == 10 and pipe.unet.unconditional_label == 10 and pipe.unet.config.unconditional_class
    pipe.set_progress_bar_config(disable=True)
    guided = pipe(batch_size=2, class_labels=[3, 7], guidance_scale=3.0, num_inference_steps=3, output_type="np")
    anything = pipe(batch_size=2, num_inference_steps=3, output_type="np")
    assert np.isfinite(guided.images).all() and np.isfinite(anything.images).all()


def test_label_dropout_replaces_that_share_of_labels_reproducibly():
    from ncsn_pipeline.training.loop import drop_labels

    labels = torch.arange(10).repeat(2000)
    dropped = drop_labels(labels, 0.1, 10, torch.Generator().manual_seed(0))
    again = drop_labels(labels, 0.1, 10, torch.Generator().manual_seed(0))
    share = float((dropped == 10).double().mean())
    assert torch.equal(dropped, again) and abs(share - 0.1) < 0.01  # 4.7 standard errors (0.0021)
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])  # the others keep their class
    assert torch.equal(drop_labels(labels, 0.0, 10, torch.Generator()), labels)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--label_dropout", "0.1"], "--label_dropout 0.1 drops class labels: it needs --class_conditional"),
        (["--class_conditional", "--label_dropout", "1"], "--label_dropout must be below 1"),
        (["--class_conditional", "--label_dropout", "-0.1"], "a number from 0 to 1, got '-0.1'"),
    ],
)
def test_bad_label_dropout_is_refused(argv, message, capsys, tmp_path):
    from ncsn_pipeline.cli.train import main

    with pytest.raises(SystemExit):
        main(["--dataset_name", "digits", "--output_dir", str(tmp_path / "run"), *argv])
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ the classifier


def test_noise_conditional_classifier_round_trips_and_guides_a_pipeline(tmp_path):
    from ncsn_pipeline import NoiseConditionalClassifier

    classifier = NoiseConditionalClassifier(in_channels=1, sample_size=8, num_classes=10, block_out_channels=(8, 16))
    noisy = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    logits = classifier(noisy, torch.tensor([0.1, 1.0, 4.0])).logits
    assert logits.shape == (3, 10) and classifier.num_classes == 10
    assert not torch.allclose(classifier(noisy, 0.1).logits, classifier(noisy, 4.0).logits)  # it sees the level
    classifier.save_pretrained(tmp_path / "classifier")
    loaded = NoiseConditionalClassifier.from_pretrained(tmp_path / "classifier")
    torch.testing.assert_close(loaded(noisy, torch.tensor([0.1, 1.0, 4.0])).logits, logits)
    pipe = NCSNPipeline(NCSNScoreModel(in_channels=1, sample_size=8, ngf=8), _sampler("DPMSolverPlusPlusScheduler"),
                        data_range=(0, 1))  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, class_labels=[1, 2], classifier=loaded, guidance_scale=3.0, num_inference_steps=4,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images  # fmt: skip
    unguided = pipe(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0),
                    output_type="pt").images  # fmt: skip
    assert images.shape == (2, 1, 8, 8) and not torch.equal(images, unguided)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes must be a whole number from 2 to 100000, got 1"),
        ({"block_out_channels": []}, r"block_out_channels must list 1 to 8 stages, got \[\]"),
        ({"block_out_channels": "32"}, "block_out_channels must be a list of channel counts"),
        ({"sample_size": 6, "block_out_channels": (8, 8, 8)}, "sample_size must be a multiple of 4 for 3 stages"),
        ({"sigma_data": 0}, "sigma_data"),
    ],
)
def test_bad_classifier_configs_are_refused(kwargs, message):
    from ncsn_pipeline import NoiseConditionalClassifier

    with pytest.raises(ValueError, match=message):
        NoiseConditionalClassifier(**{"in_channels": 1, "sample_size": 8, **kwargs})


def test_train_classifier_command_writes_a_classifier_and_its_record(tmp_path, capsys):
    import json

    from ncsn_pipeline import NoiseConditionalClassifier
    from ncsn_pipeline.cli.train_classifier import main
    from ncsn_pipeline.pretrained import pretrained_path

    output = tmp_path / "classifier"
    args = ["--dataset_name", "digits", "--pipeline", str(pretrained_path("ncsn-digits")), "--output_dir", str(output),
            "--max_train_steps", "5", "--train_batch_size", "32", "--block_out_channels", "8", "16"]  # fmt: skip
    try:
        assert main(args) == 0
    finally:
        reset_accelerate_state()
    assert "classifier steps: 100%" in capsys.readouterr().err  # the run shows its progress (and the loss)
    classifier = NoiseConditionalClassifier.from_pretrained(output)
    assert classifier.num_classes == 10 and classifier.config.block_out_channels == [8, 16]
    record = json.loads((output / "classifier_record.json").read_text())
    assert record["noise_levels"]["sigma_max"] == pytest.approx(4.736, abs=1e-3) and record["steps"] == 5
    assert len(record["evaluation"]["accuracy"]) == 5 and record["evaluation"]["images"] == "held-out digits (359)"
    assert sorted(path.name for path in output.iterdir()) == [
        "classifier_record.json", "config.json", "diffusion_pytorch_model.safetensors",
    ]  # fmt: skip  (no staging folder left)
    with pytest.raises(SystemExit):
        main(args)
    assert "already holds a classifier; pass --overwrite_output_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dataset_name", "digits", "--resolution", "8", "--output_dir", str(tmp_path / "other")])
    assert "Give the noise range: --pipeline" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dataset_name", "digits", "--pipeline", str(tmp_path), "--output_dir", str(tmp_path / "other")])
    assert "is not a readable score pipeline folder" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (("scheduler", "sigma_max", "4.7"), "sigma_max must be a positive finite number, got '4.7'"),
        (("scheduler", "sigma_min", 0), "sigma_min must be a positive finite number, got 0"),
        (("index", "data_range", [1.0, 0.0]), "data_range must be two finite numbers (low, high) with low < high"),
        (("unet", "sample_size", "8"), "resolution (the score model's sample_size) must be a whole number"),
        (("index", None, [1, 2]), "model_index.json is not a JSON object (list)"),
    ],
)
def test_train_classifier_checks_the_pipeline_folders_values(tmp_path, capsys, edit, message):
    """Values read from --pipeline's JSON files are checked like flags (they once ended in tracebacks or in
    "math domain error"), before any training."""
    import json
    import shutil

    from ncsn_pipeline.cli.train_classifier import main
    from ncsn_pipeline.pretrained import pretrained_path

    folder = shutil.copytree(pretrained_path("ncsn-digits"), tmp_path / "pipe")
    files = {"scheduler": "scheduler/scheduler_config.json", "index": "model_index.json", "unet": "unet/config.json"}
    which, key, value = edit
    path = folder / files[which]
    content = json.loads(path.read_text())
    if key is None:
        content = value
    else:
        content[key] = value
    path.write_text(json.dumps(content))
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset_name", "digits", "--pipeline", str(folder), "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ bundled digits


@pytest.mark.slow  # a statistical run on the bundled model (~12 s)
def test_the_bundled_class_conditional_digits_model_draws_the_digit_asked_for(tmp_path):
    """``ncsn-eval`` asks a class-conditional model for the classes in turn and scores the samples with the
    package's digits judge (a network trained apart from the model): N = 100, ten of each digit. The acceptance
    target is 90 %; benchmarks/class_conditional_digits.py measures it on more samples."""
    import json

    from ncsn_pipeline.cli import evaluate

    output = tmp_path / "run.json"
    assert evaluate.main(["ncsn-digits-classes", "--num_samples", "100", "--output", str(output)]) == 0
    requested = json.loads(output.read_text())["digits"]["requested_class"]
    assert requested["match_rate"] >= 0.9, requested
    assert min(requested["per_class_match_rate"]) >= 0.6, requested  # no digit left behind


@pytest.mark.slow  # a statistical run on the bundled model (~11 s)
def test_the_bundled_classifier_guides_the_unconditional_digits_model():
    from ncsn_pipeline.evaluation.digits_judge import requested_class_rate, resize_to_digits
    from ncsn_pipeline.pretrained import load_pretrained, load_pretrained_classifier

    pipe = load_pretrained("ncsn-digits")
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(10).repeat_interleave(10)
    images = pipe(batch_size=100, class_labels=labels, classifier=load_pretrained_classifier("ncsn-digits-classifier"),
                  guidance_scale=4.0, generator=torch.Generator().manual_seed(0), output_type="pt").images  # fmt: skip
    assert requested_class_rate(resize_to_digits(images), labels)["match_rate"] >= 0.9
