"""`normlab runs` (a table of run folders), `normlab report RUN RUN --out` (side by side), and the
conventions of the report figures."""

import csv
import json
import re
import shutil

import pytest

from normlab import train
from normlab.analysis import figures
from normlab.cli import main


def quiet(*_a, **_k):
    pass


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Under root: a finished run a (seed 0), a finished run b (seed 1, 2 epochs), a copy of b
    without summary.json (interrupted) and a copy marked failed."""
    root = tmp_path_factory.mktemp("runs")
    common = {"dataset": "digits", "model": "mlp", "depth": 1, "width": 8, "device": "cpu", "progress": False}
    res_a = train({**common, "epochs": 1, "seed": 0, "out": str(root / "a")}, log=quiet)
    res_b = train({**common, "epochs": 2, "seed": 1, "out": str(root / "group" / "b")}, log=quiet)
    shutil.copytree(root / "group" / "b", root / "group" / "cut")
    (root / "group" / "cut" / "summary.json").unlink()
    shutil.copytree(root / "a", root / "bad")
    (root / "bad" / "summary.json").unlink()
    (root / "bad" / "failed.json").write_text(json.dumps({"error": "the loss became nan"}))
    return root, res_a, res_b


def test_runs_lists_every_run_folder_with_its_status(runs_root, capsys):
    root, a, b = runs_root
    assert main(["runs", str(root), "--json"]) == 0
    rows = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"a", "bad", "group/b", "group/cut"}
    assert [rows[k]["status"] for k in ("a", "bad", "group/b", "group/cut")] == \
        ["finished", "failed", "finished", "interrupted"]
    assert rows["a"]["final_test_acc"] == a.summary["final_test_acc"]
    assert rows["group/b"]["best_test_acc"] == b.summary["best_test_acc"]
    assert rows["group/b"]["epochs"] == "2/2" and rows["a"]["model"] == "mlp" and rows["a"]["dataset"] == "digits"
    # an interrupted run: what its metrics.csv says so far
    assert rows["group/cut"]["final_test_acc"] == b.metrics[-1]["test_acc"]
    assert rows["group/cut"]["seconds"] == pytest.approx(b.metrics[-1]["elapsed_seconds"])


def test_runs_sorts_and_prints_a_table(runs_root, capsys):
    root, a, b = runs_root
    assert main(["runs", str(root), "--json", "--sort", "epochs", "--reverse"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["epochs"] for r in rows][:2] == ["2/2", "2/2"]
    assert main(["runs", str(root), "--sort", "final_test_acc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["path", "model", "dataset", "norm"] and "status" in lines[0]
    accs = [float(line.split()[5]) for line in lines[2:]]
    assert accs == sorted(accs) and len(accs) == 4
    assert any(line.startswith("group/cut") and line.endswith("interrupted") for line in lines)
    assert main(["runs", str(root), "--sort", "speed"]) == 2
    assert "unknown sort column 'speed'" in capsys.readouterr().err
    assert main(["runs", str(root / "nowhere")]) == 2
    assert "is not a directory; give a folder that holds run folders" in capsys.readouterr().err


def test_report_of_run_folders_side_by_side(runs_root, tmp_path, capsys):
    root, a, b = runs_root
    out = tmp_path / "side"
    assert main(["report", str(root / "a"), str(root / "group" / "b"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| seed | 0 | 1 |" in md and "| epochs | 1 | 2 |" in md  # where the configs differ
    assert f"{100 * a.summary['final_test_acc']:.2f}" in md
    html = (out / "report.html").read_text()
    assert '<meta name="viewport"' in html
    hrefs = re.findall(r'href="([^"]+)"', html)  # relative links that lead to the runs' configs
    assert (root / "a" / "config.json").resolve() in [(out / h).resolve() for h in hrefs]
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert [r["status"] for r in rows] == ["finished", "finished"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and (out / "curves.svg").is_file()
    assert main(["report", str(root / "a"), str(root / "group" / "b")]) == 2
    assert "--out DIR is needed to compare run folders side by side" in capsys.readouterr().err
    assert main(["report", str(root / "a"), str(tmp_path), "--out", str(out)]) == 2
    assert "is not a run folder (no config.json); give one sweep folder" in capsys.readouterr().err


def test_learning_curve_figure_follows_the_conventions():
    rows = lambda accs: [{"epoch": i + 1, "test_acc": v, "train_loss": 1 - v} for i, v in enumerate(accs)]  # noqa: E731
    fig = figures.learning_curves([("a", [rows([0.5, 0.9, 0.95]), rows([0.6, 0.9, 0.96])]),
                                   ("b", [rows([0.4, 0.85, 0.93]), rows([0.5, 0.8, 0.94])])], "t", classes=10)
    acc, loss, zoom = fig.axes
    assert acc.get_ylabel() == "test accuracy (%)" and acc.get_ylim() == (0, 100)
    assert loss.get_ylabel() == "train loss (cross-entropy, nats)" and loss.get_ylim()[0] == 0
    assert zoom.get_title().startswith("zoomed: the y-axis starts at 40%")
    means = [line for line in acc.get_lines() if line.get_label() in ("a (2 runs)", "b (2 runs)")]
    assert [m.get_color() for m in means] == [figures.PALETTE[0], figures.PALETTE[1]]
    assert means[0].get_marker() != means[1].get_marker() and means[0].get_linestyle() != means[1].get_linestyle()
    chance = [line for line in acc.get_lines() if line.get_label() == "chance (10%)"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [10.0, 10.0]
    thin = [line for line in acc.get_lines() if line.get_linewidth() < 1]
    assert len(thin) == 4  # one per seed
    assert all(t == int(t) for t in acc.get_xticks() if 1 <= t <= 3)
    # a wide spread of final accuracies: no zoom panel, nothing to mislead
    assert len(figures.learning_curves([("a", [rows([0.2, 0.9])]), ("b", [rows([0.1, 0.1])])], "t").axes) == 2


def test_clean_train_accuracy_is_the_eval_mode_score_of_the_training_split(tmp_path, capsys):
    import torch

    from normlab import api
    from normlab.data import pipeline

    res = train({"dataset": "digits", "model": "mlp", "depth": 1, "width": 32, "dropout": 0.5, "epochs": 3,
                 "val_split": 0.1, "device": "cpu", "progress": False, "out": str(tmp_path / "drop")}, log=quiet)
    clean = api.evaluate_run(res.run_dir, split="train")
    # Reference: the trainer's own training loader (shuffled, held-out val removed), one pass in eval mode.
    r = api.load(res.run_dir)
    pipe = pipeline.build(r.config.replace(augment=""), torch.device("cpu"), False)
    correct = seen = 0
    with torch.no_grad():
        for xb, yb in pipe.train:
            correct += int((r.model(xb).argmax(1) == yb).sum())
            seen += len(yb)
    assert clean["train_size"] == seen == len(pipe.train.y) < 1438  # 1,438 digits minus the val split
    assert clean["train_acc"] == pytest.approx(correct / seen)
    # dropout lowers the running train-mode accuracy the trainer logs, not the clean one
    assert clean["train_acc"] > res.summary["final_train_acc"] + 0.05
    assert main(["eval", str(res.run_dir), "--split", "train"]) == 0
    assert f"train acc {clean['train_acc']:.4f}" in capsys.readouterr().out


def test_a_runs_curves_say_what_train_accuracy_is(runs_root):
    from normlab.plots import plot_curves
    from normlab.rundir import RunDir

    root, a, b = runs_root
    png = root / "extra-curves.png"
    plot_curves(RunDir(root / "group" / "b").read_metrics(), png, "b", classes=10)
    svg = png.with_suffix(".svg").read_text()
    assert png.read_bytes()[:4] == b"\x89PNG"
    for text in ("train (running, train mode)", "accuracy (%)", "loss (cross-entropy, nats)", "chance (10%)", "epoch"):
        assert text in svg, text


# ---------------------------------------------------------------- damaged runs are listed, not fatal
@pytest.mark.parametrize("name, content, problem", [
    ("config.json", "[1, 2]", "config.json holds a list, not a JSON object"),
    ("config.json", "null", "config.json holds null, not a JSON object"),
    ("summary.json", "[]", "summary.json holds a list, not a JSON object"),
    ("summary.json", '"done"', "summary.json holds a string, not a JSON object"),
    ("summary.json", '{"final_test_acc": 0.9', "summary.json is unreadable (Expecting"),
    ("metrics.csv", "epoch,test_acc\nx,y,z\n", "metrics.csv is damaged"),
])
def test_a_damaged_run_is_listed_as_damaged_and_the_rest_goes_on(runs_root, tmp_path, capsys, name, content, problem):
    root, _, _ = runs_root
    tree = tmp_path / "tree"
    shutil.copytree(root, tree)
    (tree / "group" / "b" / name).write_text(content)
    assert main(["runs", str(tree), "--json"]) == 0
    rows = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"a", "bad", "group/b", "group/cut"}
    assert rows["group/b"]["status"] == "damaged" and rows["group/b"]["problem"].startswith(problem)
    assert rows["a"]["status"] == "finished" and "problem" not in rows["a"]
    assert main(["runs", str(tree)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[-1].startswith(f"group/b: damaged ({problem}")


def test_sorting_on_values_of_mixed_types_never_crashes(runs_root, tmp_path, capsys):
    root, _, _ = runs_root
    tree = tmp_path / "tree"
    shutil.copytree(root, tree)
    for run, model in (("a", 7), ("group/b", ["x"]), ("bad", None)):
        cfg = json.loads((tree / run / "config.json").read_text())
        cfg["model"] = model
        (tree / run / "config.json").write_text(json.dumps(cfg))
    summary = json.loads((tree / "a" / "summary.json").read_text())
    summary.update(final_test_acc="high", epochs="one")
    (tree / "a" / "summary.json").write_text(json.dumps(summary))
    for column in ("model", "final_test_acc", "epochs", "seconds", "status", "path"):
        for reverse in ([], ["--reverse"]):
            assert main(["runs", str(tree), "--sort", column, "--json", *reverse]) == 0
            rows = json.loads(capsys.readouterr().out)
            assert len(rows) == 4
    assert main(["runs", str(tree), "--sort", "model", "--json"]) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == [7, "mlp", ["x"], None]


# ---------------------------------------------------------------- property: any damaged tree is listed
from hypothesis import HealthCheck, example, given, settings, strategies as st  # noqa: E402

from normlab.analysis import runs as runs_mod  # noqa: E402

JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10, 10 ** 6) | st.floats(allow_nan=False)
                       | st.text(max_size=6), lambda c: st.lists(c, max_size=3) | st.dictionaries(
                           st.sampled_from(["model", "dataset", "norm", "epochs", "final_test_acc", "best_test_acc",
                                            "wall_seconds", "error", "x"]), c, max_size=4), max_leaves=6)
CONTENT = st.one_of(JSONISH.map(json.dumps), st.binary(max_size=20).map(lambda b: b.decode("latin1")),
                    st.sampled_from(["", "{", "epoch,test_acc\n1,0.5\n", "epoch,test_acc\nx\n", "\ufeff{}"]))
RUN = st.dictionaries(st.sampled_from(["config.json", "summary.json", "failed.json", "metrics.csv"]), CONTENT,
                      max_size=4).map(lambda d: {"config.json": "{}", **d})
TREE = st.dictionaries(st.sampled_from(["a", "b", "g/c", "g/d", "odd:name", "<i>"]), RUN, min_size=1, max_size=4)


@settings(max_examples=40, deadline=20000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(tree=TREE, sort=st.sampled_from(runs_mod.COLUMNS), reverse=st.booleans())
@example(tree={"a": {"config.json": '{"model": "x\\ny", "norm": "\\u001b[2J"}'}, "odd:name": {"config.json": "[]"}},
         sort="model", reverse=False)
def test_runs_lists_any_damaged_tree_without_a_traceback(tmp_path, tree, sort, reverse):
    root = tmp_path / "tree"
    shutil.rmtree(root, ignore_errors=True)
    for run, files in tree.items():
        for name, text in files.items():
            (root / run).mkdir(parents=True, exist_ok=True)
            (root / run / name).write_text(text, encoding="utf-8")
    rows = runs_mod.list_runs(root, sort=sort, reverse=reverse)
    assert sorted(r["path"] for r in rows) == sorted(tree)  # every run listed, none lost
    for r in rows:
        assert r["status"] in ("finished", "failed", "interrupted", "damaged")
        assert (r["status"] == "damaged") == bool(r.get("problem"))
    table = runs_mod.text_table(rows)
    assert len(table.splitlines()) == 2 + len(rows) + sum(r["status"] == "damaged" for r in rows)
    assert table.replace("\n", "").isprintable()  # nothing from the files reaches the terminal raw
