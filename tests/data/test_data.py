"""The data pipeline: PCA lighting, ten patches, bad files, the demo data and its statistics."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

from alexnet.data import BatchTransform, ImageFolderDataModule, PCALighting, ShapesDataModule, eval_transform
from alexnet.data.shapes import CLASSES, generate
from alexnet.data.stats import compute_stats
from alexnet.data.transforms import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    CentreCrop,
    RandomCropFlip,
    SubtractMean,
    TenPatches,
    crop_batch,
)
from alexnet.errors import DataError


def _batch(samples: list[dict]) -> dict:
    return torch.utils.data.default_collate(samples)


def test_training_draws_match_the_papers_augmentation_statistically():
    """Crop offsets uniform over all 30x30 positions, half the images reflected, lighting with §4.1's covariance."""
    torch.manual_seed(0)
    draw = RandomCropFlip(lighting_std=0.1)
    image = torch.zeros(3, 256, 256, dtype=torch.uint8)
    samples = [draw(image) for _ in range(20000)]
    crops = torch.stack([s["crop"] for s in samples])
    for offsets in (crops[:, 0], crops[:, 1]):  # top and left: 30 values, each ~1/30 of the draws
        counts = torch.bincount(offsets, minlength=30).double()
        assert len(counts) == 30 and (counts / len(samples) - 1 / 30).abs().max() < 0.01
    assert abs(crops[:, 2].double().mean() - 0.5) < 0.02
    assert samples[0]["image"].shape == (3, 227, 227) and samples[0]["image"].dtype == torch.uint8
    shifts = PCALighting().shift(torch.stack([s["lighting"] for s in samples]))
    eigvec, eigval = torch.tensor(IMAGENET_EIGVEC), torch.tensor(IMAGENET_EIGVAL)
    expected = eigvec @ torch.diag((0.1 * eigval) ** 2) @ eigvec.T  # Cov(P (a * l)), a ~ N(0, 0.1^2)
    torch.testing.assert_close(shifts.T.cov(), expected, rtol=0.05, atol=2e-6)
    assert shifts.mean(0).abs().max() < 1e-3


def test_the_device_half_equals_normalizing_the_whole_image_then_cropping():
    """Lighting, a per-pixel mean and the scale on the cropped uint8 patch = the paper's order on the 256x256 image."""
    torch.manual_seed(1)
    images = torch.randint(0, 256, (6, 3, 256, 256), dtype=torch.uint8)
    mean_image = torch.rand(3, 256, 256)
    lighting = PCALighting()
    transform = BatchTransform(SubtractMean(mean_image, input_scale=255.0), lighting)
    samples = [RandomCropFlip(0.1)(image) for image in images]
    assert {bool(s["crop"][2]) for s in samples} == {True, False}  # both reflected and not
    out = transform(_batch(samples))
    for image, sample, result in zip(images, samples, out, strict=True):
        top, left, flipped = sample["crop"].tolist()
        whole = image.float() / 255 + lighting.shift(sample["lighting"][None])[0][:, None, None]
        whole = (whole - mean_image) * 255
        expected = whole[:, top : top + 227, left : left + 227]
        torch.testing.assert_close(result, expected.flip(-1) if flipped else expected, rtol=0, atol=1e-4)
    # Validation: the centre crop, no lighting.
    centre = transform(_batch([CentreCrop()(image) for image in images]))
    expected = ((images.float() / 255 - mean_image) * 255)[..., 14:241, 14:241]
    torch.testing.assert_close(centre, expected, rtol=0, atol=1e-4)  # the same arithmetic, in another order


@pytest.mark.parametrize("mean", ["per_channel", "per_pixel", "per_pixel_uncut"])
def test_the_cpu_float_work_equals_the_gather_on_every_kind_of_mean(mean):
    """SubtractMean.from_uint8 (slices, image by image) = forward after lighting (the gather the GPU runs)."""
    torch.manual_seed(2)
    size = 256 if mean == "per_pixel_uncut" else 227
    means = {
        "per_channel": torch.rand(3),
        "per_pixel": torch.rand(3, 256, 256),
        "per_pixel_uncut": torch.rand(3, 256, 256),
    }
    normalization = SubtractMean(means[mean], input_scale=255.0)
    images = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8)
    crop = torch.stack([torch.randint(0, 256 - size + 1, (8,)), torch.randint(0, 256 - size + 1, (8,)),
                        torch.arange(8) % 2], dim=1)  # fmt: skip
    shift = torch.randn(8, 3) * 0.05
    expected = normalization(images.float() / 255 + shift[:, :, None, None], crop)
    torch.testing.assert_close(normalization.from_uint8(images, crop, shift), expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(normalization.from_uint8(images, crop), normalization(images.float() / 255, crop),
                               rtol=0, atol=1e-4)  # fmt: skip


def test_crop_batch_cuts_and_reflects_each_image():
    images = torch.arange(2 * 3 * 8 * 8).view(2, 3, 8, 8)
    crop = torch.tensor([[1, 2, 0], [3, 0, 1]])
    cut = crop_batch(images, crop, 4)
    torch.testing.assert_close(cut[0], images[0, :, 1:5, 2:6])
    torch.testing.assert_close(cut[1], images[1, :, 3:7, 0:4].flip(-1))
    torch.testing.assert_close(crop_batch(images[0], crop, 4)[1], images[0, :, 3:7, 0:4].flip(-1))


def test_subtract_mean_per_channel_and_per_pixel():
    image = torch.rand(1, 3, 4, 4)
    channel = SubtractMean([0.1, 0.2, 0.3], input_scale=255.0)(image)
    torch.testing.assert_close(channel, (image - torch.tensor([0.1, 0.2, 0.3])[:, None, None]) * 255)
    mean_image = torch.rand(3, 4, 4)
    torch.testing.assert_close(SubtractMean(mean_image, input_scale=1.0)(image), image - mean_image)


def test_ten_patches_are_corners_centre_and_their_reflections():
    image = v2.Compose([v2.ToImage(), v2.Resize(256), v2.CenterCrop(256)])(
        Image.fromarray((torch.rand(300, 280, 3) * 255).byte().numpy())
    )
    transform = BatchTransform(SubtractMean([0, 0, 0], 1.0))
    crops = transform(_batch([TenPatches()(image)]))[0]
    centre = transform(_batch([CentreCrop()(image)]))[0]
    assert crops.shape == (10, 3, 227, 227)
    torch.testing.assert_close(crops[4], centre)  # index 4 is the single centre crop
    # 5-9 are the same five patches of the reflected image: its top-left is our top-right, mirrored.
    torch.testing.assert_close(crops[5], crops[1].flip(-1))
    torch.testing.assert_close(crops[7], crops[3].flip(-1))
    mirrored = transform(_batch([TenPatches()(image.flip(-1))]))[0]
    torch.testing.assert_close(crops[5:], mirrored[:5])
    assert len({c.sum().item() for c in crops[:5]}) == 5  # five different patches


def test_eval_transform_of_one_image_is_the_validation_pipeline(image_folder):
    dm = ImageFolderDataModule(str(image_folder), batch_size=2, num_workers=0, verify=False)
    dm.setup("fit")
    batch, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    with Image.open(dm.val_set.samples[1][0]) as image:
        one = eval_transform(dm.normalization)(image.convert("RGB"))
        patches = eval_transform(dm.normalization, ten_crop=True)(image.convert("RGB"))
    assert one.shape == (3, 227, 227) and patches.shape == (10, 3, 227, 227)
    torch.testing.assert_close(one, batch[1])
    torch.testing.assert_close(patches[4], one)


def _datamodule(root: Path, **kwargs) -> ImageFolderDataModule:
    return ImageFolderDataModule(str(root), batch_size=4, num_workers=0, lighting_std=0.1, **kwargs)


def test_datamodule_batches(image_folder):
    dm = _datamodule(image_folder)
    dm.setup("fit")
    assert dm.classes == ["cat", "dog", "fox"] and dm.num_classes == 3
    inputs, labels = next(iter(dm.train_dataloader()))
    assert inputs["image"].shape == (4, 3, 227, 227) and inputs["image"].dtype == torch.uint8  # what workers send
    images, labels = dm.on_after_batch_transfer((inputs, labels), 0)
    assert images.shape == (4, 3, 227, 227) and images.dtype == torch.float32
    assert labels.shape == (4,)
    # Mean subtracted, raw 0-255 range as the paper: values well outside [0, 1].
    assert images.min() < -50 and images.max() > 50
    patches, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert patches.shape[1:] == (10, 3, 227, 227)


def test_grayscale_cmyk_and_png_in_jpeg_become_rgb(image_folder):
    folder = image_folder / "train" / "cat"
    Image.new("L", (40, 30), 128).save(folder / "gray.JPEG")
    Image.new("CMYK", (40, 30), (0, 255, 0, 0)).save(folder / "cmyk.JPEG")
    Image.new("RGB", (40, 30), (1, 2, 3)).save(folder / "png_inside.JPEG", format="PNG")
    dm = _datamodule(image_folder)
    dm.setup("fit")  # verify passes: all three decode
    for name in ("gray", "cmyk", "png_inside"):
        index = next(i for i, (p, _) in enumerate(dm.train_set.samples) if Path(p).stem == name)
        sample, label = dm.train_set[index]
        assert sample["image"].shape == (3, 227, 227) and label == 0


def test_corrupt_and_truncated_images_are_named_before_training(image_folder):
    good = image_folder / "train" / "dog" / "dog_0.JPEG"
    (image_folder / "train" / "dog" / "truncated.JPEG").write_bytes(good.read_bytes()[:300])
    (image_folder / "val" / "fox" / "garbage.JPEG").write_bytes(b"not an image at all")
    dm = _datamodule(image_folder)
    with pytest.raises(DataError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert "2 image(s)" in message and "truncated.JPEG" in message and "garbage.JPEG" in message
    assert "delete" in message
    # Without the scan, the loader still names the file when it reaches it.
    dm = _datamodule(image_folder, verify=False)
    dm.setup("fit")
    index = next(i for i, (p, _) in enumerate(dm.val_set.samples) if p.endswith("garbage.JPEG"))
    with pytest.raises(DataError, match=r"garbage\.JPEG"):
        dm.val_set[index]


def test_missing_root_empty_split_and_class_mismatch(tmp_path, image_folder):
    with pytest.raises(DataError, match=r"data.root=.*nowhere does not exist.*train/<class>"):
        _datamodule(tmp_path / "nowhere").setup("fit")
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(DataError, match="no usable class folders"):
        _datamodule(empty).setup("fit")
    (image_folder / "val" / "cat").rename(image_folder / "val" / "cow")
    with pytest.raises(DataError, match="different classes"):
        _datamodule(image_folder).setup("fit")


def test_a_model_for_other_classes_is_refused(image_folder):
    dm = _datamodule(image_folder, verify=False)
    dm.setup("test")
    dm.check_classes(3, ["cat", "dog", "fox"])
    with pytest.raises(DataError, match=r"the model has 5 classes but .* has 3"):
        dm.check_classes(5)
    with pytest.raises(DataError, match=r"label 1 is class 'cow' but .* it is 'dog'"):
        dm.check_classes(3, ["cat", "cow", "fox"])


def test_stats_match_a_direct_computation(image_folder):
    stats = compute_stats(image_folder, workers=0)
    assert stats["num_images"] == 12 and stats["mean_image"].shape == (3, 256, 256)
    resize = v2.Compose([v2.ToImage(), v2.Resize(256, antialias=True), v2.CenterCrop(256)])
    pixels = torch.cat(
        [resize(img).double().div(255).reshape(3, -1) for img, _ in datasets.ImageFolder(image_folder / "train")], 1
    )
    torch.testing.assert_close(stats["mean"].double(), pixels.mean(1), rtol=1e-4, atol=1e-5)
    cov = pixels.cov(correction=0)
    vectors, values = stats["eigvec"].double(), stats["eigval"].double()
    torch.testing.assert_close(vectors @ torch.diag(values) @ vectors.T, cov, rtol=1e-3, atol=1e-6)
    assert values[0] >= values[1] >= values[2]


def test_demo_data_is_deterministic_and_complete(tmp_path):
    a = generate(tmp_path / "a", train_per_class=3, val_per_class=1, workers=2)
    b = generate(tmp_path / "b", train_per_class=3, val_per_class=1, workers=1)
    files = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert len(files) == len(CLASSES) * 4 and len(CLASSES) >= 10
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert json.loads((a / "shapes.json").read_text())["train_per_class"] == 3
    mtime = (a / "shapes.json").stat().st_mtime
    generate(tmp_path / "a", train_per_class=3, val_per_class=1)  # already there: untouched
    assert (a / "shapes.json").stat().st_mtime == mtime
    with Image.open(a / files[0]) as image:
        assert image.size == (256, 256) and image.mode == "RGB"


def test_demo_classes_differ_visibly(tmp_path):
    """Not noise: the mean image of each class differs from the others'."""
    root = generate(tmp_path / "s", train_per_class=20, val_per_class=1)
    dm = ShapesDataModule(str(root), train_per_class=20, val_per_class=1, batch_size=8, num_workers=0)
    dm.setup("fit")
    assert (root / "stats.pt").exists()

    # Foreground fraction per class: a circle covers more than a star, a square more than a triangle.
    def fill(label: str) -> float:
        values = []
        for path in sorted((root / "train" / label).glob("*.jpg")):
            x = pil_to_tensor(Image.open(path)).float()
            background = x[:, :4, :4].mean((1, 2), keepdim=True)
            values.append(((x - background).abs().sum(0) > 60).float().mean().item())
        return sum(values) / len(values)

    assert fill("circle") > 1.3 * fill("star")
    assert fill("square") > 1.2 * fill("triangle")
    assert fill("circle") > 1.1 * fill("ring")  # a ring has a hole: area 0.9² - 0.5² against 0.85² (1.29x)


def test_sort_imagenet_val_and_class_words(tmp_path, image_folder):
    from alexnet.data.imagenet_val import sort_val

    val = tmp_path / "val"
    val.mkdir()
    for i in range(1, 5):
        (val / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"jpeg")
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\nn01443537\nn01440764\nn01443537\n")
    assert sort_val(val, labels) == 4
    assert sorted(p.name for p in (val / "n01440764").iterdir()) == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000003.JPEG",
    ]
    with pytest.raises(DataError, match="flat, unsorted"):
        sort_val(val, labels)  # already sorted: no files left at the top level
    ids = tmp_path / "ids.txt"
    ids.write_text("65\n970\n")
    with pytest.raises(DataError, match="--meta"):
        sort_val(val, ids)
    (image_folder / "LOC_synset_mapping.txt").write_text("cat felis catus\ndog canis familiaris\n")
    dm = ImageFolderDataModule(str(image_folder), num_workers=0, verify=False)
    dm.setup("fit")
    assert dm.class_names() == ["felis catus", "canis familiaris", "fox"]
