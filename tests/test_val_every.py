"""--val-every N: the validation split evaluated after every Nth epoch and the last, nothing else
changed (training is the same to the bit), the best epoch chosen among the evaluated epochs, alone
and in a seed batch; refused in one line where it would change nothing or cannot work."""

import csv

import pytest
import torch

import normlab
from normlab.cli import main
from normlab.errors import ConfigError
from normlab.train import checkpoint
from normlab.train.seed_batch import train_seeds

quiet = lambda *a: None  # noqa: E731
# digits, half held out: 718 images to train on; lr 0.5 makes the validation accuracy move up and
# down between epochs, so the best epoch depends on which epochs are evaluated
BASE = {"dataset": "digits", "model": "mlp", "width": 16, "depth": 1, "norm": "bn", "optimizer": "momentum",
        "lr": 0.5, "val_split": 0.5, "epochs": 5, "progress": False, "curves": False, "threads": 1}


def rows_of(run) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def summary_of(run) -> dict:
    import json

    return json.loads((run / "summary.json").read_text())


def test_every_nth_and_the_last_epoch_are_evaluated_and_training_is_unchanged(tmp_path):
    normlab.train({**BASE, "out": str(tmp_path / "every")}, log=quiet)
    normlab.train({**BASE, "val_every": 3, "out": str(tmp_path / "sparse")}, log=quiet)
    every, sparse = rows_of(tmp_path / "every"), rows_of(tmp_path / "sparse")
    assert [r["val_acc"] != "" for r in sparse] == [False, False, True, False, True]  # 3 and the last, 5
    for a, b in zip(every, sparse):
        for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert a[k] == b[k], (a["epoch"], k)  # the split's evaluation draws nothing and changes nothing
        if b["val_acc"]:
            assert (a["val_loss"], a["val_acc"]) == (b["val_loss"], b["val_acc"])
    w = normlab.load(tmp_path / "every").model.state_dict()
    v = normlab.load(tmp_path / "sparse").model.state_dict()
    assert all(torch.equal(w[k], v[k]) for k in w)
    # the best epoch: the first highest validation accuracy among the evaluated epochs (3, 5), which
    # here is not the best of all five (so a choice among all epochs would fail this)
    evaluated = max((float(r["val_acc"]), -int(r["epoch"])) for r in every if int(r["epoch"]) in (3, 5))
    by_all = max((float(r["val_acc"]), -int(r["epoch"])) for r in every)
    assert summary_of(tmp_path / "sparse")["selected_epoch"] == -evaluated[1] != -by_all[1]
    assert summary_of(tmp_path / "every")["selected_epoch"] == -by_all[1]


def test_a_seed_batch_evaluates_the_same_epochs_and_picks_the_same_best(tmp_path):
    cfg = {**BASE, "val_every": 3}
    seeds = [0, 1, 2]
    outs = [tmp_path / f"b{s}" for s in seeds]
    train_seeds(cfg, seeds, outs, tmp_path / ".group", log=quiet)
    for s, out in zip(seeds, outs):
        normlab.train({**cfg, "seed": s, "out": str(tmp_path / f"sep{s}")}, log=quiet)
        mine, ref = rows_of(out), rows_of(tmp_path / f"sep{s}")
        assert [r["val_acc"] == "" for r in mine] == [r["val_acc"] == "" for r in ref] == [True, True, False, True,
                                                                                          False]
        for a, b in zip(mine, ref):
            if b["val_acc"]:
                assert float(a["val_acc"]) == pytest.approx(float(b["val_acc"]), abs=1e-9)
        assert summary_of(out)["selected_epoch"] == summary_of(tmp_path / f"sep{s}")["selected_epoch"]
        assert checkpoint.load_last_complete_epoch(out).state["best_epoch"] == summary_of(out)["selected_epoch"]


@pytest.mark.parametrize("extra,message", [
    ({"val_split": 0.0}, "val_every: --val-every 2 would not be used: there is no validation split to evaluate; "
                         "add --val-split or drop it"),
    ({"epochs": 1}, "val_every: --val-every 2 would not be used: with one epoch the split is evaluated once, "
                    "after it, whatever N is; drop it"),
    ({"patience": 2}, "val_every: early stopping (--patience) checks the validation split after every epoch, "
                      "not every 2; drop --val-every or --patience"),
])
def test_refused_in_one_line_where_it_changes_nothing_or_cannot_work(tmp_path, extra, message):
    with pytest.raises(ConfigError) as e:
        normlab.train({**BASE, "val_every": 2, **extra, "out": str(tmp_path / "r")}, log=quiet)
    assert str(e.value) == message
    assert not (tmp_path / "r").exists()


def test_refused_from_the_command_line_in_one_line(tmp_path, capsys):
    rc = main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--val-every", "2",
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert err.endswith("val_every: --val-every 2 would not be used: there is no validation split to evaluate; "
                        "add --val-split or drop it")
    assert main(["train", "--dataset", "digits", "--val-every", "0"]) == 2
    assert capsys.readouterr().err.strip() == "normlab train: error: val_every: must be >= 1, got 0"


def test_an_unevaluated_epoch_is_never_the_best_but_holds_the_place_until_one_is():
    from normlab.train.selection import new_best

    rows = [{"epoch": 1, "test_acc": 0.99, "val_acc": None}, {"epoch": 2, "test_acc": 0.99, "val_acc": None},
            {"epoch": 3, "test_acc": 0.5, "val_acc": 0.25}, {"epoch": 4, "test_acc": 0.99, "val_acc": None},
            {"epoch": 5, "test_acc": 0.5, "val_acc": 0.2}]
    best, seen = (-1.0, 0), []
    for r in rows:
        b = new_best(r, *best)
        best = b or best
        seen.append(best)
    # epoch 1 holds the place (score still the -1 start), 3 takes it, 4 (unevaluated, its test
    # accuracy high) and 5 (lower) do not
    assert seen == [(-1.0, 1), (-1.0, 1), (0.25, 3), (0.25, 3), (0.25, 3)]
