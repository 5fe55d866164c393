"""Tests for ncsn_pipeline.training_data: image folders, Hugging Face data sets, digits and 2-D toys."""

import math
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn_pipeline.data.digits import load_digits_split
from ncsn_pipeline.training.data import (
    BUILTIN_DATASETS,
    TOY_DATASETS,
    DatasetUnavailableError,
    TrainingData,
    find_image_files,
    load_training_data,
    prepare_image,
    sample_toy,
)


def _gradient(width, height, axis):
    """uint8 image whose value is 4 * column (axis=1) or 4 * row (axis=0)."""
    columns, rows = np.meshgrid(np.arange(width), np.arange(height))
    return ((columns if axis == 1 else rows) * 4).astype(np.uint8)


def _grey_palette_image(size):
    image = Image.new("P", size, 3)
    image.putpalette([value for level in range(256) for value in (level, level, level)])
    return image


@pytest.fixture
def mixed_folder(tmp_path):
    """Images of several sizes and modes, in nested subfolders, plus files that must be ignored."""
    root = tmp_path / "images"
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    (root / ".hidden").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / "rgb.png")  # 40x30
    Image.fromarray(rng.integers(0, 256, (50, 17, 4), dtype=np.uint8)).save(root / "a" / "rgba.png")  # 17x50
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(root / "a" / "b" / "grey.JPG")
    Image.fromarray(rng.integers(0, 256, (33, 31, 2), dtype=np.uint8), mode="LA").save(root / "c" / "la.png")
    Image.fromarray(rng.integers(0, 65536, (24, 36), dtype=np.uint16)).save(root / "c" / "deep.tif")  # I;16
    Image.new("P", (12, 64), 1).save(root / "c" / "palette.gif")
    (root / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8)).save(root / ".hidden" / "skipped.png")
    Image.new("RGB", (8, 8)).save(root / "._skipped.png")
    return root


# --------------------------------------------------------------------------------------------------
# Image folders


def test_folder_mixed_sizes_and_modes(mixed_folder):
    data = load_training_data(train_data_dir=str(mixed_folder), resolution=16)
    assert isinstance(data, TrainingData)
    assert data.is_image and data.num_levels == 256
    assert data.sample_shape == (3, 16, 16)  # an RGB file is present
    assert len(data.dataset) == 6  # .txt, hidden folder and ._ file skipped
    for index in range(len(data.dataset)):
        item = data.dataset[index]
        assert item.dtype == torch.uint8 and item.shape == (3, 16, 16)
        assert torch.equal(item, data.dataset[index])  # no randomness in __getitem__
    assert "6 images" in data.description and "3x16x16" in data.description
    with pytest.raises(IndexError):
        data.dataset[6]
    assert torch.equal(data.dataset[-1], data.dataset[5])


def test_find_image_files_order_and_filters(mixed_folder):
    relative = [os.path.relpath(path, mixed_folder).replace(os.sep, "/") for path in find_image_files(mixed_folder)]
    assert relative == ["a/b/grey.JPG", "a/rgba.png", "c/deep.tif", "c/la.png", "c/palette.gif", "rgb.png"]


def test_channels_inference_and_override(tmp_path, mixed_folder):
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.new("L", (10, 10), 7).save(grey / "l.png")
    Image.new("LA", (10, 12), (7, 255)).save(grey / "la.png")
    Image.new("1", (9, 10), 1).save(grey / "bilevel.png")
    Image.fromarray(np.full((10, 10), 1000, dtype=np.uint16)).save(grey / "deep.png")
    _grey_palette_image((10, 10)).save(grey / "grey_palette.png")
    data = load_training_data(train_data_dir=str(grey), resolution=8)
    assert data.sample_shape == (1, 8, 8)
    assert all(data.dataset[i].shape == (1, 8, 8) for i in range(len(data.dataset)))

    colour_palette = Image.new("P", (10, 10), 0)
    colour_palette.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    colour_palette.save(grey / "red_palette.png")
    assert load_training_data(train_data_dir=str(grey), resolution=8).sample_shape == (3, 8, 8)

    forced = load_training_data(train_data_dir=str(mixed_folder), resolution=8, channels=1)
    assert forced.sample_shape == (1, 8, 8) and forced.dataset[0].shape == (1, 8, 8)
    grey_as_rgb = load_training_data(train_data_dir=str(grey), resolution=8, channels=3).dataset[0]
    assert torch.equal(grey_as_rgb[0], grey_as_rgb[1]) and torch.equal(grey_as_rgb[1], grey_as_rgb[2])


def test_sixteen_bit_is_scaled_not_clipped():
    levels = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    image = Image.fromarray(np.kron(levels, np.ones((2, 2), dtype=np.uint16)))  # 4x4, mode I;16
    assert image.mode == "I;16"
    item = prepare_image(image, resolution=4, channels=1)
    # Pillow's own "I;16" -> "L" conversion would make every non-zero pixel 255.
    assert item[0, ::2, ::2].tolist() == [[0, 100], [200, 255]]


def test_transparency_is_composited_over_black():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red everywhere, but ...
    rgba[:, :2, 3] = 0  # ... transparent on the left
    rgba[:, 2:, 3] = 255
    item = prepare_image(Image.fromarray(rgba), resolution=4, channels=3)
    assert item[:, :, :2].eq(0).all()
    assert item[0, :, 2:].eq(200).all() and item[1:, :, 2:].eq(0).all()


def test_square_image_at_its_own_size_is_unchanged():
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for center_crop in (False, True):
        item = prepare_image(Image.fromarray(pixels), resolution=32, channels=3, center_crop=center_crop)
        assert np.array_equal(item.permute(1, 2, 0).numpy(), pixels)


def test_center_crop_keeps_the_middle_and_squash_keeps_everything():
    wide = Image.fromarray(_gradient(64, 32, axis=1))  # value 4 * column, columns 0..63
    cropped = prepare_image(wide, resolution=32, channels=1, center_crop=True)[0]
    # The centred 32x32 square is columns 16..47, kept pixel for pixel (no rescaling needed).
    assert cropped.tolist() == [[4 * column for column in range(16, 48)]] * 32
    squashed = prepare_image(wide, resolution=32, channels=1, center_crop=False)[0]
    assert all(row == squashed[0].tolist() for row in squashed.tolist())
    assert squashed[0, 0] < 12 and squashed[0, -1] > 240  # both ends of the gradient survive
    assert (squashed[0, 1:].int() - squashed[0, :-1].int()).ge(0).all()

    tall = Image.fromarray(_gradient(16, 48, axis=0))  # value 4 * row, rows 0..47
    cropped = prepare_image(tall, resolution=16, channels=1, center_crop=True)[0]
    assert cropped[:, 0].tolist() == [4 * row for row in range(16, 32)]


def test_center_crop_flag_reaches_the_folder_dataset(tmp_path):
    Image.fromarray(_gradient(64, 32, axis=1)).save(tmp_path / "wide.png")
    cropped = load_training_data(train_data_dir=str(tmp_path), resolution=32, center_crop=True)
    squashed = load_training_data(train_data_dir=str(tmp_path), resolution=32, center_crop=False)
    assert cropped.dataset[0][0, 0, 0] == 64 and cropped.dataset[0][0, 0, -1] == 188
    assert squashed.dataset[0][0, 0, 0] < 12 and squashed.dataset[0][0, 0, -1] > 240
    assert "centre-cropped" in cropped.description and "without cropping" in squashed.description


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:, 20:] = 255  # left half black, right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left edge ends up on top
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    with Image.open(tmp_path / "rotated.png") as image:
        item = prepare_image(image, resolution=8, channels=1)[0]
    assert item[0].eq(0).all() and item[-1].eq(255).all()


@pytest.mark.parametrize("damage", ["truncated", "random_bytes", "truncated_jpeg"])
def test_damaged_file_is_named(tmp_path, damage):
    (tmp_path / "ok").mkdir()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(tmp_path / "ok" / "fine.png")
    bad = tmp_path / "ok" / ("zz_bad.jpg" if damage == "truncated_jpeg" else "zz_bad.png")
    if damage.startswith("truncated"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[: -200 if damage == "truncated" else len(bad.read_bytes()) // 2])
    else:
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="zz_bad.(png|jpg)"):
        load_training_data(train_data_dir=str(tmp_path))


def test_a_fifo_named_like_an_image_is_skipped_with_a_warning(tmp_path, caplog):
    """Issue 9, item 8: reading a FIFO blocks forever; it is not a regular file, so it is never opened."""
    Image.new("RGB", (16, 16), (1, 2, 3)).save(tmp_path / "fine.png")
    os.mkfifo(tmp_path / "pipe.png")
    with caplog.at_level("WARNING"):
        data = load_training_data(train_data_dir=str(tmp_path), resolution=8)
    assert len(data.dataset) == 1
    assert "pipe.png: not a regular file" in caplog.text


def test_folder_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"No images found in .*empty.*\.png, \.jpg"):
        load_training_data(train_data_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="does not exist"):
        load_training_data(train_data_dir=str(tmp_path / "missing"))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a folder"):
        load_training_data(train_data_dir=str(tmp_path / "file.png"))


def test_max_train_samples_and_pickling(mixed_folder):
    data = load_training_data(train_data_dir=str(mixed_folder), resolution=8, max_train_samples=2)
    assert len(data.dataset) == 2
    everything = load_training_data(train_data_dir=str(mixed_folder), resolution=8)
    assert torch.equal(data.dataset[1], everything.dataset[1])  # the first N in sorted order
    # DataLoader workers receive the data set by pickling.
    assert torch.equal(pickle.loads(pickle.dumps(data.dataset))[1], data.dataset[1])
    batch = next(iter(torch.utils.data.DataLoader(everything.dataset, batch_size=6)))
    assert batch.shape == (6, 3, 8, 8) and batch.dtype == torch.uint8


# --------------------------------------------------------------------------------------------------
# Digits


def test_digits_keep_levels_and_block_structure():
    data = load_training_data(dataset_name="digits", resolution=16)
    assert data.sample_shape == (1, 16, 16) and data.num_levels == 17 and data.is_image
    assert len(data.dataset) == 1438
    assert data.description == "scikit-learn digits (train split, 1,438 images), 1x16x16"
    originals, _ = load_digits_split("train")
    for index in (0, 1, 1437):
        item = data.dataset[index]
        assert item.dtype == torch.uint8 and item.shape == (1, 16, 16)
        assert int(item.max()) <= 16
        # Every 8x8 pixel became a constant 2x2 block holding exactly the original value.
        blocks = item.reshape(8, 2, 8, 2)
        assert torch.equal(blocks, originals[index, 0][:, None, :, None].expand(8, 2, 8, 2))
    values = torch.stack([data.dataset[i] for i in range(0, 1438, 7)]).unique()
    assert set(values.tolist()) <= set(range(17)) and len(values) > 10


def test_digits_options():
    native = load_training_data(dataset_name="digits", resolution=8, max_train_samples=5)
    assert len(native.dataset) == 5 and torch.equal(native.dataset[4], load_digits_split("train")[0][4])
    rgb = load_training_data(dataset_name="digits", resolution=32, channels=3)
    item = rgb.dataset[3]
    assert rgb.sample_shape == (3, 32, 32) and item.shape == (3, 32, 32)
    assert torch.equal(item[0], item[2])
    with pytest.raises(ValueError, match="multiple of 8"):
        load_training_data(dataset_name="digits", resolution=12)


# --------------------------------------------------------------------------------------------------
# Toys


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toys_shapes_determinism_and_support(name):
    data = load_training_data(dataset_name=name, num_toy_samples=4000, seed=3)
    assert data.sample_shape == (2,) and data.num_levels is None and not data.is_image
    assert len(data.dataset) == 4000 and name in data.description
    item = data.dataset[0]
    assert item.shape == (2,) and item.dtype == torch.float32
    points = torch.stack([data.dataset[i] for i in range(len(data.dataset))])
    assert torch.isfinite(points).all()
    again = sample_toy(name, 4000, torch.Generator().manual_seed(3))
    assert torch.equal(points, again)
    assert not torch.equal(points, sample_toy(name, 4000, torch.Generator().manual_seed(4)))
    if name == "checkerboard":
        assert points.abs().max() <= 4.0
        squares = torch.floor((points + 4.0) / 2.0).long()
        assert ((squares[:, 0] + squares[:, 1]) % 2 == 0).all()  # only black squares
        assert len(torch.unique(squares, dim=0)) == 8
    elif name == "two-moons":
        assert points[:, 0].abs().max() < 4.5 and points[:, 1].abs().max() < 3.0
        assert points.std(dim=0).min() > 0.5  # "a spread of a few units"
    elif name == "swiss-roll":
        assert points.norm(dim=1).max() < 4.5 and points.norm(dim=1).min() > 0.2


def test_two_gaussians_mode_weight():
    num_samples = 20000
    points = sample_toy("two-gaussians", num_samples, torch.Generator().manual_seed(0))
    # The modes sit 5 * sqrt(2) ~ 7 standard deviations from the line x + y = 0: the side is the mode.
    upper = (points.sum(dim=1) > 0).float().mean().item()
    # Binomial standard error sqrt(0.8 * 0.2 / 20000) ~ 0.0028; allow 5 of them.
    assert abs(upper - 0.8) < 5 * math.sqrt(0.8 * 0.2 / num_samples)
    upper_points = points[points.sum(dim=1) > 0]
    assert torch.allclose(upper_points.mean(dim=0), torch.tensor([5.0, 5.0]), atol=0.05)
    assert torch.allclose(upper_points.std(dim=0), torch.tensor([1.0, 1.0]), atol=0.05)


def test_toy_errors():
    with pytest.raises(ValueError, match="two-gaussians, two-moons, swiss-roll, checkerboard"):
        sample_toy("three-gaussians", 10)
    with pytest.raises(ValueError, match="num_toy_samples"):
        load_training_data(dataset_name="two-moons", num_toy_samples=1)
    assert len(load_training_data(dataset_name="two-moons", max_train_samples=10).dataset) == 10


# --------------------------------------------------------------------------------------------------
# Hugging Face data sets


def test_local_hf_imagefolder_loads(tmp_path):
    folder = tmp_path / "hf_images"
    folder.mkdir()
    for index in range(3):
        Image.new("L", (12 + index, 10), 20 * index).save(folder / f"{index}.png")
    data = load_training_data(dataset_name=str(folder), cache_dir=str(tmp_path / "cache"), resolution=8)
    assert data.sample_shape == (1, 8, 8) and data.num_levels == 256 and len(data.dataset) == 3
    assert sorted(int(data.dataset[i][0, 0, 0]) for i in range(3)) == [0, 20, 40]
    assert "3 images" in data.description
    with pytest.raises(ValueError, match=r"'pixels'.*\['image'\]"):
        load_training_data(dataset_name=str(folder), cache_dir=str(tmp_path / "cache"), image_column="pixels")


def test_dataset_saved_to_disk_loads(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (10, 14), (index, 0, 0)) for index in range(4)]
    saved = datasets.Dataset.from_dict({"img": images, "label": [0, 1, 2, 3]})
    saved.cast_column("img", datasets.Image()).save_to_disk(str(tmp_path / "saved"))
    data = load_training_data(
        dataset_name=str(tmp_path / "saved"), image_column="img", resolution=4, max_train_samples=3
    )
    assert data.sample_shape == (3, 4, 4) and len(data.dataset) == 3
    assert [int(data.dataset[i][0, 0, 0]) for i in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"'image'.*\['img', 'label'\]"):
        load_training_data(dataset_name=str(tmp_path / "saved"))


def test_unreachable_hub_gives_offline_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetUnavailableError, match="--train_data_dir") as caught:
        load_training_data(dataset_name="nobody/no-such-dataset", cache_dir=str(tmp_path))
    assert isinstance(caught.value, ValueError)
    assert "nobody/no-such-dataset" in str(caught.value) and "digits" in str(caught.value)
    with pytest.raises(DatasetUnavailableError, match="did you mean the built-in 'two-moons'"):
        load_training_data(dataset_name="two-moon", cache_dir=str(tmp_path))


# --------------------------------------------------------------------------------------------------
# Arguments


def test_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one.*dataset_name=None, train_data_dir=None"):
        load_training_data()
    with pytest.raises(ValueError, match="exactly one.*dataset_name='digits'.*train_data_dir="):
        load_training_data(dataset_name="digits", train_data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="dataset_config_name"):
        load_training_data(dataset_name="digits", dataset_config_name="default")


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(resolution=3), "resolution must be an even integer >= 4"),
        (dict(resolution=2), "resolution must be an even integer >= 4"),
        (dict(resolution=18 - 1), "got 17"),
        (dict(resolution=16.0), "got 16.0"),
        (dict(channels=2), "channels must be None"),
        (dict(channels=4), "got 4"),
        (dict(max_train_samples=0), "max_train_samples must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments(options, message):
    with pytest.raises(ValueError, match=message):
        load_training_data(dataset_name="digits", **options)


def test_builtin_names():
    assert BUILTIN_DATASETS == ("digits", "fashion-mnist", "two-gaussians", "two-moons", "swiss-roll", "checkerboard")
    assert TOY_DATASETS == BUILTIN_DATASETS[2:]


def test_a_folder_smaller_than_the_batch_is_refused_with_the_batch_to_use(tmp_path, capsys):
    """Defect guarded: the README's folder example failed on any folder under 128 images without saying what to do."""
    from ncsn_pipeline.cli.train import main

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(5):
        Image.fromarray(np.full((8, 8), 40 * index, dtype=np.uint8)).save(folder / f"{index}.png")
    arguments = ["--train_data_dir", str(folder), "--resolution", "8", "--output_dir", str(tmp_path / "out")]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "--train_batch_size 128 is larger than the data set (5 examples): pass --train_batch_size 5" in error
    assert not (tmp_path / "out" / "model_index.json").exists()
