"""Sampling and evaluation split across processes: batch b seeded from (seed, b), so any process can sample any batch
and a launched run gives what one process gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ncsn_pipeline.cli import sample
from ncsn_pipeline.evaluation import batches
from ncsn_pipeline.evaluation.batches import batch_seed, process_batches, sample_batch, sample_in_batches
from ncsn_pipeline.images import samples_to_pil
from ncsn_pipeline.pretrained import load_pipeline

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
FEW_STEPS = ["--num_inference_steps", "4"]


@pytest.mark.parametrize("num_samples,batch_size,num_processes", [(1, 5, 1), (25, 10, 2), (7, 3, 3), (9, 3, 4)])
def test_the_processes_share_out_every_sample_once_in_turns(num_samples, batch_size, num_processes):
    shares = [process_batches(num_samples, batch_size, rank, num_processes) for rank in range(num_processes)]
    covered = sorted(start + offset for share in shares for _, start, count in share for offset in range(count))
    assert covered == list(range(num_samples))
    indices = sorted(index for share in shares for index, _, _ in share)
    assert indices == list(range(len(indices)))
    assert all(index % num_processes == rank for rank, share in enumerate(shares) for index, _, _ in share)


def test_bad_partitions_are_named():
    with pytest.raises(ValueError, match="process_index must be in \\[0, 2\\), got 2"):
        process_batches(10, 5, 2, 2)
    with pytest.raises(ValueError, match="got 0 and 5"):
        process_batches(0, 5)


def test_batch_seeds_differ_for_every_seed_and_batch_pair():
    """seed + batch would give seed 0's second batch seed 1's first: every pair of a 20 x 20 grid is its own stream."""
    seeds = {batch_seed(seed, index) for seed in range(20) for index in range(20)}
    assert len(seeds) == 400
    assert batch_seed(-1, 0) == batch_seed(2**64 - 1, 0)  # negative seeds as torch takes them, modulo 2**64


def _digits_pipeline():
    pipe = load_pipeline("ncsn-digits-classes")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_batches_sampled_by_any_process_give_the_one_process_images():
    """The images of batch b do not depend on what was sampled before it: three processes' batches, reassembled by
    batch index, equal one process's run (the property a launched run's equality rests on)."""
    pipe = _digits_pipeline()
    images, labels, calls, _ = sample_in_batches(pipe, 7, 3, seed=11, num_inference_steps=4)
    assert images.shape == (7, 1, 8, 8) and labels.tolist() == [0, 1, 2, 3, 4, 5, 6] and calls == [4, 4, 4]
    pieces = {}
    for rank in (2, 1, 0):  # out of order on purpose
        for index, start, count in process_batches(7, 3, rank, 3):
            pieces[start], _ = sample_batch(pipe, index, start, count, 11, labels, 4, None)
    assert torch.equal(torch.cat([pieces[start] for start in sorted(pieces)]), images)
    other, _, _, _ = sample_in_batches(pipe, 7, 3, seed=12, num_inference_steps=4)
    assert not torch.allclose(other, images)


def test_output_dir_writes_numbered_images_equal_to_the_evaluations_samples(tmp_path, capsys):
    """``ncsn-sample --output_dir`` and ``ncsn-eval`` sample with the same batches and seeds: the files are the
    evaluation's images in 8 bits, with the class asked for each recorded."""
    folder = tmp_path / "samples"
    arguments = ["--model", "ncsn-digits-classes", "--num_samples", "7", "--batch_size", "3", "--seed", "11"]
    assert sample.main([*arguments, *FEW_STEPS, "--output_dir", str(folder)]) == 0
    assert "Wrote 7 samples to" in capsys.readouterr().out
    files = sorted(path.name for path in folder.iterdir())
    assert files == [f"{index:06d}.png" for index in range(7)] + ["samples.json"]
    record = json.loads((folder / "samples.json").read_text())
    assert record["class_labels"] == list(range(7)) and record["seed"] == 11 and record["processes"] == 1
    images, _, _, _ = sample_in_batches(_digits_pipeline(), 7, 3, seed=11, num_inference_steps=4)
    for index, expected in enumerate(samples_to_pil(images, (0.0, 1.0))):
        assert Image.open(folder / f"{index:06d}.png").tobytes() == expected.tobytes()
    assert not list(tmp_path.glob(".samples*"))  # the staging folder became the folder


def test_output_dir_refusals_name_the_problem(tmp_path, capsys):
    cases = [
        (["--output", "grid.png", "--num_samples", "2"], "--output does not go with it"),
        (["--image", "a.png", "--num_samples", "2"], "--image does not go with it"),
        (["--num_samples", "2", "--output_dir", str(tmp_path)], "exists; name a new folder"),
        ([], "--output_dir needs --num_samples"),
        (["--num_samples", "2", "--model", "ncsn-toy"], "samples points"),
        (["--num_samples", "2", "--class_label", "3"], "--class_label needs a class-conditional model"),
    ]
    for extra, message in cases:
        arguments = ["--model", "ncsn-digits", "--output_dir", str(tmp_path / "new"), *extra]
        with pytest.raises(SystemExit) as exit_info:
            sample.main(arguments)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, extra
        assert not (tmp_path / "new").exists()
    with pytest.raises(SystemExit):
        sample.main(["--model", "ncsn-digits", "--num_samples", "2", "--output", str(tmp_path / "g.png")])
    assert "--num_samples is the size of --output_dir's folder" in capsys.readouterr().err


def test_a_failure_part_way_leaves_no_folder(tmp_path, monkeypatch):
    calls = []

    def failing_batch(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return sample_batch(*args, **kwargs)

    monkeypatch.setattr(batches, "sample_batch", failing_batch)
    folder = tmp_path / "samples"
    arguments = ["--model", "ncsn-digits", "--num_samples", "6", "--batch_size", "3", *FEW_STEPS]
    with pytest.raises(RuntimeError, match="interrupted"):
        sample.main([*arguments, "--output_dir", str(folder)])
    assert calls == [0, 1] and list(tmp_path.iterdir()) == []


def _launch(num_processes: int, module: str, arguments, cwd: Path) -> str:
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip
    command = [*launcher, "-m", module] if num_processes > 1 else [sys.executable, "-m", module]
    result = subprocess.run(
        [*command, *arguments], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_two_process_evaluation_and_sampling_equal_one_process(tmp_path):
    """``accelerate launch --num_processes 2`` on the CPU (gloo): the evaluation's figures and the written files equal
    a one-process run's with the same seed. 25 samples in batches of 10: process 0 samples batches 0 and 2, process 1
    batch 1, so the gathering has an uneven last round."""
    evaluation = ["ncsn-digits-classes", "--num_samples", "25", "--batch_size", "10", *FEW_STEPS, "--seed", "3"]
    reports = {}
    for count in (1, 2):
        output = tmp_path / f"eval-{count}.json"
        stdout = _launch(count, "ncsn_pipeline.cli.evaluate", [*evaluation, "--output", str(output)], tmp_path)
        assert stdout.count(f"Wrote {output}.") == 1  # one report, from the main process
        reports[count] = json.loads(output.read_text())
    one, two = reports[1], reports[2]
    assert two["sampling"]["processes"] == 2 and one["sampling"]["processes"] == 1
    assert two["digits"] == one["digits"]  # every figure of the judge, class rate included
    assert two["sampling"]["model_calls_per_batch"] == one["sampling"]["model_calls_per_batch"] == [4, 4, 4]
    timing = "seconds per sample"
    assert [row for row in two["card"]["metrics"] if timing not in row["name"]] == [
        row for row in one["card"]["metrics"] if timing not in row["name"]
    ]

    sampling = ["--model", "ncsn-digits-classes", "--num_samples", "25", "--batch_size", "10", *FEW_STEPS]
    for count in (1, 2):
        stdout = _launch(count, "ncsn_pipeline.cli.sample", [*sampling, "--output_dir", f"out-{count}"], tmp_path)
        assert stdout.count("Wrote 25 samples") == 1
    for index in range(25):
        name = f"{index:06d}.png"
        assert (tmp_path / "out-1" / name).read_bytes() == (tmp_path / "out-2" / name).read_bytes(), name
    records = [json.loads((tmp_path / f"out-{count}" / "samples.json").read_text()) for count in (1, 2)]
    assert records[1].pop("processes") == 2 and records[0].pop("processes") == 1 and records[0] == records[1]
