"""Issue 21's and 33's hostile inputs, end to end: ``ncsn-convert`` and ``ncsn-sample`` run as a user runs them, in a
fresh process with an explicit memory cap (address space) and CPU-time and wall-time limits (slow tier).

The fast tier checks each refusal in-process; here the bombs are real (a 1,000:1 deflated zip entry, a YAML alias
chain of 10^9 items, an NCSN++ config of many gigabytes, configs that never end), so a check that runs too late
shows as a memory error, a kill or a timeout instead of the one-line refusal. A genuine conversion under the same cap
shows the cap leaves room for real work.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from helpers import write_wide_ncsnpp_config

resource = pytest.importorskip("resource", reason="memory caps use POSIX rlimits")

pytestmark = pytest.mark.slow

REFERENCES = Path(__file__).parent / "data" / "reference-checkpoints"
MEMORY_CAP = 3 * 2**30  # bytes of address space: a tiny conversion needs well under this (the control case)
TIME_LIMIT = 120  # seconds per run; a refusal takes the few seconds of start-up
CONVERT = "import sys; from ncsn_pipeline.cli.convert import main; sys.exit(main())"
SAMPLE = "import sys; from ncsn_pipeline.cli.sample import main; sys.exit(main())"
# Three bytearray(2**31 - 1) calls: 6 GiB that torch.load(weights_only=True) allocates from 40 bytes of pickle.
BYTEARRAY_BOMB = b"\x80\x02c__builtin__\nbytearray\nq\x00" + b"h\x00J\xff\xff\xff\x7f\x85R" * 3 + b"\x87."


def _convert_capped(*arguments: str, script: str = CONVERT) -> subprocess.CompletedProcess:
    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        resource.setrlimit(resource.RLIMIT_CPU, (TIME_LIMIT, TIME_LIMIT))

    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, arguments)],
        preexec_fn=cap_memory,
        timeout=TIME_LIMIT,
        capture_output=True,
        text=True,
        env=environment,
    )


def _assert_refused(result: subprocess.CompletedProcess, message: str, output: Path, command="ncsn-convert") -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(f"{command}: error: ") and message in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not output.exists()


def test_a_genuine_conversion_fits_under_the_cap(tmp_path):
    folder = REFERENCES / "ncsnv2-cifar10-tiny"
    output = tmp_path / "out"
    result = _convert_capped(folder / "checkpoint.pth", "--config", folder / "config.yml", "--output_dir", output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (output / "model_index.json").exists()


def test_a_zip_bomb_checkpoint_is_refused_from_its_directory(tmp_path):
    """4 GiB of zeros deflated into ~4 MB: reading the entry (as torch.load does) needs more than the cap."""
    plain = tmp_path / "plain.pth"
    torch.save({"weights": torch.zeros(16)}, plain)
    bomb = tmp_path / "checkpoint.pth"
    chunk = bytes(64 * 2**20)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target:
        for info in source.infolist():
            if info.filename.endswith("/data/0"):  # the tensor's storage
                with target.open(info.filename, "w", force_zip64=True) as entry:
                    for _ in range(64):
                        entry.write(chunk)
            else:
                target.writestr(info.filename, source.read(info.filename))
    assert bomb.stat().st_size < 32 * 2**20
    output = tmp_path / "out"
    config = REFERENCES / "ncsnv2-cifar10-tiny" / "config.yml"
    _assert_refused(_convert_capped(bomb, "--config", config, "--output_dir", output), "expands to", output)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Nine levels of ten aliases: 10^9 strings once expanded."""
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    original = (REFERENCES / "ncsnv2-cifar10-tiny" / "config.yml").read_text()
    bomb = tmp_path / "config.yml"
    bomb.write_text("\n".join(levels) + "\n" + original.replace("dataset: CIFAR10", "dataset: *a9"))
    output = tmp_path / "out"
    checkpoint = REFERENCES / "ncsnv2-cifar10-tiny" / "checkpoint.pth"
    _assert_refused(_convert_capped(checkpoint, "--config", bomb, "--output_dir", output), "YAML alias", output)


def test_an_ncsnpp_config_of_many_gigabytes_is_refused_before_building(tmp_path):
    checkpoint, huge = write_wide_ncsnpp_config(tmp_path, nf=4096)
    output = tmp_path / "out"
    result = _convert_capped(checkpoint, "--config", huge, "--output_dir", output)
    _assert_refused(result, "nf must be a whole number from 4 to 256, got 4096", output)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_config_that_never_ends_is_refused_in_time(kind, tmp_path):
    if kind == "fifo":
        config = tmp_path / "config.yml"
        os.mkfifo(config)  # nobody ever writes to it: reading blocks forever
    else:
        config = Path(kind)  # endless zeros
    output = tmp_path / "out"
    checkpoint = REFERENCES / "ncsnv2-cifar10-tiny" / "checkpoint.pth"
    result = _convert_capped(checkpoint, "--config", config, "--output_dir", output)
    _assert_refused(result, "not a regular file", output)


def test_the_pickle_bomb_is_real_under_the_cap(tmp_path):
    """The control: torch.load(weights_only=True) itself, under the same cap, does not refuse the file cleanly (it
    runs out of memory allocating the bytearrays), so the refusals below come from reading the opcodes first."""
    bomb = tmp_path / "bomb.bin"
    bomb.write_bytes(BYTEARRAY_BOMB)
    script = "import sys, torch; torch.load(sys.argv[1], weights_only=True)"
    result = _convert_capped(bomb, script=script)
    assert result.returncode != 0 and "MemoryError" in result.stderr, result.stderr[-2000:]


def test_a_bin_pickle_bomb_is_refused_by_name_under_the_cap(tmp_path):
    """``ncsn-sample`` on a pipeline folder whose only weights are such a ``diffusion_pytorch_model.bin``."""
    from ncsn_pipeline.pretrained import pretrained_path

    folder = shutil.copytree(pretrained_path("ncsn-digits"), tmp_path / "pipeline")
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(BYTEARRAY_BOMB)
    output = tmp_path / "samples.png"
    result = _convert_capped("--model", folder, "--output", output, script=SAMPLE)
    _assert_refused(result, "names __builtin__.bytearray in its pickle", output, command="ncsn-sample")


def test_a_checkpoint_pickle_bomb_is_refused_by_name_under_the_cap(tmp_path):
    bomb = tmp_path / "checkpoint.pth"
    bomb.write_bytes(BYTEARRAY_BOMB)
    output = tmp_path / "out"
    config = REFERENCES / "ncsnv2-cifar10-tiny" / "config.yml"
    result = _convert_capped(bomb, "--config", config, "--output_dir", output)
    _assert_refused(result, "names __builtin__.bytearray in its pickle", output)
