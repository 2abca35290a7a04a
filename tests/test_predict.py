"""predict.py: the top-5 of any images from a checkpoint alone, equal to what evaluation computes."""

import json
from functools import partial

import pytest
import torch
from conftest import fit_briefly, make_image_folder, run_cli
from PIL import Image

from alexnet.data import ImageFolderDataModule
from alexnet.errors import DataError
from alexnet.model import AlexNet
from alexnet.module import CENTRE, AlexNetModule
from alexnet.predict import find_images, predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One SGD step on a tiny image folder with class words; its checkpoint, data and the val images' probabilities."""
    root = tmp_path_factory.mktemp("predict")
    folder = make_image_folder(root / "folder", size=(300, 260))
    (folder / "synset_words.txt").write_text("cat felis catus\ndog canis familiaris\nfox vulpes\n")
    data = ImageFolderDataModule(str(folder), batch_size=3, num_workers=0, input_scale=255.0, verify=False)
    module = AlexNetModule(AlexNet(num_classes=3), optimizer=partial(torch.optim.SGD, lr=1e-3), channels_last=False)
    trainer = fit_briefly(module, data, root, steps=1)
    checkpoint = root / "last.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=True)
    # What evaluation computes for the val split: the ten patches of each image, in the test loader's order.
    data.setup("test")
    model = module.model.eval()
    with torch.inference_mode():
        patches = torch.cat(
            [data.batch_transform(inputs) for inputs, _ in data.test_dataloader()]
        )  # (N, 10, 3, 227, 227)
        probabilities = model(patches.flatten(0, 1)).softmax(-1).view(len(patches), 10, -1)
    paths = [path for path, _ in data.test_set.samples]
    return checkpoint, folder, paths, probabilities


def _by_image(predictions):
    return {p["image"]: {c["class"]: c["probability"] for c in p["top"]} for p in predictions}


@pytest.mark.parametrize("ten_crop", [False, True])
def test_predictions_equal_evaluations_probabilities(trained, tmp_path, ten_crop):
    checkpoint, folder, paths, probabilities = trained
    predictions = predict(str(checkpoint), str(folder / "val"), ten_crop=ten_crop, top_k=3, batch_size=4)
    expected = probabilities.mean(1) if ten_crop else probabilities[:, CENTRE]  # (N, classes)
    got = _by_image(predictions)
    assert sorted(got) == sorted(paths)
    for path, row in zip(paths, expected, strict=True):
        torch.testing.assert_close(
            torch.tensor([got[path][c] for c in ("cat", "dog", "fox")]), row, rtol=1e-4, atol=1e-5, msg=path
        )
    first = predictions[0]["top"]
    assert [c["probability"] for c in first] == sorted((c["probability"] for c in first), reverse=True)
    assert {c["name"] for c in first} == {"felis catus", "canis familiaris", "vulpes"}  # words from synset_words.txt


def test_any_image_pil_reads_and_bad_paths(tmp_path, trained):
    checkpoint = trained[0]
    Image.new("L", (640, 120), 128).save(tmp_path / "wide_gray.png")  # not RGB, not square, not JPEG
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_images(tmp_path) == [tmp_path / "wide_gray.png"]
    (prediction,) = predict(str(checkpoint), str(tmp_path / "wide_gray.png"))
    assert len(prediction["top"]) == 3 and sum(c["probability"] for c in prediction["top"]) == pytest.approx(1.0)
    with pytest.raises(DataError, match="does not exist"):
        find_images(tmp_path / "nowhere")


@pytest.mark.slow
def test_predict_py_prints_and_writes_the_top_5(trained, tmp_path):
    checkpoint, folder, paths, _ = trained
    output = tmp_path / "predictions.json"
    result = run_cli(
        "predict.py", f"ckpt_path={checkpoint}", f"images={folder / 'val'}", f"predict.output={output}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(output.read_text())
    assert sorted(p["image"] for p in written) == sorted(paths)
    assert f"{sorted(paths)[0].rsplit('/', 1)[-1]}: " in result.stdout
    missing = run_cli(
        "predict.py", f"ckpt_path={checkpoint}", "images=nowhere", cwd=tmp_path, env={"HYDRA_FULL_ERROR": ""}
    )
    assert missing.returncode == 2 and "error: images=nowhere does not exist" in missing.stderr
