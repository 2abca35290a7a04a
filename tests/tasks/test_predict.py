"""predict.py: the top-5 of any images from a checkpoint alone, equal to what evaluation computes."""

import json

import pytest
import torch
from conftest import CLASS_WORDS, run_cli
from PIL import Image

from alexnet.errors import DataError
from alexnet.predict import find_images, predict
from alexnet.training.module import CENTRE


@pytest.fixture(scope="module")
def predicted(trained):
    """The shared checkpoint, its image folder, the val images and their ten patches' probabilities as evaluated."""
    data, model = trained.data, trained.module.model.eval()
    data.setup("test")
    with torch.inference_mode():  # what evaluation computes: the ten patches of each image, in the test loader's order
        patches = torch.cat(
            [data.batch_transform(inputs) for inputs, _ in data.test_dataloader()]
        )  # (N, 10, 3, 227, 227)
        probabilities = model(patches.flatten(0, 1)).softmax(-1).view(len(patches), 10, -1)
    paths = [path for path, _ in data.test_set.samples]
    return trained.checkpoint, trained.folder, paths, probabilities


def _by_image(predictions):
    return {p["image"]: {c["class"]: c["probability"] for c in p["top"]} for p in predictions}


@pytest.mark.parametrize("ten_crop", [False, True])
def test_predictions_equal_evaluations_probabilities(predicted, tmp_path, ten_crop):
    checkpoint, folder, paths, probabilities = predicted
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
    assert {c["name"] for c in first} == set(CLASS_WORDS.values())  # words from synset_words.txt


def test_any_image_pil_reads_and_bad_paths(tmp_path, trained):
    checkpoint = trained.checkpoint
    Image.new("L", (640, 120), 128).save(tmp_path / "wide_gray.png")  # not RGB, not square, not JPEG
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_images(tmp_path) == [tmp_path / "wide_gray.png"]
    (prediction,) = predict(str(checkpoint), str(tmp_path / "wide_gray.png"))
    assert len(prediction["top"]) == 3 and sum(c["probability"] for c in prediction["top"]) == pytest.approx(1.0)
    with pytest.raises(DataError, match="does not exist"):
        find_images(tmp_path / "nowhere")


@pytest.mark.slow
def test_predict_py_prints_and_writes_the_top_5(predicted, tmp_path):
    checkpoint, folder, paths, _ = predicted
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
