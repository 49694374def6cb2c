"""Damaged or hostile inputs: a one-line error and exit code 2, nothing changed; 16-bit images;
nothing overwritten by surprise; files written with the user's umask."""

import hashlib
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import normlab
from normlab import cli
from normlab import grid
from normlab.analysis import report, results
from normlab.experiments import jobs, spec, sweep
from normlab.data import imagefolder, sources

BASE = dict(dataset="digits", model="mlp", epochs=1, width=16, depth=1, batch_size=128)
TINY = dict(BASE, progress=False)


def quiet(*_):
    pass


def snapshot(folder):
    """Every file under `folder` with its bytes' hash: equal before and after means nothing changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fails_cleanly(capsys, argv, *fragments):
    """The command exits 2 with exactly one line on stderr holding every fragment."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"normlab {argv[0]}: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return normlab.train(dict(TINY, out=str(tmp_path_factory.mktemp("r") / "run")), log=quiet).run_dir


def damaged_copy(run, tmp_path, name, content: bytes):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / name).write_bytes(content)
    return copy


def png_header_only(path, width, height):
    """A PNG whose header claims width x height 8-bit gray pixels, with almost no data behind it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- damaged run files
@pytest.mark.parametrize("content, detail", [
    (b'{"input_shape": [1, 8', "preprocess.json' is corrupt"),
    (b"{}", "preprocess.json' is damaged (input_shape must be a list of 3 positive integers, got None)"),
    (b'{"input_shape": [1, 8, 8], "classes": ["0", "1"], "transform": {"kind": "channel"}}',
     "preprocess.json' is damaged (missing 'features')"),
])
@pytest.mark.parametrize("verb", ["eval", "export", "inspect"])
def test_a_damaged_preprocess_json_is_one_line(run, tmp_path, capsys, content, detail, verb):
    copy = damaged_copy(run, tmp_path, "preprocess.json", content)
    before = snapshot(copy)
    fails_cleanly(capsys, [verb, str(copy)], detail)
    assert snapshot(copy) == before


def test_a_non_utf8_config_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_bytes(b"epochs: 1\nout: \xff\xfe\n")
    fails_cleanly(capsys, ["train", "--config", str(bad)], "is not UTF-8 text (invalid start byte at byte 15)",
                  "save it as UTF-8")
    assert list(tmp_path.iterdir()) == [bad]


@pytest.mark.parametrize("seed", [str(2 ** 70), str(2 ** 63), "-1"])
def test_a_seed_torch_cannot_take_is_one_line(tmp_path, capsys, seed):
    fails_cleanly(capsys, ["train", "--dataset", "digits", "--seed", seed, "--out", str(tmp_path / "r")],
                  "seed: must be from 0 to 2**63 - 1")
    assert not (tmp_path / "r").exists()
    assert normlab.make_config({"seed": 2 ** 63 - 1}).seed == 2 ** 63 - 1  # the largest is fine


# ---------------------------------------------------------------- damaged sweeps
@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    exp = spec.parse_experiment({"base": BASE, "factors": {"lr": [0.05, 0.1]}, "seeds": 1})
    assert not sweep.run_sweep(exp, out, log=quiet).failed
    return out


@pytest.mark.parametrize("content, detail", [
    (b'{"base": {"dataset"', "experiment.json' is damaged (Expecting"),
    (b"{}", "experiment.json' is damaged (it lacks base, factors or seeds)"),
    (b'{"base": {}, "factors": {"norm": "bn"}, "seeds": 1}', "factor 'norm' must be a non-empty list"),
])
def test_a_damaged_experiment_json_is_one_line(sweep_dir, tmp_path, capsys, content, detail):
    import shutil

    copy = tmp_path / "s"
    shutil.copytree(sweep_dir, copy)
    (copy / "experiment.json").write_bytes(content)
    before = snapshot(copy)
    fails_cleanly(capsys, ["report", str(copy)], detail, "restore it, or run `normlab compare")
    assert snapshot(copy) == before


def test_a_truncated_summary_is_reported_and_the_rest_goes_on(sweep_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "s"
    shutil.copytree(sweep_dir, copy)
    damaged = copy / "runs" / "lr=0.1-s0" / "summary.json"
    damaged.write_bytes(damaged.read_bytes()[:40])
    assert cli.main(["report", str(copy)]) == 0
    rows = {r["cell"]: r for r in results.collect(copy)}
    assert rows["lr=0.05"]["status"] == "ok" and rows["lr=0.1"]["status"] == "damaged"
    assert f"{str(damaged)!r} is damaged" in rows["lr=0.1"]["error"]
    md = (copy / "report.md").read_text()
    assert "Run lr=0.1 seed 0 failed: " in md and "summary.json' is damaged" in md
    # compare goes on too: the damaged run is not finished, so it is trained again; the other is kept
    kept = snapshot(copy / "runs" / "lr=0.05-s0")
    exp = results.read_experiment(copy)
    again = sweep.run_sweep(exp, copy, log=quiet)
    assert again.skipped == ["lr=0.05-s0"] and again.ran == ["lr=0.1-s0"]
    assert json.loads(damaged.read_text())["epochs"] == 1
    assert snapshot(copy / "runs" / "lr=0.05-s0") == kept


def test_a_garbled_metrics_csv_leaves_its_curve_out_of_the_report(sweep_dir, tmp_path):
    import shutil

    copy = tmp_path / "s"
    shutil.copytree(sweep_dir, copy)
    (copy / "runs" / "lr=0.1-s0" / "metrics.csv").write_bytes(b"epoch,train_loss\n1,0.5,7,8\n\xff\n")
    s = report.write_report(copy)
    assert s["paths"]["markdown"].is_file() and (copy / "curves-lr.png").is_file()


# ---------------------------------------------------------------- images
def test_a_decompression_bomb_is_refused_before_decoding(run, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 20000, 20000)
    fails_cleanly(capsys, ["predict", str(run), str(bomb)], "bomb.png' was refused: its header claims more pixels "
                  "than the limit of 89,478,485 (a decompression bomb")
    big = tmp_path / "big.png"
    png_header_only(big, 10000, 10000)  # under Pillow's own error threshold, over ours
    fails_cleanly(capsys, ["predict", str(run), str(big)], "claims 10000x10000 pixels than the limit")
    # In an image folder it is one more undecodable file: skipped and named, or refused with --strict.
    folder = tmp_path / "folder"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(folder / cls / f"{i}.png")
    png_header_only(folder / "b" / "bomb.png", 20000, 20000)
    ds = sources.load_dataset("imagefolder", data_dir=str(folder))
    assert [s["path"] for s in ds.info["skipped"]] == [str(folder / "b" / "bomb.png")]
    assert "decompression bomb" in ds.info["skipped"][0]["reason"]
    with pytest.raises(normlab.DataError, match="bomb.png' could not be decoded \\(its header claims"):
        sources.load_dataset("imagefolder", data_dir=str(folder), strict=True)


def save_png16(path, arr16):
    """A 16-bit grayscale (H, W) or RGB (H, W, 3) PNG, written by hand so the bit depth is certain."""
    h, w = arr16.shape[:2]
    color = 2 if arr16.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_pngs_are_scaled_to_8_bits_not_clipped(run, tmp_path):
    data = sources.load_dataset("digits")
    files8, files16 = [], []
    for i in range(6):
        # the digits span 0..16; stretched to 0..255 so that clipping at 255 would destroy them
        img8 = (data.test_x[i, 0].numpy().astype(np.uint16) * 255 // 16).astype(np.uint8)
        img8 = np.kron(img8, np.ones((3, 3), np.uint8))  # 24x24, resized back by predict
        p8, p16 = tmp_path / f"{i}-8.png", tmp_path / f"{i}-16.png"
        Image.fromarray(img8, "L").save(p8)
        save_png16(p16, img8.astype(np.uint16) * 257)  # the exact 16-bit widening of the 8-bit copy
        files8.append(str(p8))
        files16.append(str(p16))
    assert Image.open(files16[0]).mode == "I;16"
    p8 = normlab.predict(run, files8)
    p16 = normlab.predict(run, files16)
    assert [(a["class"], a["probability"]) for a in p8] == [(b["class"], b["probability"]) for b in p16]
    assert len({a["class"] for a in p8}) > 1  # not all one answer, as a saturated white image would give
    # torchvision's decoder (image folders) gives the same 8-bit pixels as the 8-bit file
    assert torch.equal(imagefolder.decode(files16[1]), imagefolder.decode(files8[1]))
    rgb8 = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_png16(tmp_path / "rgb16.png", rgb8.astype(np.uint16) * 257)
    Image.fromarray(rgb8).save(tmp_path / "rgb8.png")
    assert torch.equal(imagefolder.decode(str(tmp_path / "rgb16.png")), imagefolder.decode(str(tmp_path / "rgb8.png")))


def test_an_image_folder_with_one_16_bit_png_trains(tmp_path):
    rng = np.random.default_rng(1)
    for k, cls in enumerate(("dark", "light")):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 100, (8, 8)).astype(np.uint8) + 150 * k
            Image.fromarray(arr.astype(np.uint8), "L").save(tmp_path / "data" / cls / f"{i}.png")
    save_png16(tmp_path / "data" / "light" / "deep.png", np.full((8, 8), 200 * 257, np.uint16))
    ds = sources.load_dataset("imagefolder", data_dir=str(tmp_path / "data"))
    assert not ds.info["skipped"] and len(ds.train_y) + len(ds.test_y) == 13
    assert ds.train_x.dtype == torch.uint8
    r = normlab.train(dict(TINY, dataset="imagefolder", data_dir=str(tmp_path / "data"), batch_size=4,
                           out=str(tmp_path / "run")), log=quiet)
    assert r.summary["epochs"] == 1


# ---------------------------------------------------------------- nothing overwritten by surprise
def test_export_refuses_an_existing_file(run, tmp_path, capsys):
    before = snapshot(run)
    fails_cleanly(capsys, ["export", str(run), "--format", "torchscript", "--out", str(run / "weights.safetensors")],
                  "weights.safetensors' already exists; export never overwrites a file")
    assert snapshot(run) == before
    free = tmp_path / "model.pt"
    assert cli.main(["export", str(run), "--format", "torchscript", "--out", str(free)]) == 0
    assert free.is_file()


def test_compare_refuses_a_training_runs_folder(run, tmp_path, capsys):
    yml = tmp_path / "e.yaml"
    yml.write_text(json.dumps({"base": BASE, "factors": {"lr": [0.1]}, "seeds": 1}))
    before = snapshot(run)
    fails_cleanly(capsys, ["compare", str(yml), "--out", str(run)], "is a training run's folder, not a sweep's")
    assert snapshot(run) == before


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_run_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = normlab.train(dict(TINY, out=str(tmp_path / "r")), log=quiet).run_dir
    finally:
        os.umask(old)
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    files = {k: v for k, v in modes.items() if (out / k).is_file() and not k.startswith(".")}
    assert {"config.json", "summary.json", "weights.safetensors", "metrics.csv"} <= set(files)
    assert set(files.values()) == {mode}, files
    assert all(v == mode | 0o111 & ~umask for k, v in modes.items() if (out / k).is_dir())


# ---------------------------------------------------------------- files that are not files
def _ends(fn, limit=60.0):
    """fn() in a daemon thread: its result, or a failure if it has not ended within `limit` seconds
    (a generous bound; what counts is that it ends instead of waiting on a pipe forever)."""
    import threading

    box = {}
    t = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), "still waiting after 60 s"
    return box["value"]


def test_predict_refuses_a_named_pipe_before_opening_it(run, tmp_path, capsys):
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    assert _ends(lambda: cli.main(["predict", str(run), str(fifo)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"normlab predict: error: image '{fifo}' is a named pipe (FIFO), not a regular file; give a file"]


def test_predict_refuses_a_device(run, capsys):
    fails_cleanly(capsys, ["predict", str(run), "/dev/null"],
                  "image '/dev/null' is a device, not a regular file; give a file")


def test_an_image_folder_skips_a_named_pipe_by_name(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(tmp_path / cls / f"{i}.png")
    fifo = tmp_path / "a" / "pipe.png"
    os.mkfifo(fifo)
    lines = []
    ds = _ends(lambda: sources.load_dataset("imagefolder", data_dir=str(tmp_path), log=lines.append, stream="off"))
    assert len(ds.train_y) + len(ds.test_y) == 6
    assert f"normlab: skipping '{fifo}': image '{fifo}' is a named pipe (FIFO), not a regular file; give a file" in lines


def test_train_on_idx_labels_out_of_range_is_one_line(tmp_path, capsys):
    import struct

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        y[3] = 200
        for name, arr in ((f"{prefix}-images-idx3-ubyte", x), (f"{prefix}-labels-idx1-ubyte", y)):
            (raw / name).write_bytes(struct.pack(">I", 0x0800 | arr.ndim) + b"".join(struct.pack(">I", d)
                                                                                    for d in arr.shape) + arr.tobytes())
    fails_cleanly(capsys, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--model", "mlp",
                           "--epochs", "1", "--out", str(tmp_path / "run")],
                  f"IDX file '{raw}/train-labels-idx1-ubyte' holds label 200 (1 labels out of range)")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- hostile strings on pages
def test_a_javascript_link_in_an_experiment_description_is_text_in_the_report(sweep_dir, tmp_path):
    import re
    import shutil

    copy = tmp_path / "s"
    shutil.copytree(sweep_dir, copy)
    rec = json.loads((copy / "experiment.json").read_text())
    rec["description"] = "see [here](javascript:alert(document.domain)) <script>alert(1)</script>"
    (copy / "experiment.json").write_text(json.dumps(rec))
    page = report.write_report(copy)["paths"]["html"].read_text()
    assert not re.search(r'href="\s*javascript', page, re.I) and "<script" not in page
    assert "[here](javascript:alert(document.domain)) &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page


def test_a_run_folder_named_like_a_scheme_stays_a_relative_link(run, tmp_path, capsys):
    import re
    import shutil

    out = tmp_path / "out"
    odd = out / "javascript:alert(1)"
    shutil.copytree(run, odd)
    assert cli.main(["report", str(odd), "--out", str(out)]) == 0
    hrefs = re.findall(r'href="([^"]+)"', (out / "report.html").read_text())
    assert hrefs[:2] == ["./javascript:alert(1)/", "./javascript:alert(1)/config.json"]
    assert set(hrefs[2:]) <= {"curves.svg", "accuracy.svg", "loss.svg"}  # the figures' SVGs beside the page
    assert not any(h.startswith("javascript:") for h in hrefs)


# ---------------------------------------------------------------- properties: config files, CLI values, experiments
# Each asserts: a correct result, or a clean one-line error (NormlabError, exit 2), never another
# exception. In-process and bounded (max_examples, deadline) so they add seconds, not minutes.
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from normlab.config import FIELDS, field_type, load_config_file, make_config  # noqa: E402
from normlab.errors import NormlabError  # noqa: E402
from normlab.train.resolve import resolve_config  # noqa: E402

PROPERTY = settings(max_examples=40, deadline=20000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(),
                    st.text(max_size=10), st.sampled_from(["bn", "none", "mlp", "digits", "1e-3", "5,8", "[1, 2]",
                                                           "{}", ".inf", "nan", "-1", "0", "cosine", "adam"]))
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=2),
                      max_leaves=5)
OPTION_NAMES = st.sampled_from(sorted(FIELDS)) | st.text(max_size=8)


def clean(exc: BaseException) -> None:
    """The error is one a person reads: normlab's own type, one line, no traceback text."""
    assert isinstance(exc, NormlabError), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg


def config_or_clean_error(*sources):
    try:
        cfg = make_config(*sources)
        resolve_config(cfg)
    except Exception as exc:  # noqa: BLE001 - checked by clean()
        clean(exc)
        return None
    return cfg


@PROPERTY
@given(data=st.dictionaries(OPTION_NAMES, VALUES, max_size=4), fmt=st.sampled_from([".yaml", ".json"]))
def test_any_config_file_is_a_config_or_one_line(tmp_path, data, fmt):
    path = tmp_path / f"c{fmt}"
    path.write_text(json.dumps(data) if fmt == ".json" else yaml.safe_dump(data))
    try:
        loaded = load_config_file(path)
    except Exception as exc:  # noqa: BLE001
        clean(exc)
        return
    cfg = config_or_clean_error(loaded)
    if cfg is not None:  # a result: every value given in the option's own type is the one the config holds
        for k, v in data.items():
            if k in FIELDS and type(v) is field_type(k) and type(v) in (int, str, list):
                assert getattr(cfg, k) == v, (k, v, getattr(cfg, k))


@PROPERTY
@given(text=st.text(max_size=60) | st.sampled_from(["a: [", "epochs: .inf", "lr: .nan", "- 1\n- 2", "{a: {b: }",
                                                    "epochs: 1e400", "batch_size: !!binary AAAA", "? [1]\n: 2",
                                                    "model: !!python/object:os.system ls"]))
def test_any_config_file_text_is_a_config_or_one_line(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load_config_file(path)
    except Exception as exc:  # noqa: BLE001
        clean(exc)
        return
    config_or_clean_error(loaded)


import yaml  # noqa: E402

TRAIN_FLAGS = sorted("--" + f.replace("_", "-") for f in FIELDS if f not in ("out", "config"))


@PROPERTY
@given(pairs=st.lists(st.tuples(st.sampled_from(TRAIN_FLAGS), st.text(min_size=1, max_size=10).filter(
    lambda v: not v.startswith("-")) | SCALARS.map(str).filter(lambda v: v and not v.startswith("-"))), max_size=4))
def test_any_command_line_values_are_a_config_or_one_line(pairs):
    from normlab.cli import build_parser, config_from_args

    argv = ["train"]
    for flag, value in pairs:
        argv += [flag, value]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's own two-line usage error, exit 2 (e.g. --no-x given a value)
        assert exc.code == 2
        return
    try:
        cfg = config_from_args(args)
        resolve_config(cfg)
    except Exception as exc:  # noqa: BLE001
        clean(exc)


EXPERIMENT_KEYS = st.sampled_from(["base", "factors", "seeds", "metric", "name", "description"]) | st.text(max_size=6)


@PROPERTY
@given(data=st.dictionaries(EXPERIMENT_KEYS, VALUES, max_size=5) | st.fixed_dictionaries(
    {"base": st.fixed_dictionaries({"dataset": st.just("digits"), "model": st.just("mlp")},
                                   optional={"epochs": VALUES, "norm": VALUES, "lr": VALUES}),
     "factors": st.dictionaries(OPTION_NAMES, st.lists(SCALARS, max_size=3) | VALUES, max_size=2),
     "seeds": VALUES}, optional={"metric": VALUES, "name": VALUES, "description": VALUES}))
def test_any_experiment_file_is_an_experiment_or_one_line(tmp_path, data):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        exp = spec.load_experiment(path)
    except Exception as exc:  # noqa: BLE001
        clean(exc)
        return
    cells = grid.expand(exp)  # a result: a grid whose every cell is a config
    assert len(cells) == int(np.prod([len(v) for v in exp.factors.values()])) and exp.seeds
    assert len({c.id for c in cells}) == len(cells)


def test_named_pipes_in_place_of_run_files_never_block_a_listing_or_a_report(sweep_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "s"
    shutil.copytree(sweep_dir, copy)
    summary = copy / "runs" / "lr=0.1-s0" / "summary.json"
    summary.unlink()
    os.mkfifo(summary)
    config = copy / "runs" / "lr=0.05-s0" / "config.json"
    config.unlink()
    os.mkfifo(config)
    rows = {r["cell"]: r for r in _ends(lambda: results.collect(copy))}
    assert rows["lr=0.1"]["status"] == "damaged" and "not a regular file" in rows["lr=0.1"]["error"]
    assert _ends(lambda: cli.main(["runs", str(copy / "runs"), "--json"])) == 0
    listed = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["lr=0.05-s0"]["status"] == "damaged"
    assert listed["lr=0.05-s0"]["problem"] == "config.json is not a regular file"
