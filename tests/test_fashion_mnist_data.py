"""Fashion-MNIST from IDX files: the reader, the training data source, and what happens when the data is missing.

Most tests write a small IDX slice of their own (a few made-up images); one reads Debian's real files when the
``dataset-fashion-mnist`` package is installed (``.ci/run`` installs it).
"""

import gzip

import numpy as np
import pytest
import torch

from ncsn_pipeline.data import fashion_mnist as fashion_mnist_data
from ncsn_pipeline.data.fashion_mnist import (
    DEBIAN_FOLDER,
    FASHION_MNIST_CLASSES,
    FashionMNISTUnavailableError,
    idx_folder_has_split,
    load_fashion_mnist,
    read_idx,
)
from ncsn_pipeline.training.data import load_training_data


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_split(folder, split, images, labels, compress):
    names = fashion_mnist_data.IDX_FILES[split]
    for name, array in zip(names, (images, labels)):
        data = _idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


@pytest.fixture
def idx_folder(tmp_path):
    """Twelve made-up 28x28 images: image i is filled with grey level 20 i, label i % 10; train gzipped, test raw."""
    images = np.stack([np.full((28, 28), 20 * index, dtype=np.uint8) for index in range(12)])
    labels = np.arange(12, dtype=np.uint8) % 10
    _write_split(tmp_path, "train", images, labels, compress=True)
    _write_split(tmp_path, "test", images[:5], labels[:5], compress=False)
    return tmp_path


def test_read_idx_reads_gzipped_and_raw_files(idx_folder):
    train = read_idx(idx_folder / "train-images-idx3-ubyte.gz")
    test = read_idx(idx_folder / "t10k-images-idx3-ubyte")
    assert train.shape == (12, 28, 28) and test.shape == (5, 28, 28) and int(train[3, 0, 0]) == 60
    images, labels = load_fashion_mnist("test", folder=idx_folder)
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00\x0d\x03" + b"\x00" * 12, "is not an IDX file of unsigned bytes"),
        (b"\x00\x00\x08\x03\x00\x00", "header is incomplete"),
        (_idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))[:-10], "is truncated or not what it says"),
    ],
)
def test_broken_idx_files_are_named(tmp_path, content, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_mismatched_files_and_bad_labels_are_refused(tmp_path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    _write_split(tmp_path, "test", images, np.array([0, 1], dtype=np.uint8), compress=False)
    with pytest.raises(ValueError, match="do not match"):
        load_fashion_mnist("test", folder=tmp_path)
    _write_split(tmp_path, "test", images, np.array([0, 1, 12], dtype=np.uint8), compress=False)
    with pytest.raises(ValueError, match="has label 12; Fashion-MNIST's labels are 0 to 9"):
        load_fashion_mnist("test", folder=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_fashion_mnist("validation", folder=tmp_path)


def test_training_reads_the_idx_folder_with_class_names(idx_folder):
    data = load_training_data(
        dataset_name="fashion-mnist", train_data_dir=idx_folder, resolution=56, class_conditional=True
    )
    image, label = data.dataset[3]
    assert data.sample_shape == (1, 56, 56) and data.num_levels == 256 and len(data.dataset) == 12
    assert image.shape == (1, 56, 56) and int(image.min()) == int(image.max()) == 60 and int(label) == 3
    assert data.class_names == list(FASHION_MNIST_CLASSES) and "IDX files in" in data.description
    assert (
        len(
            load_training_data(
                dataset_name="fashion-mnist", train_data_dir=idx_folder, resolution=28, max_train_samples=4
            ).dataset
        )
        == 4
    )
    with pytest.raises(ValueError, match="resolution must be a multiple of 28"):
        load_training_data(dataset_name="fashion-mnist", train_data_dir=idx_folder, resolution=32)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist_data, "DEBIAN_FOLDER", tmp_path / "nowhere")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FashionMNISTUnavailableError, match="apt-get install dataset-fashion-mnist") as error:
        load_fashion_mnist("train", cache_dir=str(tmp_path / "cache"))
    assert "--train_data_dir" in str(error.value) and "zalando-datasets/fashion_mnist" in str(error.value)
    with pytest.raises(FashionMNISTUnavailableError, match="has no train-images-idx3-ubyte"):
        load_fashion_mnist("train", folder=tmp_path)


def test_the_training_command_takes_the_idx_folder(idx_folder, tmp_path):
    from ncsn_pipeline.cli.train import parse_args

    args = parse_args(["--dataset_name", "fashion-mnist", "--train_data_dir", str(idx_folder), "--output_dir", "x"])
    assert args.dataset_name == "fashion-mnist" and args.train_data_dir == str(idx_folder)
    with pytest.raises(SystemExit):
        parse_args(["--dataset_name", "digits", "--train_data_dir", str(idx_folder), "--output_dir", "x"])


@pytest.mark.skipif(not idx_folder_has_split(DEBIAN_FOLDER, "test"), reason="Debian's dataset-fashion-mnist is absent")
def test_the_real_test_split_has_ten_balanced_classes():
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10_000, 1, 28, 28) and torch.bincount(labels).tolist() == [1000] * 10
    assert 60 < float(images.float().mean()) < 90  # mostly dark background, bright garments (mean 73 of 255)
