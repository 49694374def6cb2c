"""`normlab leaderboard` on a fake runner: the DeepOBS protocol (every arm tuned on the same grid and
tuning seeds, on validation accuracy; confirmed on disjoint seeds), the paired comparisons with BN
and their Holm family, the arms that cannot exist listed with their reason, and the files. The
committed full report: docs/norms.md's headline table is its leaderboard.csv."""

import csv
import json
import math
from pathlib import Path

import pytest

from normlab.analysis import paired
from normlab.errors import ConfigError
from normlab.experiments import leaderboard as lb
from normlab.experiments import norm_speed, seed_groups, sweep

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "experiments" / "reports" / "leaderboard"


class Fake:
    """sweep.run_job's stand-in: metrics.csv (val_acc, examples_per_s) and summary.json."""

    def __init__(self, val, test):
        self.val, self.test, self.calls = val, test, []

    def __call__(self, cfg):
        self.calls.append(dict(cfg))
        out = Path(cfg["out"])
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_loss", "val_acc", "examples_per_s"])
            w.writerow([1, 1.0, self.val(cfg), 1000.0 * (1 + (cfg["norm"] == "gn"))])
        (out / "summary.json").write_text(json.dumps({"final_test_acc": self.test(cfg), "wall_seconds": 0.1,
                                                      "device": "cpu", "threads": 1, "versions": {"torch": "x"}}))
        return str(out), "done", None, 0.0


SMALL = lb.Setting(lrs=(1e-3, 1e-2), tune_seeds=(100,), confirm_seeds=(0, 1, 2), epochs={"digitnet": 1, "resnet20": 1},
                   norms=("bn", "gn", "in", "gbn"), batches=(8, 32))


def val(cfg):
    # gn is best at 1e-2, bn at 1e-3; in ties (both rates equal): the lower rate wins
    if cfg["norm"] == "gn":
        return 0.9 if cfg["lr"] == 1e-2 else 0.5
    if cfg["norm"] == "bn":
        return 0.9 if cfg["lr"] == 1e-3 else 0.5
    return 0.7


def fake_test_acc(cfg):
    # gn beats bn by 2 points + 0.5 per seed; the others trail bn by 1 point + 0.1 per seed
    base = 0.90 + 0.01 * cfg["seed"]
    return base + {"bn": 0.0, "gn": 0.02 + 0.005 * cfg["seed"]}.get(cfg["norm"], -0.01 - 0.001 * cfg["seed"])


@pytest.fixture
def board(tmp_path, monkeypatch):
    f = Fake(val, fake_test_acc)
    monkeypatch.setattr(sweep, "run_job", f)
    # a cell's seeds trained as one seed batch (resnet20's): the fake stands in for each of its runs
    monkeypatch.setattr(seed_groups, "run_group",
                        lambda names, cfgs, group: [(n, *f(c)[1:]) for n, c in zip(names, cfgs)])
    timed = []

    def speed(configs, log):
        timed.append(configs)
        return norm_speed.Speeds({k: 1000.0 * (1 + k.endswith("/gn")) for k in configs}, 3, (0.5, 0.6))

    doc = lb.run_leaderboard(tmp_path / "lb", setting=SMALL, log=lambda *a: None, speed=speed)
    f.timed = timed
    return f, doc, tmp_path / "lb"


def test_every_arm_gets_the_same_tuning_budget_and_disjoint_confirmation_seeds(board):
    f, doc, _ = board
    tune = [c for c in f.calls if "/tune/" in c["out"]]
    confirm = [c for c in f.calls if "/confirm/" in c["out"]]
    arms = {(c["model"], c["norm"], c["batch_size"]) for c in tune}
    # in cannot go into digitnet on 8x8 digits (1x1 maps); gbn:16 at batch 8 is bn: neither trains
    assert ("digitnet", "in", 8) not in arms and ("resnet20", "gbn", 8) not in arms
    assert ("resnet20", "in", 8) in arms and ("resnet20", "gbn", 32) in arms
    for arm in arms:  # the same grid and tuning seeds for every arm
        got = sorted((c["lr"], c["seed"]) for c in tune if (c["model"], c["norm"], c["batch_size"]) == arm)
        assert got == [(1e-3, 100), (1e-2, 100)]
    assert {c["seed"] for c in tune}.isdisjoint({c["seed"] for c in confirm})
    chosen = {(c["model"], c["norm"], c["batch_size"]): c["lr"] for c in confirm}
    assert chosen[("resnet20", "gn", 8)] == 1e-2 and chosen[("resnet20", "bn", 8)] == 1e-3
    assert chosen[("resnet20", "in", 32)] == 1e-3  # a tie goes to the lower rate
    assert all(c["val_split"] == lb.VAL and c["optimizer"] == "adam" and c["threads"] == 1 for c in f.calls)
    assert sorted(c["seed"] for c in confirm if (c["model"], c["norm"], c["batch_size"]) == ("digitnet", "bn", 8)) \
        == [0, 1, 2]


def test_each_norm_is_compared_with_bn_paired_by_seed_in_one_holm_family(board):
    _, doc, _ = board
    rows = {(r["model"], r["norm"], r["batch"]): r for r in doc["rows"]}
    gn = rows[("resnet20", "gn", 32)]
    assert gn["diff"] == pytest.approx(2 + 0.5)  # accuracy points: 2 + 0.5 x mean seed (1)
    c = paired.compare([90, 91, 92], [92, 93.5, 95], better=+1)
    assert (gn["low"], gn["high"]) == pytest.approx((c.low, c.high))
    assert gn["share_won"] == 1.0
    compared = [r for r in doc["rows"] if r["status"] == "trained" and r["norm"] != "bn"]
    assert all(r["family"] == len(compared) for r in compared)  # every comparison of the board, once
    p_holm = paired.holm([paired.compare([100 * x for x in [0.9, 0.91, 0.92]],
                                         [100 * fake_test_acc({"norm": r["norm"], "seed": s}) for s in (0, 1, 2)]).p
                          for r in compared])
    assert [r["p_holm"] for r in compared] == pytest.approx(p_holm)
    assert rows[("digitnet", "in", 8)]["status"] == "not applicable"
    assert "1x1 map" in rows[("digitnet", "in", 8)]["why"]
    assert rows[("resnet20", "gbn", 8)]["why"].startswith("the same computation as bn at batch 8")
    assert rows[("resnet20", "gn", 8)]["images_per_s"] == pytest.approx(2000.0)


def test_every_trained_arm_is_timed_once_at_its_chosen_rate(board):
    f, doc, _ = board
    [configs] = f.timed  # one call: every arm side by side in one process
    trained = {f"{r['model']}/b{r['batch']}/{r['norm']}": r for r in doc["rows"] if r["status"] == "trained"}
    assert set(configs) == set(trained)
    for key, cfg in configs.items():
        model, batch, norm = key.split("/")
        assert (cfg["model"], cfg["norm"], cfg["batch_size"]) == (model, norm, int(batch[1:]))
        assert cfg["lr"] == trained[key]["lr"] and cfg["threads"] == 1
    assert doc["speed"] == {"rounds": 3, "load": [0.5, 0.6], "min_steps": norm_speed.MIN_STEPS,
                            "min_seconds": norm_speed.MIN_SECONDS}


def test_speed_is_the_median_of_interleaved_rounds_of_the_trainers_step(monkeypatch):
    order, rates = [], iter([100.0, 10.0, 30.0, 300.0, 200.0, 20.0])

    class Timed:
        def __init__(self, cfg):
            self.key = cfg["norm"]

        def images_per_s(self, min_steps, min_seconds):
            order.append(self.key)
            return next(rates)

    monkeypatch.setattr(norm_speed, "_Timed", Timed)
    threads = norm_speed.torch.get_num_threads()
    got = norm_speed.measure({"a": {"norm": "a"}, "b": {"norm": "b"}}, rounds=3, log=lambda *a: None)
    assert order == ["a", "b", "b", "a", "a", "b"]  # each round in the opposite order to the one before
    assert got.images_per_s == {"a": 200.0, "b": 20.0} and got.rounds == 3
    assert norm_speed.torch.get_num_threads() == threads  # the caller's thread count is given back


def test_one_real_measurement_counts_the_images_of_the_steps_it_timed(tmp_path):
    cfg = lb.base_config("digitnet", "bn", 32, 1e-3, 0, lb.QUICK, tmp_path / "never-written")
    t = norm_speed._Timed(cfg)
    steps = []
    one = t.one
    t.one = lambda: steps.append(1) or one()
    rate = t.images_per_s(min_steps=4, min_seconds=0.0)
    assert len(steps) == 4 and 0 < rate < float("inf")
    assert not (tmp_path / "never-written").exists()  # timing writes no run folder


def test_the_report_files_say_what_the_data_file_holds(board):
    _, doc, out = board
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.csv", "leaderboard.json", "provenance.json",
                 "accuracy-vs-batch.png", "accuracy-vs-batch.svg"):
        assert (out / name).is_file(), name
    md = (out / "leaderboard.md").read_text()
    rows = list(csv.DictReader(open(out / "leaderboard.csv", newline="")))
    assert len(rows) == 2 * 4 * 2  # every arm, trained or not
    gn = next(r for r in rows if (r["model"], r["norm"], r["batch"]) == ("resnet20", "gn", "32"))
    section = md.split("## resnet20: each norm against bn")[1].split("## ")[0]
    [line] = [x for x in section.splitlines() if x.startswith("| `gn` | 32 | ")
              and f"| {float(gn['diff']):+.2f} [{float(gn['low']):+.2f}, {float(gn['high']):+.2f}] |" in x]
    assert line.split(" | ")[2].startswith(gn["verdict"]) and f"| {float(gn['p_holm']):.4f} | 100% |" in line
    assert "| `in` | n/a | n/a |" in md and "= bn" in md
    assert "noisy-bn" in md  # the kinds left out are named
    assert "disjoint from the tuning seeds" in md
    assert json.loads((out / "provenance.json").read_text())["git_commit"]


def test_tuning_and_confirmation_seeds_must_be_disjoint():
    bad = lb.Setting(lrs=(1e-3,), tune_seeds=(0,), confirm_seeds=(0, 1, 2), epochs={"digitnet": 1, "resnet20": 1})
    with pytest.raises(ConfigError, match=r"^leaderboard: tuning seeds \[0\] and confirmation seeds \[0, 1, 2\] must "
                                          r"be disjoint$"):
        lb.check_setting(bad)
    assert lb.choose_lr({1e-3: [0.8, 0.9], 1e-2: [0.85, 0.85]}) == 1e-3  # equal means: the lower rate
    assert lb.choose_lr({1e-3: [0.5], 1e-2: [0.6]}) == 1e-2


def test_committed_board_matches_its_data_file_and_docs_norms_headline():
    rows = list(csv.DictReader(open(REPORT / "leaderboard.csv", newline="")))
    doc = json.loads((REPORT / "leaderboard.json").read_text())
    # every norm of the board in every model and batch size: trained, or listed with its reason
    assert len(rows) == len(doc["setting"]["norms"]) * len(doc["setting"]["models"]) * len(doc["setting"]["batches"])
    assert all(r["why"] for r in rows if r["status"] != "trained")
    # docs/norms.md's headline table: each number is the data file's
    text = (ROOT / "docs" / "norms.md").read_text(encoding="utf-8")
    table = text.split("<!-- leaderboard:start -->")[1].split("<!-- leaderboard:end -->")[0]
    by = {(r["model"], r["norm"], r["batch"]): r for r in rows}
    checked = 0
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[1].startswith("`"):
            continue
        model, norm = cells[0], cells[1].strip("`")
        for b, cell in zip(doc["setting"]["batches"], cells[2:]):
            r = by[(model, norm, str(b))]
            if r["status"] == "trained":
                assert cell == f"{float(r['mean_acc']):.2f}", (model, norm, b, cell)
                checked += 1
            else:
                assert cell in ("n/a", "= bn"), (model, norm, b, cell)
        r = by[(model, norm, "32")]  # training images/s at batch 32, after the batch sizes
        speed = cells[2 + len(doc["setting"]["batches"])]
        assert speed == (f"{float(r['images_per_s']):,.0f}" if r["status"] == "trained" else "–"), (model, norm)
    assert checked >= 100
    assert all(math.isfinite(float(r["mean_acc"])) for r in rows if r["status"] == "trained")
    assert doc["quick"] is False and doc["setting"] == lb.FULL.to_dict()  # the full board, as the code defines it
    assert "normlab leaderboard --out experiments/reports/leaderboard --jobs 2" in text
    assert doc["speed"]["rounds"] == norm_speed.ROUNDS  # images/s timed apart from the runs


def test_no_curves_leaves_the_plot_out_and_everything_else_in(tmp_path):
    # the leaderboard's runs skip curves.png (most of a short run's time); the rest of the run folder is the same
    from normlab.train.trainer import train

    for curves in (True, False):
        out = tmp_path / f"c{curves}"
        train({"dataset": "digits", "model": "logistic", "epochs": 1, "out": str(out), "curves": curves,
               "progress": False}, log=lambda *a: None)
        assert (out / "curves.png").is_file() is curves
        assert (out / "metrics.csv").is_file() and (out / "summary.json").is_file()
    assert lb.base_config("digitnet", "bn", 8, 1e-3, 0, SMALL, tmp_path)["curves"] is False


def test_a_board_resumes_only_with_the_setting_that_trained_its_runs(tmp_path, monkeypatch):
    f = Fake(val, fake_test_acc)
    monkeypatch.setattr(sweep, "run_job", f)
    monkeypatch.setattr(seed_groups, "run_group",
                        lambda names, cfgs, group: [(n, *f(c)[1:]) for n, c in zip(names, cfgs)])
    speed = lambda configs, log: norm_speed.Speeds({k: 1.0 for k in configs}, 1, (0.0, 0.0))  # noqa: E731
    lb.run_leaderboard(tmp_path, setting=SMALL, log=lambda *a: None, speed=speed)
    trained = len(f.calls)
    lb.run_leaderboard(tmp_path, setting=SMALL, log=lambda *a: None, speed=speed)  # the same: resumes
    assert len(f.calls) == trained
    other = lb.Setting(**{**SMALL.__dict__, "epochs": {"digitnet": 2, "resnet20": 1}})
    with pytest.raises(ConfigError) as e:
        lb.run_leaderboard(tmp_path, setting=other, log=lambda *a: None, speed=speed)
    assert str(e.value) == (f"leaderboard: the runs in {str(tmp_path / 'runs' / 'full')!r} were trained with another "
                            f"setting (epochs differ); give another --out, or delete that folder to train them again")
    assert len(f.calls) == trained  # nothing trained, nothing written over


def test_no_confirmation_starts_from_a_part_of_the_tuning(tmp_path, monkeypatch):
    """A tuning run the machine stopped (a worker killed, out of memory) leaves its arm's rate
    unknown: the board stops before confirming and says so; the same command then trains that
    run alone and goes on."""
    f = Fake(val, fake_test_acc)
    lost = {"n": 1}

    def machine_once(cfg):
        if "/tune/resnet20/b8/gn-lr0.01-s100" in cfg["out"] and lost["n"]:
            lost["n"] = 0
            return cfg["out"], "machine", "a worker process died", 0.0
        return f(cfg)

    monkeypatch.setattr(sweep, "run_job", machine_once)
    monkeypatch.setattr(seed_groups, "run_group",
                        lambda names, cfgs, group: [(n, *machine_once(c)[1:]) for n, c in zip(names, cfgs)])
    speed = lambda configs, log: norm_speed.Speeds({k: 1.0 for k in configs}, 1, (0.0, 0.0))  # noqa: E731
    lines = []
    assert lb.run_leaderboard(tmp_path, setting=SMALL, log=lines.append, speed=speed) == {"interrupted": True}
    assert "normlab leaderboard: 1 tuning runs did not finish (tune/resnet20/b8/gn/lr0.01-s100); the board needs " \
           "all of them" in lines
    assert not any("/confirm/" in c["out"] for c in f.calls) and not (tmp_path / "leaderboard.csv").exists()
    f.calls.clear()
    doc = lb.run_leaderboard(tmp_path, setting=SMALL, log=lines.append, speed=speed)
    assert [c["out"] for c in f.calls if "/tune/" in c["out"]] == [
        str(tmp_path / "runs" / "full" / "tune" / "resnet20" / "b8" / "gn-lr0.01-s100")]
    rows = {(r["model"], r["norm"], r["batch"]): r for r in doc["rows"]}
    assert rows[("resnet20", "gn", 8)]["lr"] == 1e-2


def test_a_confirmation_run_is_named_by_its_rate(board):
    """Tuning runs trained again may choose another rate; a confirmation run at the old one must
    not stand in for the new one, so the rate is in its folder's name."""
    f, doc, out = board
    for c in f.calls:
        if "/confirm/" in c["out"]:
            assert Path(c["out"]).name == f"{c['norm']}-lr{c['lr']:g}-s{c['seed']}"
