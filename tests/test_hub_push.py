"""Publishing to the Hub and loading back by repo id, against a local stand-in Hub (tests/hub_stand_in.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import reset_accelerate_state
from ncsn_pipeline import NCSNPipeline, NCSNScheduler, NCSNScoreModel, score_schedulers
from ncsn_pipeline.cli.train import main as train_main
from ncsn_pipeline.hub import HubError, push_folder_to_hub
from ncsn_pipeline.pretrained import pretrained_path
from ncsn_pipeline.scheduling_utils import TunedLevels

sys.path.insert(0, str(Path(__file__).parent))
from hub_stand_in import running_stand_in  # noqa: E402

SAMPLE = dict(batch_size=3, num_inference_steps=3, output_type="np")
TUNED_3 = [3.0, 0.4, 0.03]  # tuned levels of a 3-call run (Karras' would be 3.0, 0.185, 0.01)
# Runs in a fresh process and a fresh cache: loads the repo both ways and saves their samples.
LOAD_BOTH_WAYS = """
import sys, numpy as np, torch
from diffusers import DiffusionPipeline
from ncsn_pipeline import NCSNPipeline
repo, out = sys.argv[1], sys.argv[2]
kwargs = dict(batch_size=3, num_inference_steps=3, output_type="np")
ours = NCSNPipeline.from_pretrained(repo)
plain = DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)
for name, pipe in (("ours", ours), ("plain", plain)):
    pipe.set_progress_bar_config(disable=True)
    np.save(f"{out}/{name}.npy", pipe(generator=torch.Generator().manual_seed(11), **kwargs).images)
print(type(ours).__module__, type(plain).__module__)
"""
# The guide a repository ships (guide/), loaded by "user/name/guide" in a fresh process: its weights saved.
LOAD_GUIDE = """
import sys, torch
from ncsn_pipeline.pretrained import load_pipeline
torch.save(load_pipeline(sys.argv[1] + "/guide").unet.state_dict(), sys.argv[2])
"""
LOAD_OURS_OFFLINE = """
import sys, numpy as np, torch
from ncsn_pipeline import NCSNPipeline
pipe = NCSNPipeline.from_pretrained(sys.argv[1])
pipe.set_progress_bar_config(disable=True)
images = pipe(generator=torch.Generator().manual_seed(11), batch_size=3, num_inference_steps=3, output_type="np").images
np.save(sys.argv[2], images)
"""


# Loads several repos both ways in one fresh process: {name: repo} in argv[1], samples saved to argv[2].
LOAD_MANY_BOTH_WAYS = """
import json, sys, numpy as np, torch
from diffusers import DiffusionPipeline
from ncsn_pipeline import NCSNPipeline
for name, repo in json.loads(sys.argv[1]).items():
    for way, pipe in (("ours", NCSNPipeline.from_pretrained(repo)),
                      ("plain", DiffusionPipeline.from_pretrained(repo, trust_remote_code=True))):
        assert type(pipe.scheduler).__name__ == name, (way, type(pipe.scheduler))
        pipe.set_progress_bar_config(disable=True)
        images = pipe(generator=torch.Generator().manual_seed(11), batch_size=3, num_inference_steps=3,
                      output_type="np").images
        np.save(f"{sys.argv[2]}/{name}-{way}.npy", images)
"""


def _reference_samples(folder: Path) -> np.ndarray:
    pipe = NCSNPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe(generator=torch.Generator().manual_seed(11), **SAMPLE).images


@pytest.fixture
def trained_folder(tmp_path):
    """A freshly trained tiny image pipeline (ncsn-train on digits, a few steps), with checkpoints and logs."""
    out = tmp_path / "trained"
    args = [
        "--dataset_name",
        "digits",
        "--resolution",
        "8",
        "--ngf",
        "4",
        "--train_batch_size",
        "16",
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "2",
        "--report_to",
        "none",
        "--num_samples",
        "4",
        "--sigma_max",
        "3",
        "--num_noise_levels",
        "6",
        "--save_guide_at",
        "2",
        "--output_dir",
        str(out),
    ]
    assert train_main(args) == 0
    reset_accelerate_state()
    return out


@pytest.mark.slow
def test_push_then_load_both_ways_in_a_fresh_process(trained_folder, tmp_path):
    with running_stand_in() as hub:
        with hub.patched_client(tmp_path / "pusher-home"):
            url = push_folder_to_hub(trained_folder, "alice/ncsn-tiny", private=True, pipeline_class=NCSNPipeline)
        assert "alice/ncsn-tiny" in url
        assert hub.repo("alice/ncsn-tiny").private is True
        files = hub.files("alice/ncsn-tiny")
        assert not any(name.startswith(("checkpoint", "logs", "samples")) for name in files)
        assert {
            "model_index.json",
            "README.md",
            "sample_grid.png",
            "pipeline_ncsn.py",
            "unet/diffusion_pytorch_model.safetensors",
            "scheduler/scheduling_dpmpp.py",  # ncsn-train saves the package's default sampler
        } <= set(files)
        assert len(hub.commits("alice/ncsn-tiny")) == 2  # the repo's initial commit + exactly one push
        # The guide --save_guide_at left travels as a pipeline of its own; the card-only records stay behind.
        assert {"guide/model_index.json", "guide/README.md", "guide/unet/diffusion_pytorch_model.safetensors",
                "guide/scheduler/scheduler_config.json"} <= set(files)  # fmt: skip
        assert not any(name.endswith("training_args.json") for name in files)
        assert "## Autoguidance" in files["README.md"].decode()
        result = subprocess.run(
            [sys.executable, "-c", LOAD_GUIDE, "alice/ncsn-tiny", str(tmp_path / "guide.pt")],
            env={**hub.client_env(tmp_path / "guide-home"), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        local_guide = NCSNPipeline.from_pretrained(trained_folder / "guide").unet.state_dict()
        pushed_guide = torch.load(tmp_path / "guide.pt", weights_only=True)
        assert pushed_guide.keys() == local_guide.keys()
        assert all(torch.equal(pushed_guide[key], local_guide[key]) for key in local_guide)

        result = subprocess.run(
            [sys.executable, "-c", LOAD_BOTH_WAYS, "alice/ncsn-tiny", str(tmp_path)],
            env={**hub.client_env(tmp_path / "fresh-home"), "OMP_NUM_THREADS": "1"},  # same threads, same sums
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        reference = _reference_samples(trained_folder)
        np.testing.assert_array_equal(np.load(tmp_path / "ours.npy"), reference)
        np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), reference)

        # The package's own path works offline from the cache, with the Hub down.
        hub.down()
        offline_env = {**hub.client_env(tmp_path / "fresh-home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, "-c", LOAD_OURS_OFFLINE, "alice/ncsn-tiny", str(tmp_path / "off.npy")],
            env=offline_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        np.testing.assert_array_equal(np.load(tmp_path / "off.npy"), reference)


def test_a_failed_upload_leaves_the_old_revision_and_a_retry_succeeds(tmp_path):
    folder = pretrained_path("ncsn-digits")  # the second push replaces the toy model by the digits model
    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        push_folder_to_hub(
            pretrained_path("ncsn-two-gaussians"), "alice/toy", private=False, pipeline_class=NCSNPipeline
        )
        before = hub.commits("alice/toy")
        old_files = hub.files("alice/toy")
        hub.fail_next_commit(after_bytes=2000)  # the connection drops in the middle of the upload
        with pytest.raises(HubError, match="Cannot upload to alice/toy"):
            push_folder_to_hub(folder, "alice/toy", private=False, commit_message="second", pipeline_class=NCSNPipeline)
        assert hub.commits("alice/toy") == before and hub.files("alice/toy") == old_files
        hub.fail_next_commit(status=500)
        with pytest.raises(HubError, match="HTTP 500"):
            push_folder_to_hub(folder, "alice/toy", private=False, commit_message="second", pipeline_class=NCSNPipeline)
        assert hub.commits("alice/toy") == before
        push_folder_to_hub(
            folder, "alice/toy", private=False, commit_message="second", pipeline_class=NCSNPipeline
        )  # the retry
        assert len(hub.commits("alice/toy")) == len(before) + 1
        files = hub.files("alice/toy")
        assert "unet/modeling_ncsn.py" in files and "unet/modeling_toy.py" not in files  # no stale code file
        assert hub.repo("alice/toy").private is False


def test_wrong_token_and_unreachable_hub_give_clear_errors(tmp_path):
    folder = pretrained_path("ncsn-two-gaussians")
    with running_stand_in() as hub:
        with hub.patched_client(tmp_path / "home", token="hf_wrong"):
            with pytest.raises(HubError, match="refused the token"):
                push_folder_to_hub(folder, "alice/toy", private=True, pipeline_class=NCSNPipeline)
        assert hub.repo_ids() == []
        with hub.patched_client(tmp_path / "home"):
            hub.down()
            with pytest.raises(HubError, match="unreachable"):
                push_folder_to_hub(folder, "alice/toy", private=True, pipeline_class=NCSNPipeline)
            hub.up()
        assert hub.repo_ids() == []


@pytest.mark.slow  # every sampler through the Hub stand-in (~13 s)
def test_every_sampler_is_pushed_with_its_card_and_reloads_both_ways(tmp_path):
    torch.manual_seed(0)
    unet = NCSNScoreModel(in_channels=1, sample_size=8, ngf=4)
    tuned = NCSNScheduler(sigma_max=3.0, sigma_min=0.01, num_noise_levels=6, steps_per_level=2, step_lr=1e-5).config
    repos, references = {}, {}
    with running_stand_in() as hub:
        with hub.patched_client(tmp_path / "pusher-home"):
            for name, sampler_class in score_schedulers().items():
                # Samplers with one call per level carry tuned levels for 3 calls: the reloaded runs must use them.
                levels = {"tuned_noise_levels": {"3": TUNED_3}} if issubclass(sampler_class, TunedLevels) else {}
                pipe = NCSNPipeline(unet, sampler_class.from_config(tuned, **levels), data_range=(0, 1))
                pipe.set_progress_bar_config(disable=True)
                if levels:
                    pipe.scheduler.set_timesteps(3)
                    assert pipe.scheduler.sigmas.tolist() == TUNED_3
                    pipe.scheduler.set_timesteps()  # back to the config's count, which the card describes
                repos[name] = f"alice/tiny-{name.lower()}"
                pipe.push_to_hub(repos[name], private=True)
                files = hub.files(repos[name])
                index = json.loads(files["model_index.json"])
                assert index["scheduler"] == [index["scheduler"][0], name]
                assert f"scheduler/{index['scheduler'][0]}.py" in files
                assert pipe.scheduler.description in files["README.md"].decode()  # the card names this sampler
                if levels:
                    config = json.loads(files["scheduler/scheduler_config.json"])
                    assert config["tuned_noise_levels"] == {"3": TUNED_3}
                    assert "Tuned noise levels" in files["README.md"].decode()
                references[name] = pipe(generator=torch.Generator().manual_seed(11), **SAMPLE).images
        result = subprocess.run(
            [sys.executable, "-c", LOAD_MANY_BOTH_WAYS, json.dumps(repos), str(tmp_path)],
            env={**hub.client_env(tmp_path / "fresh-home"), "OMP_NUM_THREADS": "1"},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name, reference in references.items():
        for way in ("ours", "plain"):
            np.testing.assert_array_equal(np.load(tmp_path / f"{name}-{way}.npy"), reference, err_msg=f"{name} {way}")


def test_pipeline_push_to_hub_and_training_flag(tmp_path):
    pipe = NCSNPipeline.from_pretrained(pretrained_path("ncsn-two-gaussians"))
    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        pipe.push_to_hub("alice/from-python", private=True)
        index = json.loads(hub.files("alice/from-python")["model_index.json"])
        assert index["_class_name"] == ["pipeline_ncsn", "NCSNPipeline"] and index["data_range"] is None
        with pytest.raises(TypeError):
            pipe.push_to_hub("alice/x")  # visibility must be explicit
        out = tmp_path / "trained"
        code = train_main(
            [
                "--dataset_name",
                "two-gaussians",
                "--num_toy_samples",
                "256",
                "--train_batch_size",
                "64",
                "--hidden_size",
                "8",
                "--max_train_steps",
                "2",
                "--report_to",
                "none",
                "--output_dir",
                str(out),
                "--push_to_hub",
                "--hub_model_id",
                "alice/trained",
                "--hub_public",
                "--hub_token",
                hub.token,
            ]
        )
        assert code == 0
        assert "unet/diffusion_pytorch_model.safetensors" in hub.files("alice/trained")
        record = (out / "training_args.json").read_text()
        assert hub.token not in record  # the token never lands on disk


def test_bundled_cards_pass_the_hub_metadata_validation(tmp_path):
    from huggingface_hub import ModelCard

    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        for name in ("ncsn-digits", "ncsn-two-gaussians"):
            card = ModelCard.load(pretrained_path(name) / "README.md")
            card.validate()  # the stand-in's /api/validate-yaml
            assert card.data.library_name == "diffusers"
        bad = ModelCard("---\npipeline_tag: not-a-task\n---\n# x")
        with pytest.raises(ValueError):
            bad.validate()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["--hub_token TOKEN", "--hub_token=TOKEN", "HF_TOKEN=TOKEN"])
def test_the_hub_token_is_written_nowhere_however_it_is_passed(tmp_path, form):
    """Issue 9, item 1: no token in the output folder, checkpoints, logs, card or pushed repository."""
    with running_stand_in() as hub:
        token = hub.token
        out = tmp_path / "trained"
        args = ["--dataset_name", "two-gaussians", "--num_toy_samples", "256", "--train_batch_size", "64"]
        args += ["--hidden_size", "8", "--max_train_steps", "2", "--checkpointing_steps", "1", "--report_to", "none"]
        args += ["--output_dir", str(out), "--push_to_hub", "--hub_model_id", "alice/secret", "--hub_private"]
        if form.startswith("HF_TOKEN"):
            env = hub.client_env(tmp_path / "home")  # the token comes from the environment only
        else:
            env = hub.client_env(tmp_path / "home", token=None)
            args += form.replace("TOKEN", token).split(" ")
        result = subprocess.run(
            [sys.executable, "-m", "ncsn_pipeline.train", *args],
            env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        pushed = hub.files("alice/secret")
    assert "unet/diffusion_pytorch_model.safetensors" in pushed
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.json" for path in written) and any("checkpoint-2" in str(p) for p in written)
    for path in written:
        assert token.encode() not in path.read_bytes(), path
    for name, content in pushed.items():
        assert token.encode() not in content, name
    assert token not in result.stdout and token not in result.stderr
    record = json.loads((out / "training_args.json").read_text())
    assert record["command"].startswith("ncsn-train") and ("***" in record["command"]) != form.startswith("HF_TOKEN")


def test_abbreviated_flags_are_refused_so_a_token_cannot_slip_past_the_masking(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--dataset_name", "digits", "--output_dir", "x", "--hub_tok", "hf_secret"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --hub_tok ***" in err and "hf_secret" not in err  # refused, and not echoed


COMMANDS = {
    "ncsn-train": "ncsn_pipeline.cli.train",
    "ncsn-train-classifier": "ncsn_pipeline.cli.train_classifier",
    "ncsn-sample": "ncsn_pipeline.cli.sample",
    "ncsn-eval": "ncsn_pipeline.cli.evaluate",
    "ncsn-digits-eval": "ncsn_pipeline.cli.digits_eval",
    "ncsn-convert": "ncsn_pipeline.cli.convert",
    "ncsn-export": "ncsn_pipeline.cli.export",
    "ncsn-push": "ncsn_pipeline.cli.push",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "secret_arguments",
    [["--hub_tok", "s3cr3t-value"], ["--token=s3cr3t-value"], ["--api_key", "s3cr3t-value"], ["hf_s3cr3tvalue1"]],
)
def test_no_command_echoes_a_secret_in_its_usage_error(command, secret_arguments, capsys):
    """argparse repeats unknown arguments in its usage error, which CI logs keep: the value after any token-like flag
    (and any token-shaped word) is masked, in every command."""
    import importlib

    main = importlib.import_module(COMMANDS[command]).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--definitely-unknown-flag", *secret_arguments])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "error" in err
    assert "s3cr3t" not in err
