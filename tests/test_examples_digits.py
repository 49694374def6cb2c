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


def test_predict_hints_at_invert_when_the_background_is_the_opposite(tmp_path, capsys):
    run = normlab.train({"dataset": "mnist5k", "model": "mlp", "epochs": 1, "progress": False,
                         "out": str(tmp_path / "run")}, log=lambda *a: None)
    pre = json.loads((run.run_dir / "preprocess.json").read_text())
    assert 0 <= pre["background"] < 0.01  # MNIST's border is black
    scan, digit = DIGITS / "scan-test0200-2.png", DIGITS / "test0700-7.png"
    assert cli.main(["predict", str(run.run_dir), str(scan), str(digit)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hint: 1 of 2 images have a light background where the training images' was dark "
                   f"({pre['background']:.2f} on a 0-1 scale); the predictions are likely wrong: add --invert"]
    assert cli.main(["predict", str(run.run_dir), str(scan), "--invert"]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(["predict", str(run.run_dir), str(digit), "--invert"]) == 0
    err = capsys.readouterr().err
    assert "light background after --invert" in err and err.rstrip().endswith("drop --invert")
    # From Python, the same line comes as a warning unless a hint callback is given.
    import pytest

    with pytest.warns(UserWarning, match="add --invert"):
        normlab.predict(run.run_dir, [scan])
    lines = []
    normlab.predict(run.run_dir, [scan], hint=lines.append)
    assert len(lines) == 1


def test_older_runs_without_a_background_record_use_the_normalisation_mean():
    from normlab.api import training_background
    from normlab.data.inputs import Inputs

    def recorded(**fields):  # the input record of a run with only these fields of preprocess.json
        return Inputs((1, 28, 28), ("0", "1"), (1, 28, 28), (1, 28, 28), **fields)

    assert training_background(recorded(normalize={"mean": [0.1307], "std": [0.3081]})) == 0.1307
    assert training_background(recorded(normalize={"mean": [0.49, 0.48, 0.45]})) is None  # CIFAR: neither
    assert training_background(recorded(transform={"kind": "zca"})) is None
    assert training_background(recorded(background=0.93)) == 0.93
