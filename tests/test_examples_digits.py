"""The digits under examples/digits are real mnist5k test images, and predict --invert reads a
black-on-white scan the way the model saw its training digits."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import normlab
from normlab import cli
from normlab.data.sources import load_dataset

DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits"


def test_example_digits_are_the_test_split_images_named_by_index_and_label():
    d = load_dataset("mnist5k")
    files = sorted(DIGITS.glob("test*.png"))
    assert len(files) == 3
    for f in files:
        index, label = (int(v) for v in f.stem[len("test"):].split("-"))
        assert torch.equal(torch.from_numpy(np.array(Image.open(f))), d.test_x[index, 0])
        assert int(d.test_y[index]) == label


def test_predict_invert_equals_predicting_the_inverted_file(tmp_path, capsys):
    run = normlab.train({"dataset": "mnist5k", "model": "mlp", "epochs": 1, "progress": False,
                         "out": str(tmp_path / "run")}, log=lambda *a: None)
    scan = DIGITS / "scan-test0200-2.png"
    flipped = tmp_path / "flipped.png"
    Image.fromarray(255 - np.array(Image.open(scan).convert("L"))).save(flipped)
    assert cli.main(["predict", str(run.run_dir), str(scan), "--invert", "--json"]) == 0
    inverted = json.loads(capsys.readouterr().out)[0]
    plain = normlab.predict(run.run_dir, [flipped])[0]
    assert (inverted["class"], inverted["probability"]) == (plain["class"], plain["probability"])
