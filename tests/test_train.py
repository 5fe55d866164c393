"""The accelerate training script: outputs, exact resume after SIGKILL, data parallelism, bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import reset_accelerate_state
from ncsn_pipeline import NCSNPipeline, NCSNScheduler
from ncsn_pipeline.cli.train import main
from ncsn_pipeline.hub import render_model_card
from ncsn_pipeline.noise_schedules import ncsnv2_noise_schedule
from ncsn_pipeline.training.checkpoints import COMPLETE_MARKER, resolve_checkpoint

TOY = [
    "--dataset_name", "two-gaussians", "--num_toy_samples", "2048", "--train_batch_size", "64",
    "--hidden_size", "32", "--num_layers", "2", "--report_to", "none", "--num_samples", "16",
    "--sigma_max", "20", "--sigma_min", "1", "--num_noise_levels", "10", "--steps_per_level", "100",
    "--step_lr", "0.1", "--no_final_denoise",
]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps process-wide singletons: reset them so that in-process runs do not leak into each other."""
    yield
    reset_accelerate_state()


def _losses(output_dir: Path):
    lines = (output_dir / "logs" / "loss.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _run(args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "ncsn_pipeline.train", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def test_output_folder_is_a_complete_pipeline(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                *TOY,
                "--output_dir",
                str(out),
                "--max_train_steps",
                "6",
                "--checkpointing_steps",
                "2",
                "--checkpoints_total_limit",
                "2",
            ]
        )
        == 0
    )
    names = {path.name for path in out.iterdir()}
    assert {"model_index.json", "unet", "scheduler", "training_args.json", "sample_grid.png"} <= names
    # Old checkpoints are pruned once newer ones are complete; no temporary folders remain.
    assert sorted(name for name in names if name.startswith("checkpoint")) == ["checkpoint-4", "checkpoint-6"]
    assert not any(name.startswith(".") for name in names)
    record = json.loads((out / "training_args.json").read_text())
    assert record["global_step"] == 6 and record["args"]["hidden_size"] == 32
    assert [entry["step"] for entry in _losses(out)] == [1, 2, 3, 4, 5, 6]
    pipe = NCSNPipeline.from_pretrained(out)
    assert pipe.config.data_range is None
    # The saved sampler is the package's default; it records the training levels and the Langevin settings.
    assert type(pipe.scheduler).__name__ == "DPMSolverPlusPlusScheduler" and pipe.scheduler.num_model_calls == 50
    assert pipe.scheduler.config.num_train_noise_levels == 10 and len(pipe.scheduler.noise_levels) == 10
    langevin = NCSNScheduler.from_config(pipe.scheduler.config)
    settings = (langevin.config.num_noise_levels, langevin.config.steps_per_level, langevin.config.step_lr)
    assert settings == (10, 100, 0.1)
    assert not langevin.config.final_denoise
    # The final weights are the EMA weights kept in the last checkpoint.
    from safetensors.torch import load_file

    ema = load_file(out / "checkpoint-6" / "ema.safetensors")
    torch.testing.assert_close(next(pipe.unet.parameters()), ema["shadow.0"])


def test_latest_picks_the_newest_complete_checkpoint(tmp_path):
    for step, complete in ((4, True), (8, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / COMPLETE_MARKER).write_text("{}")
    assert resolve_checkpoint(tmp_path, "latest").name == "checkpoint-8"
    with pytest.raises(ValueError, match="checkpoint-12 is not a complete checkpoint"):
        resolve_checkpoint(tmp_path, "checkpoint-12")
    assert resolve_checkpoint(tmp_path / "empty", "latest") is None


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    common = [*TOY, "--checkpointing_steps", "5", "--checkpoints_total_limit", "3", "--dataloader_num_workers", "0"]
    # 2048 examples / 64 per batch = 32 batches per epoch: a checkpoint mid-epoch exercises the data-order restore.
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ncsn_pipeline.train",
            *common,
            "--output_dir",
            str(killed),
            "--max_train_steps",
            "100000",
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not any(killed.glob(f"checkpoint-*/{COMPLETE_MARKER}")) or len(list(killed.glob("checkpoint-*"))) < 2:
            assert time.time() < deadline and process.poll() is None, "training did not reach a checkpoint"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    resume_from = int(resolve_checkpoint(killed, "latest").name.split("-")[1])
    stop = resume_from + 12  # crosses an epoch boundary for most kill points, and at least one more checkpoint
    resumed = _run(
        [*common, "--output_dir", str(killed), "--max_train_steps", str(stop), "--resume_from_checkpoint", "latest"]
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    reference = tmp_path / "reference"
    assert main([*common, "--output_dir", str(reference), "--max_train_steps", str(stop)]) == 0
    expected = {entry["step"]: entry["loss"] for entry in _losses(reference)}
    logged = _losses(killed)
    assert [entry["step"] for entry in logged] == list(range(1, stop + 1))  # each step exactly once
    assert [entry["loss"] for entry in logged] == [expected[step] for step in range(1, stop + 1)]
    # And the saved pipelines are identical.
    weights = [NCSNPipeline.from_pretrained(path).unet.state_dict() for path in (killed, reference)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    # The training record lists both commands with their steps (the card chains them); one run lists none.
    segments = json.loads((killed / "training_args.json").read_text())["segments"]
    assert [segment["steps"] for segment in segments] == [f"1-{resume_from}", f"{resume_from + 1}-{stop}"]
    assert "--max_train_steps 100000" in segments[0]["command"]
    assert "--resume_from_checkpoint latest" in segments[1]["command"]
    assert "segments" not in json.loads((reference / "training_args.json").read_text())
    assert " && ".join(segment["command"] for segment in segments) in render_model_card(killed).text


def test_resuming_with_another_configuration_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "2"]) == 0
    changed = [arg if arg != "32" else "64" for arg in TOY]  # --hidden_size 32 -> 64
    code = main([*changed, "--output_dir", str(out), "--max_train_steps", "4", "--resume_from_checkpoint", "latest"])
    assert code == 2
    assert "--hidden_size: checkpoint 32, now 64" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_data_parallel_training_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "ncsn_pipeline.train", *TOY, "--output_dir", str(out), "--max_train_steps", "6",
        "--checkpointing_steps", "3",
    ]  # fmt: skip
    result = subprocess.run(
        command, env={**ENV, "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "training_args.json").read_text())
    assert record["num_processes"] == 2
    # Each process keeps its own training randomness in the checkpoint.
    assert {p.name for p in (out / "checkpoint-6").glob("training_randomness_*")} == {
        "training_randomness_0.safetensors",
        "training_randomness_1.safetensors",
    }
    assert "2 process(es)" in result.stderr
    NCSNPipeline.from_pretrained(out)


@pytest.mark.slow
def test_a_short_toy_run_learns_the_mode_weights(tmp_path):
    out = tmp_path / "toy"
    args = [
        *TOY,
        "--num_toy_samples",
        "20000",
        "--train_batch_size",
        "256",
        "--hidden_size",
        "64",
        "--output_dir",
        str(out),
        "--max_train_steps",
        "1500",
        "--checkpointing_steps",
        "1500",
    ]
    assert main(args) == 0
    pipe = NCSNPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    points = pipe(batch_size=4000, generator=torch.Generator().manual_seed(0), output_type="pt").images
    from ncsn_pipeline import GaussianMixtureScore

    # Binomial standard error 0.0063 at 4000 samples; the exact-score sampler's own bias is -0.011
    # (test_pipeline_exact.py); 0.05 leaves ~0.02 for the learned score's error.
    assert GaussianMixtureScore.ncsn_toy().mode_weights(points)[1] == pytest.approx(0.8, abs=0.05)


def test_auto_noise_schedule_is_computed_from_the_data_and_saved(tmp_path):
    out = tmp_path / "digits"
    args = [
        "--dataset_name",
        "digits",
        "--resolution",
        "8",
        "--ngf",
        "4",
        "--train_batch_size",
        "16",
        "--auto_noise_schedule",
        "--steps_per_level",
        "3",
        "--max_train_steps",
        "2",
        "--report_to",
        "none",
        "--num_samples",
        "4",
        "--output_dir",
        str(out),
        "--mixed_precision",
        "bf16",
    ]
    assert main(args) == 0
    from ncsn_pipeline.data.digits import load_digits_split

    images, _ = load_digits_split("train")
    expected = ncsnv2_noise_schedule(images.float() / 16, sigma_min=0.01, steps_per_level=3)
    config = NCSNScheduler.from_pretrained(out / "scheduler").config
    assert config.sigma_max == pytest.approx(expected.sigma_max)
    assert config.num_noise_levels == expected.num_noise_levels
    assert config.step_lr == pytest.approx(expected.step_lr)
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in _losses(out))
    assert NCSNPipeline.from_pretrained(out).config.data_range == [0.0, 1.0]


def test_image_folder_training_with_accumulation(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(8):
        Image.new("RGB", (12 + index, 10), color=(30 * index, 10, 200)).save(folder / f"{index}.png")
    out = tmp_path / "run"
    args = [
        "--train_data_dir",
        str(folder),
        "--resolution",
        "8",
        "--ngf",
        "4",
        "--train_batch_size",
        "4",
        "--gradient_accumulation_steps",
        "2",
        "--max_train_steps",
        "3",
        "--random_flip",
        "--report_to",
        "none",
        "--num_samples",
        "4",
        "--output_dir",
        str(out),
    ]
    assert main(args) == 0
    assert [entry["step"] for entry in _losses(out)] == [1, 2, 3]  # steps count optimizer updates
    assert NCSNPipeline.from_pretrained(out).unet.config.in_channels == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output_dir", "x"], "pass exactly one of --dataset_name or --train_data_dir"),
        (["--dataset_name", "digits", "--train_data_dir", "d", "--output_dir", "x"], "exactly one of"),
        (["--dataset_name", "digits", "--sigma_min", "2", "--output_dir", "x"], "--sigma_min (2.0) must be smaller"),
        (
            ["--dataset_name", "digits", "--learning_rate", "-1", "--output_dir", "x"],
            "expected a positive finite number, got '-1'",
        ),
        (["--dataset_name", "digits", "--data_range", "1,0", "--output_dir", "x"], "with low < high"),
    ],
)
def test_bad_arguments_are_rejected(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unreachable_hub_dataset_suggests_a_local_folder(tmp_path, capsys):
    code = main(
        ["--dataset_name", "nobody/no-such-dataset", "--output_dir", str(tmp_path / "x"), "--report_to", "none"]
    )
    assert code == 2
    assert "--train_data_dir" in capsys.readouterr().err
    assert not (tmp_path / "x" / "model_index.json").exists()


def test_an_existing_pipeline_is_not_overwritten_by_accident(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "1", "--checkpointing_steps", "1"]) == 0
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "1"]) == 2
    assert "already holds a trained pipeline" in capsys.readouterr().err


def test_the_loss_log_holds_each_step_once_after_interruptions(tmp_path):
    out = tmp_path / "run"
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "6", "--checkpointing_steps", "3"]) == 0
    reset_accelerate_state()
    log = out / "logs" / "loss.jsonl"
    # What a run killed after step 8 while writing step 9 leaves behind (its last checkpoint is step 6).
    extra = [json.dumps({"step": 7, "loss": 1.0, "lr": 0.001}), json.dumps({"step": 8, "loss": 1.0, "lr": 0.001})]
    log.write_text(log.read_text() + "\n".join(extra) + '\n{"step": 9, "lo')
    args = [*TOY, "--output_dir", str(out), "--max_train_steps", "9", "--checkpointing_steps", "3"]
    assert main([*args, "--resume_from_checkpoint", "latest"]) == 0
    steps = [entry["step"] for entry in _losses(out)]
    assert steps == list(range(1, 10))
    assert all(entry["loss"] != 1.0 for entry in _losses(out))  # steps 7 and 8 were logged again, by the real run


@pytest.mark.slow
def test_interrupted_saves_and_deletions_leave_nothing_behind(tmp_path):
    out = tmp_path / "run"
    args = [*TOY, "--output_dir", str(out), "--checkpointing_steps", "2", "--checkpoints_total_limit", "1"]
    assert main([*args, "--max_train_steps", "4"]) == 0
    reset_accelerate_state()
    assert sorted(path.name for path in out.glob("*checkpoint-*")) == ["checkpoint-4"]
    # A half-deleted checkpoint (marker gone), an interrupted deletion and an interrupted save.
    (out / "checkpoint-2").mkdir()
    (out / "checkpoint-2" / "model.safetensors").write_bytes(b"partial")
    (out / ".checkpoint-1.deleting").mkdir()
    (out / ".checkpoint-6.tmp").mkdir()
    result = _run([*args, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in out.glob("*checkpoint-*")) == ["checkpoint-6"]
    for name in ("checkpoint-2", ".checkpoint-1.deleting", ".checkpoint-6.tmp"):
        assert f"Removed {name}: an interrupted checkpoint save or deletion" in result.stderr


def test_resume_without_a_checkpoint_and_a_run_without_checkpoints_are_announced(tmp_path):
    out = tmp_path / "run"
    args = [*TOY, "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "5"]
    result = _run([*args, "--resume_from_checkpoint", "latest"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" in result.stderr
    assert "there is no complete checkpoint in" in result.stderr and "starts from step 0" in result.stderr
    assert "--checkpointing_steps 5 exceeds --max_train_steps 2: this run writes no checkpoint" in result.stderr


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan_weights(path):
    from safetensors.torch import load_file, save_file

    weights = load_file(path)
    first = sorted(weights)[0]
    weights[first] = torch.full_like(weights[first], float("nan"))
    save_file(weights, path)


CORRUPTIONS = {
    "truncated weights": ("model.safetensors", _truncate, "model.safetensors is truncated or corrupted"),
    "truncated optimizer": ("optimizer.bin", _truncate, "optimizer.bin is truncated or corrupted"),
    "broken marker": (COMPLETE_MARKER, lambda path: path.write_text("{broken"), "is not readable JSON"),
    "NaN weights": ("model.safetensors", _nan_weights, "model.safetensors holds NaN or infinite values"),
}


@pytest.mark.slow
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_broken_newest_checkpoint_is_named_and_the_newest_intact_one_used(tmp_path, corruption):
    out = tmp_path / "run"
    args = [*TOY, "--output_dir", str(out), "--checkpointing_steps", "2"]
    assert main([*args, "--max_train_steps", "4"]) == 0
    reset_accelerate_state()
    file_name, damage, message = CORRUPTIONS[corruption]
    damage(out / "checkpoint-4" / file_name)
    result = _run([*args, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Skipping checkpoint-4" in result.stderr and message in result.stderr
    assert "Resumed from" in result.stderr and "checkpoint-2 at step 2" in result.stderr
    assert [entry["step"] for entry in _losses(out)] == list(range(1, 7))


def test_no_intact_checkpoint_stops_with_a_message_naming_the_files(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TOY, "--output_dir", str(out), "--checkpointing_steps", "2"]
    assert main([*args, "--max_train_steps", "4"]) == 0
    reset_accelerate_state()
    for step in (2, 4):
        _truncate(out / f"checkpoint-{step}" / "model.safetensors")
    assert main([*args, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"]) == 2
    error = capsys.readouterr().err
    assert "No intact checkpoint in" in error and "checkpoint-2/model.safetensors is truncated" in error
    assert main([*args, "--max_train_steps", "6", "--resume_from_checkpoint", "checkpoint-4"]) == 2
    assert "checkpoint-4/model.safetensors is truncated or corrupted" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["our safetensors file", "accelerate's torch.save"])
def test_a_full_disk_while_checkpointing_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, where, capsys):
    """Issue 9, item 7, with a simulated ENOSPC (the form each writer reports it in)."""
    import errno

    import accelerate

    from ncsn_pipeline.training import checkpoints

    out = tmp_path / "run"
    args = [*TOY, "--output_dir", str(out), "--checkpointing_steps", "2", "--max_train_steps", "6"]
    real_save_file, real_save_state = checkpoints.save_file, accelerate.Accelerator.save_state

    def full_disk_save_file(tensors, filename, *rest, **kwargs):
        if "checkpoint-4" in str(filename) and "ema" in str(filename):
            Path(filename).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return real_save_file(tensors, filename, *rest, **kwargs)

    def full_disk_save_state(self, output_dir=None, **kwargs):
        if "checkpoint-4" in str(output_dir):
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "optimizer.bin").write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")  # fmt: skip
        return real_save_state(self, output_dir, **kwargs)

    patch = pytest.MonkeyPatch()
    if where == "our safetensors file":
        patch.setattr(checkpoints, "save_file", full_disk_save_file)
    else:
        patch.setattr(accelerate.Accelerator, "save_state", full_disk_save_state)
    try:
        assert main(args) == 2
    finally:
        patch.undo()
    error = capsys.readouterr().err
    file_name = "ema.safetensors" if where == "our safetensors file" else "optimizer.bin"
    assert "No space left on device while writing" in error and file_name in error
    assert "['checkpoint-2']" in error and "Traceback" not in error
    assert sorted(path.name for path in out.glob("*checkpoint-*")) == ["checkpoint-2"]
    assert checkpoints.checkpoint_problem(out / "checkpoint-2") is None


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_at_the_current_step_and_exits_cleanly(tmp_path, signal_name):
    """Issue 9, item 2: even a run stopped long before its first scheduled checkpoint keeps its work."""
    out = tmp_path / "run"
    args = [*TOY, "--output_dir", str(out), "--checkpointing_steps", "100000"]
    process = subprocess.Popen(
        [sys.executable, "-m", "ncsn_pipeline.train", *args, "--max_train_steps", "100000"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while not (out / "logs" / "loss.jsonl").is_file() or len(_losses(out)) < 5:
            assert time.time() < deadline and process.poll() is None, "training did not start"
            time.sleep(0.05)
        process.send_signal(getattr(signal, signal_name))
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + getattr(signal, signal_name)
    assert "Traceback" not in stderr
    step = len(_losses(out))
    message = f"ncsn-train: {signal_name} received: saved checkpoint-{step} in {out}; continue with the same command"
    assert message in stderr and "--resume_from_checkpoint latest" in stderr
    assert resolve_checkpoint(out, "latest").name == f"checkpoint-{step}"
    assert not (out / "model_index.json").exists()  # an unfinished run is not a finished pipeline
    resumed = _run([*args, "--max_train_steps", str(step + 3), "--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [entry["step"] for entry in _losses(out)] == list(range(1, step + 4))


# ------------------------------------------------------------------------------------------------ the EDM recipe

EDM_DIGITS = [
    "--dataset_name", "digits", "--resolution", "8", "--class_conditional", "--model", "edm-unet",
    "--block_out_channels", "8,16", "--auto_noise_schedule", "--train_batch_size", "16", "--num_samples", "10",
    "--report_to", "none",
]  # fmt: skip


def test_the_edm_recipe_trains_a_preconditioned_unet_and_records_its_objective(tmp_path):
    from ncsn_pipeline import EDMScoreModel
    from ncsn_pipeline.training.data import load_training_data

    out = tmp_path / "edm"
    assert main([*EDM_DIGITS, "--output_dir", str(out), "--max_train_steps", "3", "--checkpointing_steps", "2"]) == 0
    pipe = NCSNPipeline.from_pretrained(out)
    assert isinstance(pipe.unet, EDMScoreModel) and pipe.unet.num_classes == 10
    args = json.loads((out / "training_args.json").read_text())["args"]
    # "auto" resolved to EDM's objective; sigma_data measured on the training images (in the data range [0, 1]).
    assert (args["noise_sampling"], args["loss_weighting"]) == ("log-normal", "edm")
    data = load_training_data(dataset_name="digits", resolution=8, class_conditional=True)
    images = torch.stack([data.dataset[i][0] for i in range(len(data.dataset))]).float() / (data.num_levels - 1)
    assert args["sigma_data"] == pytest.approx(images.std().item(), abs=1e-3)
    assert pipe.unet.config.sigma_data == args["sigma_data"]
    assert args["log_normal_mean"] == pytest.approx(-1.2 + math.log(args["sigma_data"] / 0.5), abs=1e-3)
    card = render_model_card(out).text
    assert "EDMScoreModel" in card and "EDM's weight" in card and "log sigma ~ N(" in card
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=2, class_labels=[3, 7], num_inference_steps=3, output_type="np").images
    assert samples.shape == (2, 8, 8, 1) and np.isfinite(samples).all()
    # The checkpoint resumes under the same command, and a changed objective is refused.
    more = [*EDM_DIGITS, "--output_dir", str(out), "--resume_from_checkpoint", "latest", "--overwrite_output_dir"]
    assert main([*more, "--max_train_steps", "4", "--log_normal_std", "2"]) == 2
    assert main([*more, "--max_train_steps", "4"]) == 0


def test_edm_sampling_draws_log_normal_levels_and_weighs_them(monkeypatch):
    """compute_loss under the EDM objective: sigma ~ log-normal with the given mean and std, EDM's weight passed."""
    from ncsn_pipeline import losses
    from ncsn_pipeline.training.checkpoints import TrainingRandomness
    from ncsn_pipeline.training.loop import Objective, compute_loss

    seen = {}

    def spy(model, clean, sigma, noise, weight=None):
        seen.update(sigma=sigma, weight=weight)
        return torch.zeros(())

    monkeypatch.setattr(losses, "denoising_score_matching_loss", spy)
    edm = Objective("log-normal", "edm", sigma_data=0.4, log_normal_mean=-1.0, log_normal_std=0.5)
    compute_loss(None, torch.zeros(20000, 1), torch.tensor([9.0]), TrainingRandomness(0), objective=edm)
    log_sigma = seen["sigma"].log()
    # 20,000 draws: the standard error of the mean is 0.5 / sqrt(20000) = 0.0035, of the std about 0.0025.
    assert log_sigma.mean().item() == pytest.approx(-1.0, abs=0.02)
    assert log_sigma.std().item() == pytest.approx(0.5, abs=0.02)
    torch.testing.assert_close(seen["weight"], (seen["sigma"] ** 2 + 0.16) / 0.16)
    compute_loss(None, torch.zeros(100, 1), torch.tensor([9.0, 3.0]), TrainingRandomness(0))  # NCSN's objective
    assert set(seen["sigma"].tolist()) == {9.0, 3.0} and seen["weight"] is None


def test_max_train_minutes_stops_early_and_saves_the_pipeline(tmp_path):
    out = tmp_path / "timed"
    timed = ["--max_train_steps", "100000", "--max_train_minutes", "0.002", "--checkpointing_steps", "100000"]
    assert main([*TOY, "--output_dir", str(out), *timed]) == 0
    record = json.loads((out / "training_args.json").read_text())
    assert 1 <= record["global_step"] < 100000 and record["train_seconds"] < 5
    NCSNPipeline.from_pretrained(out)
    # The time cap ends a run as a signal does: with a checkpoint at its last step, where a resume goes on.
    last = record["global_step"]
    assert (out / f"checkpoint-{last}").is_dir()  # no periodic one: --checkpointing_steps is beyond the run
    resume = [*TOY, "--output_dir", str(out), "--max_train_steps", str(last + 2), "--resume_from_checkpoint", "latest"]
    assert main(resume) == 0
    assert json.loads((out / "training_args.json").read_text())["global_step"] == last + 2


def test_identical_images_are_named_instead_of_a_math_domain_error(tmp_path):
    """A folder of identical images measures sigma_data = 0: the message names the data, not the logarithm."""
    from PIL import Image

    from ncsn_pipeline.cli.train import parse_args
    from ncsn_pipeline.training import train

    folder = tmp_path / "same"
    folder.mkdir()
    for index in range(4):
        Image.new("L", (8, 8), 128).save(folder / f"{index}.png")
    arguments = ["--train_data_dir", str(folder), "--resolution", "8", "--model", "edm-unet", "--train_batch_size", "4",
                 "--max_train_steps", "1", "--report_to", "none", "--output_dir", str(tmp_path / "out")]  # fmt: skip

    with pytest.raises(ValueError, match=r"standard deviation is 0 .*are all its images the same\?"):
        train(parse_args(arguments))
    assert not (tmp_path / "out" / "model_index.json").exists()


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_allocated(tmp_path, monkeypatch):
    """1024-wide blocks with 8 layers: 1.67 billion parameters, 31 GiB of training state, counted on the meta
    device (the machine's memory is fixed at 8 GiB here, so the test does not depend on it)."""
    from ncsn_pipeline import checks
    from ncsn_pipeline.cli.train import parse_args
    from ncsn_pipeline.training import train

    monkeypatch.setattr(checks, "_memory_bytes", lambda device: 8 * 2**30)
    arguments = ["--dataset_name", "digits", "--resolution", "8", "--model", "edm-unet", "--block_out_channels",
                 "1024,1024,1024", "--layers_per_block", "8", "--report_to", "none",
                 "--output_dir", str(tmp_path / "o")]  # fmt: skip
    refused = r"--model edm-unet \(EDMScoreModel\) has 1,6\d\d,\d{3},\d{3} parameters: .* than the 8.0 GiB of memory"
    with pytest.raises(ValueError, match=refused):  # fmt: skip
        train(parse_args(arguments))
    assert not (tmp_path / "o" / "model_index.json").exists()


def test_checkpoints_from_before_the_edm_options_still_resume(tmp_path):
    out = tmp_path / "old"
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "2"]) == 0
    marker = out / "checkpoint-2" / COMPLETE_MARKER
    saved = json.loads(marker.read_text())
    for key in ("block_out_channels", "layers_per_block", "sigma_data", "noise_sampling", "log_normal_mean",
                "log_normal_std", "loss_weighting"):  # fmt: skip
        del saved["training_args"][key]
    marker.write_text(json.dumps(saved))
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "3", "--resume_from_checkpoint", "latest"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "ssm", "--noise_sampling", "log-normal"], "are for --loss dsm"),
        (["--block_out_channels", "8,x"], "comma-separated channel counts"),
        (["--block_out_channels", "8,16,16,16,16,16,16"], "one to six"),
        (["--max_train_minutes", "0"], "a positive finite number"),
        (["--threads", "0"], "an integer >= 1"),
    ],
)
def test_bad_recipe_arguments_are_rejected(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset_name", "digits", "--output_dir", "x", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_edm_unet_refuses_points_and_an_image_size_it_cannot_halve(tmp_path, capsys):
    assert main([*TOY, "--model", "edm-unet", "--output_dir", str(tmp_path / "a")]) == 2
    assert "--model edm-unet needs image data" in capsys.readouterr().err
    code = main([*EDM_DIGITS, "--block_out_channels", "8,8,8,8", "--output_dir", str(tmp_path / "b")])
    assert code == 2  # four blocks halve 8 pixels three times: the U-Net needs at least 16
    assert "sample_size must be a whole number from 16" in capsys.readouterr().err
    assert not (tmp_path / "b" / "model_index.json").exists()


def test_tune_steps_after_training_stores_levels_the_saved_sampler_uses(tmp_path):
    """``--tune_steps 6``: the saved sampler (the default DPM-Solver++) runs 6 calls on levels measured on the trained
    model, the folder records how they were chosen and the card lists them."""
    out = tmp_path / "tuned"
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "20", "--checkpointing_steps", "20",
                 "--tune_steps", "6"]) == 0  # fmt: skip
    pipe = NCSNPipeline.from_pretrained(out)
    levels = pipe.scheduler.config.tuned_noise_levels["6"]
    assert pipe.scheduler.num_model_calls == 6 and pipe.scheduler.sigmas.tolist() == pytest.approx(levels)
    assert levels[0] == pytest.approx(20.0) and levels[-1] > 1.0 - 1e-9
    record = json.loads((out / "tuned_steps.json").read_text())["6"]
    training = json.loads((out / "training_args.json").read_text())
    assert record["levels"] == levels and record["command"] == training["command"]  # None when run from Python
    assert "6 calls: " in str(render_model_card(out))


def test_save_guide_at_leaves_the_earlier_model_behind_for_autoguidance(tmp_path):
    """``--save_guide_at 10`` of a 20-step run: ``OUTPUT/guide`` is a pipeline of the model at step 10 (its record says
    so), different weights from the final model, and it guides the final model."""
    out = tmp_path / "guided"
    assert main([*TOY, "--output_dir", str(out), "--max_train_steps", "20", "--checkpointing_steps", "20",
                 "--save_guide_at", "10"]) == 0  # fmt: skip
    final, guide = NCSNPipeline.from_pretrained(out), NCSNPipeline.from_pretrained(out / "guide")
    assert json.loads((out / "guide" / "training_args.json").read_text())["global_step"] == 10
    weights = zip(final.unet.state_dict().values(), guide.unet.state_dict().values())
    assert any(not torch.equal(a, b) for a, b in weights)
    final.set_progress_bar_config(disable=True)
    points = final(batch_size=8, guidance_model=guide.unet, guidance_scale=2.0, output_type="pt",
                   generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert points.shape == (8, 2) and torch.isfinite(points).all()


def test_save_guide_at_must_come_before_the_last_step(capsys):
    with pytest.raises(SystemExit):
        main([*TOY, "--output_dir", "x", "--max_train_steps", "20", "--save_guide_at", "20"])
    assert "--save_guide_at 20 must come before the last step" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# TrainingConfig: the run's settings as a typed dataclass, checked in one place
# --------------------------------------------------------------------------------------------------
def test_the_command_line_builds_a_training_config_with_the_dataclass_defaults():
    from ncsn_pipeline.cli.train import parse_args
    from ncsn_pipeline.training import TrainingConfig

    parsed = parse_args(["--dataset_name", "digits", "--resolution", "8", "--report_to", "none", "--output_dir", "x"])
    assert isinstance(parsed, TrainingConfig)
    assert parsed == TrainingConfig(dataset_name="digits", resolution=8, report_to="none", output_dir="x")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"resolution": 0}, "resolution must be an integer >= 1, got 0."),
        ({"max_train_steps": 2.5}, "max_train_steps must be an integer >= 1, got 2.5."),
        ({"learning_rate": float("nan")}, "learning_rate must be a positive finite number, got nan."),
        ({"model": "unet"}, "model must be one of ['auto', 'ncsnv2', 'edm-unet', 'mlp'], got 'unet'."),
        ({"seed": -1}, "seed must be an integer >= 0, got -1."),
        ({"channels": True}, "channels must be one of [None, 1, 3], got True."),  # True == 1, but not a channel count
        ({"max_train_minutes": 0}, "max_train_minutes must be a positive finite number, got 0."),
        ({"sigma_data": 1e300}, "--sigma_data must lie in [0.0001, 10000]"),
        ({"sigma_data": 1e-300}, "--sigma_data must lie in [0.0001, 10000]"),
        ({"log_normal_std": 1e10}, "--log_normal_std must be at most 5, got 1e+10"),
        ({"log_normal_mean": 1e5}, "--log_normal_mean must be a number from -15 to 15 (log sigma), got 100000.0"),
        ({"data_range": [1.0, 0.0]}, "data_range must be two finite numbers (low, high) with low < high, got [1.0, 0."),
        ({"train_data_dir": "images"}, "pass exactly one of --dataset_name or --train_data_dir"),
        ({"label_dropout": 0.1}, "--label_dropout 0.1 drops class labels: it needs --class_conditional"),
        ({"save_guide_at": 5, "max_train_steps": 5}, "--save_guide_at 5 must come before the last step"),
        ({"push_to_hub": True, "hub_model_id": "me/x"}, "--push_to_hub needs --hub_model_id user/name and an explicit"),
    ],
)
def test_a_training_config_refuses_bad_settings_from_python_too(changes, message):
    from ncsn_pipeline.training import TrainingConfig

    with pytest.raises(ValueError) as error:
        TrainingConfig(**{"dataset_name": "digits", **changes}).validate()
    assert message in str(error.value)


def test_an_old_training_record_reads_back_as_a_config():
    """The bundled digits model's training_args.json predates fields such as save_guide_at and tune_steps: they take
    their defaults, and the recorded ones come back as they were (the Hub token is never among them)."""
    from ncsn_pipeline.pretrained import pretrained_path
    from ncsn_pipeline.training import TrainingConfig

    recorded = json.loads((pretrained_path("ncsn-digits") / "training_args.json").read_text())["args"]
    config = TrainingConfig.from_record(recorded).validate()
    assert config.save_guide_at is None and config.tune_steps is None and "save_guide_at" not in recorded
    assert all(getattr(config, key) == value for key, value in recorded.items() if key != "report_to")
    assert "hub_token" not in TrainingConfig(hub_token="hf_secret").to_record()
    assert "hf_secret" not in repr(TrainingConfig(hub_token="hf_secret"))


def test_edm2_learning_rate_decay_is_what_training_logs(tmp_path):
    """--lr_scheduler inverse_sqrt: lr constant to --lr_decay_steps, then lr / sqrt(step / decay), in the loss log
    (the log's lr is the rate for the next step: scheduler step = optimizer steps so far)."""
    out = tmp_path / "run"
    arguments = [*TOY, "--lr_scheduler", "inverse_sqrt", "--lr_decay_steps", "3", "--learning_rate", "0.01"]
    assert main([*arguments, "--max_train_steps", "12", "--output_dir", str(out)]) == 0
    logged = [json.loads(line) for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    expected = [0.01 / math.sqrt(max(entry["step"] / 3, 1.0)) for entry in logged]
    assert [entry["lr"] for entry in logged] == pytest.approx(expected, rel=1e-9)
    assert "decayed as 1 / sqrt(step / 3) after step 3" in render_model_card(out).text


def test_an_unknown_learning_rate_schedule_is_named_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*TOY, "--lr_scheduler", "inverse_square", "--output_dir", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "--lr_scheduler must be one of [" in capsys.readouterr().err and not (tmp_path / "x").exists()
