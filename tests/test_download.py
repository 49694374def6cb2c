"""Downloads against HTTP servers on 127.0.0.1 that the tests start, serving files in the real formats.

The fixtures are small synthetic sets written as the publishers' files (gzip IDX, the CIFAR python
tarball, SVHN .mat); their MD5s replace the built-in ones through NORMLAB_DATA_CHECKSUMS, the one
documented hook, so verification runs exactly as for the real files. conftest.py makes any other
host unreachable.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from normlab.cli import main
from normlab.data import download, sources, vision
from normlab.errors import DataError

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# ---------------------------------------------------------------- files in the real formats
def idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes(), mtime=0)


def mnist_files(folder: str, n_train=40, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    files, arrays = {}, {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        files[f"{folder}/raw/{prefix}-images-idx3-ubyte.gz"] = idx_gz(x)
        files[f"{folder}/raw/{prefix}-labels-idx1-ubyte.gz"] = idx_gz(y)
        arrays[prefix] = (x, y)
    return files, arrays


def cifar10_tarball(seed=1):
    rng = np.random.default_rng(seed)
    members, train = {}, []
    for i in range(1, 6):
        x = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, 2)]
        members[f"data_batch_{i}"] = {"data": x, "labels": y}
        train.append((x, y))
    members["test_batch"] = {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [7, 8, 9]}
    members["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, obj in members.items():
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {"cifar-10-python.tar.gz": buf.getvalue()}, train


def svhn_files(seed=2):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    files, first = {}, None
    for split, n in (("train", 5), ("test", 3)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4]][:n], dtype=np.uint8)  # SVHN stores digit 0 as 10
        buf = io.BytesIO()
        savemat(buf, {"X": X, "y": y})
        files[f"{split}_32x32.mat"] = buf.getvalue()
        if split == "train":
            first = X[..., 0].transpose(2, 0, 1)
    return files, first


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------- the server
class Server:
    """A threading http.server on 127.0.0.1 with Range support and per-file misbehaviour:
    '404', ('drop', n): close after n bytes, ('stall', n): send n bytes then hang,
    'norange': ignore Range headers, ('trickle', seconds): send in 1 KB steps with a pause,
    ('drip', seconds): one byte per pause, 'portal': an HTML login page with status 200."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, object] = {}
        self.hits = collections.Counter()
        self.ranges: list[tuple[str, str]] = []
        self.release = threading.Event()
        self.stalled = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                server.hits[path] += 1
                if self.headers.get("Range"):
                    server.ranges.append((path, self.headers["Range"]))
                mode = server.modes.get(path)
                if path not in server.files or mode == "404":
                    self.send_error(404)
                    return
                if mode == "portal":  # a captive portal: 200 and its own page, whatever was asked
                    page = b"<!DOCTYPE html><html><body>Please log in to the hotel Wi-Fi</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                body, start = server.files[path], 0
                rng = self.headers.get("Range")
                if rng and mode != "norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                body = body[start:]
                if isinstance(mode, tuple) and mode[0] == "drop":
                    self.wfile.write(body[:mode[1]])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif isinstance(mode, tuple) and mode[0] == "stall":
                    self.wfile.write(body[:mode[1]])
                    self.wfile.flush()
                    server.stalled.set()
                    server.release.wait(600)
                elif isinstance(mode, tuple) and mode[0] == "drip":  # one byte at a time, forever in effect
                    try:
                        for i in range(len(body)):
                            if server.release.is_set():
                                break
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                            server.release.wait(mode[1])
                    except OSError:  # the client gave up
                        pass
                elif isinstance(mode, tuple) and mode[0] == "trickle":
                    for i in range(0, len(body), 1024):
                        self.wfile.write(body[i:i + 1024])
                        self.wfile.flush()
                        time.sleep(mode[1])
                else:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def publish(self, prefix: str, files: dict[str, bytes]) -> None:
        for rel, data in files.items():
            self.files[f"{prefix}/{rel}"] = data

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def checksums(tmp_path, monkeypatch):
    """Write the fixtures' MD5s to a file and point NORMLAB_DATA_CHECKSUMS at it."""
    path = tmp_path / "md5sums.txt"

    def use(files: dict[str, bytes]):
        path.write_text("".join(f"{md5(d)}  {rel}\n" for rel, d in files.items()))
        monkeypatch.setenv("NORMLAB_DATA_CHECKSUMS", str(path))
        return path

    return use


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"


def dead_url() -> str:
    """A loopback port with nothing listening: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


# ---------------------------------------------------------------- settings
def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "env"))
    assert download.data_root(str(tmp_path / "cli")) == tmp_path / "cli"
    assert download.data_root(None) == tmp_path / "env"
    monkeypatch.delenv("NORMLAB_DATA")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert download.data_root(None) == tmp_path / "cache" / "normlab" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert download.data_root(None) == Path.home() / ".cache" / "normlab" / "data"


def test_mirror_settings_are_tried_in_order(monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", "http://b.example/x, http://c.example/")
    r = vision.SETS["mnist"].remotes()[0]
    urls = download.urls_for(r, "http://a.example")
    assert urls[:3] == ["http://a.example/MNIST/raw/train-images-idx3-ubyte.gz",
                        "http://b.example/x/MNIST/raw/train-images-idx3-ubyte.gz",
                        "http://c.example/MNIST/raw/train-images-idx3-ubyte.gz"]
    # then torchvision's own mirrors, in torchvision's order
    from torchvision.datasets import MNIST

    assert urls[3:] == [m + "train-images-idx3-ubyte.gz" for m in MNIST.mirrors]


def test_builtin_checksums_are_torchvisions_unless_overridden(checksums):
    from torchvision.datasets import CIFAR10, FashionMNIST

    assert [(r.path, r.md5) for r in vision.SETS["fashion-mnist"].remotes()] == \
        [(f"FashionMNIST/raw/{f}", m) for f, m in FashionMNIST.resources]
    checksums({"cifar-10-python.tar.gz": b"abc"})
    (r,) = vision.SETS["cifar10"].remotes()
    assert r.md5 == md5(b"abc") != CIFAR10.tgz_md5 and r.urls == (CIFAR10.url,)


def test_bad_checksum_file_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "sums"
    bad.write_text("not-a-md5 MNIST/raw/x\n")
    monkeypatch.setenv("NORMLAB_DATA_CHECKSUMS", str(bad))
    with pytest.raises(DataError, match=r"line 1: expected 'MD5  PATH', got 'not-a-md5 MNIST/raw/x'$"):
        vision.SETS["mnist"].remotes()


# ---------------------------------------------------------------- downloads that work
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_downloads_verifies_and_loads(server, checksums, root, name, folder):
    files, arrays = mnist_files(folder)
    server.publish("m", files)
    checksums(files)
    assert not sources.get_source(name).is_present(str(root))
    lines = []
    ds = sources.load_dataset(name, data_dir=str(root), mirror=server.url + "/m", log=lines.append)
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(arrays["train"][0]))
    assert torch.equal(ds.test_y, torch.from_numpy(arrays["t10k"][1].astype(np.int64)))
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data  # kept as downloaded, next to the unpacked file
        assert server.hits[f"m/{rel}"] == 1
    assert not list(root.rglob("*.part"))
    assert any(line.endswith("md5 verified") for line in lines)
    assert sources.get_source(name).is_present(str(root))
    sources.load_dataset(name, data_dir=str(root), mirror=server.url + "/m", log=lines.append)
    assert sum(server.hits.values()) == 4  # present: nothing fetched again


def test_cifar10_tarball_downloads_and_unpacks(server, checksums, root):
    files, train = cifar10_tarball()
    server.publish("m", files)
    checksums(files)
    ds = sources.load_dataset("cifar10", data_dir=str(root), mirror=server.url + "/m", log=lambda s: None)
    assert ds.train_x.shape == (10, 3, 32, 32) and ds.test_y.tolist() == [7, 8, 9]
    assert torch.equal(ds.train_x[0], torch.from_numpy(train[0][0][0].reshape(3, 32, 32)))
    assert ds.train_y.tolist() == sum((y for _, y in train), [])
    assert ds.classes == [f"class{i}" for i in range(10)]
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".cifar-10-batches-py")]  # no temporary unpack folder


def test_svhn_mat_downloads(server, checksums, root):
    pytest.importorskip("scipy")
    files, first = svhn_files()
    server.publish("m", files)
    checksums(files)
    ds = sources.load_dataset("svhn", data_dir=str(root), mirror=server.url + "/m", log=lambda s: None)
    assert ds.train_y.tolist() == [0, 1, 2, 3, 4] and ds.test_x.shape == (3, 3, 32, 32)
    assert torch.equal(ds.train_x[0], torch.from_numpy(np.ascontiguousarray(first)))


# ---------------------------------------------------------------- failures
def test_dead_mirrors_fall_through_to_the_next(server, checksums, root):
    files, _ = mnist_files("MNIST")
    server.publish("good", files)
    checksums(files)
    refused = dead_url()
    lines = []
    mirror = f"{refused}/x {server.url}/missing {server.url}/good"
    sources.load_dataset("mnist", data_dir=str(root), mirror=mirror, log=lines.append)
    first = "MNIST/raw/train-images-idx3-ubyte.gz"
    notes = [line for line in lines if "trying the next URL" in line]
    assert notes[0].startswith(f"normlab: {refused}/x/{first}: ") and "refused" in notes[0].lower()
    assert notes[1] == f"normlab: {server.url}/missing/{first}: HTTP 404 Not Found; trying the next URL"
    assert server.hits[f"good/{first}"] == 1 and server.hits[f"missing/{first}"] == 1


def test_progress_bar_on_a_terminal(server, checksums, root, monkeypatch):
    files, _ = mnist_files("MNIST")
    server.publish("m", files)
    checksums(files)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    sources.load_dataset("mnist", data_dir=str(root), mirror=server.url + "/m", log=lambda s: None)
    size = len(files["MNIST/raw/train-images-idx3-ubyte.gz"])
    # tqdm's bar as first drawn: file name, bytes done of the total, elapsed<ETA, rate (a fast
    # download may end before tqdm's next redraw, and the bar is cleared at the end)
    assert f"\rtrain-images-idx3-ubyte.gz:   0%|          | 0.00/{size / 1000:.1f}k [00:00<?, ?B/s]" in term.getvalue()


def test_checksum_mismatch_keeps_nothing(server, checksums, root, capsys):
    files, _ = mnist_files("MNIST")
    checksums(files)
    bad = dict(files)
    rel = "MNIST/raw/train-labels-idx1-ubyte.gz"
    bad[rel] = files[rel][:-1] + bytes([files[rel][-1] ^ 1])
    server.publish("m", bad)
    code = main(["datasets", "--download", "mnist", "--data-dir", str(root), "--data-mirror", server.url + "/m"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    from torchvision.datasets import MNIST

    # the mirror's bad bytes are one answer among the URLs tried (the publishers' are unreachable here)
    assert err[-1].startswith(
        f"normlab datasets: error: could not download {rel} of dataset 'mnist': 3 URL(s) tried: {server.url}/m/{rel} "
        f"(checksum mismatch: expected md5 {md5(files[rel])}, got {md5(bad[rel])}; deleted); "
        f"{MNIST.mirrors[0]}train-labels-idx1-ubyte.gz (")
    assert err[-1].endswith("place the files by hand (`normlab datasets mnist` lists them)")
    # the file before it was good and stays; the bad one left neither its name nor a .part
    assert leftovers(root) == ["MNIST/raw/train-images-idx3-ubyte.gz"]
    assert not sources.get_source("mnist").is_present(str(root))


def test_connection_dropped_half_way_leaves_no_file_then_resumes(server, checksums, root):
    files, arrays = mnist_files("MNIST", n_train=200)
    server.publish("m", files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    server.modes[f"m/{rel}"] = ("drop", 3000)
    lines = []
    with pytest.raises(DataError) as e:
        sources.load_dataset("mnist", data_dir=str(root), mirror=server.url + "/m", log=lines.append)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"could not download {rel} of dataset 'mnist': ")
    assert msg.endswith("set NORMLAB_DATA_MIRROR, or place the files by hand (`normlab datasets mnist` lists them)")
    assert f"normlab: {server.url}/m/{rel}: connection closed after 3.0 KB of {len(files[rel]) / 1000:.1f} KB; " \
           f"trying the next URL" in lines
    assert not (root / rel).exists() and (root / f"{rel}.part").stat().st_size == 3000
    assert not sources.get_source("mnist").is_present(str(root))
    del server.modes[f"m/{rel}"]
    ds = sources.load_dataset("mnist", data_dir=str(root), mirror=server.url + "/m", log=lines.append)
    assert (f"m/{rel}", "bytes=3000-") in server.ranges  # resumed where it stopped
    assert (root / rel).read_bytes() == files[rel] and not (root / f"{rel}.part").exists()
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(arrays["train"][0]))


def test_a_server_without_range_restarts_the_file(server, checksums, root):
    files, _ = mnist_files("MNIST")
    server.publish("m", files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    (root / "MNIST/raw").mkdir(parents=True)
    (root / f"{rel}.part").write_bytes(files[rel][:500])
    server.modes[f"m/{rel}"] = "norange"
    sources.load_dataset("mnist", data_dir=str(root), mirror=server.url + "/m", log=lambda s: None)
    assert (root / rel).read_bytes() == files[rel]


def test_a_stale_part_from_another_file_restarts_once(server, checksums, root):
    files, _ = mnist_files("MNIST")
    server.publish("m", files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    (root / "MNIST/raw").mkdir(parents=True)
    (root / f"{rel}.part").write_bytes(b"x" * 100)  # not a prefix of the file
    lines = []
    sources.load_dataset("mnist", data_dir=str(root), mirror=server.url + "/m", log=lines.append)
    assert (root / rel).read_bytes() == files[rel]
    assert "normlab: train-images-idx3-ubyte.gz: resumed download does not match its MD5; restarting" in lines


def test_stalled_server_times_out_to_the_next_mirror(server, checksums, root, monkeypatch):
    files, _ = mnist_files("MNIST")
    server.publish("slow", files)
    server.publish("good", files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    server.modes[f"slow/{rel}"] = ("stall", 100)
    monkeypatch.setenv("NORMLAB_DATA_TIMEOUT", "3")  # the good mirror must answer within it, even on a loaded machine
    lines = []
    sources.load_dataset("mnist", data_dir=str(root), mirror=f"{server.url}/slow {server.url}/good", log=lines.append)
    assert server.stalled.is_set()
    note = next(line for line in lines if line.startswith(f"normlab: {server.url}/slow/{rel}: "))
    assert "connection lost after 100 B" in note and "timed out" in note
    assert (root / rel).read_bytes() == files[rel]


def test_no_network_at_all_is_one_line(root, capsys):
    code = main(["datasets", "--download", "kmnist", "--data-dir", str(root)])
    err = capsys.readouterr().err.strip().splitlines()
    from torchvision.datasets import KMNIST

    url = KMNIST.mirrors[-1] + "train-images-idx3-ubyte.gz"
    assert code == 2
    assert err[-1].startswith("normlab datasets: error: could not download KMNIST/raw/train-images-idx3-ubyte.gz "
                              f"of dataset 'kmnist': 1 URL(s) tried: {url} (")
    assert err[-1].endswith("place the files by hand (`normlab datasets kmnist` lists them)")
    assert leftovers(root) == []


def test_offline_lists_the_files_and_touches_nothing(server, root, monkeypatch, capsys):
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", server.url)
    code = main(["train", "--dataset", "fashion-mnist", "--data-dir", str(root), "--offline", "--epochs", "1"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and "NORMLAB_OFFLINE" not in os.environ  # set for the command only
    assert err[0] == (f"normlab train: error: dataset 'fashion-mnist' is not present under '{root}' and normlab is "
                      f"offline (--offline or NORMLAB_OFFLINE=1). Place these files:")
    from torchvision.datasets import FashionMNIST

    assert err[1:] == [f"  {root}/FashionMNIST/raw/{f}  (md5 {m}, from {FashionMNIST.mirrors[0]}{f})"
                       for f, m in FashionMNIST.resources]
    assert sum(server.hits.values()) == 0


def test_offline_cifar_also_names_the_unpacked_folder(root, monkeypatch):
    monkeypatch.setenv("NORMLAB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        sources.load_dataset("cifar10", data_dir=str(root))
    assert str(e.value).splitlines()[1:] == [
        f"  {root}/cifar-10-python.tar.gz  (md5 c58f30108f718f92721af3b95e74349a, "
        f"from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)",
        f"(or the unpacked folder {root}/cifar-10-batches-py/)"]


# ---------------------------------------------------------------- processes
def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "normlab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_two_processes_download_the_same_set_once(server, checksums, root):
    files, _ = mnist_files("MNIST", n_train=100)
    server.publish("m", files)
    checksums(files)
    server.modes["m/MNIST/raw/train-images-idx3-ubyte.gz"] = ("trickle", 0.01)
    env = dict(os.environ, NORMLAB_DATA_MIRROR=server.url + "/m")
    procs = [_cli(["datasets", "--download", "mnist", "--data-dir", str(root)], env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(o.strip() == f"mnist: present under {root}/MNIST/raw" for o, _ in outs)
    assert all(server.hits[f"m/{rel}"] == 1 for rel in files)  # the second waited, then found it present
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data


def test_kill_9_mid_download_leaves_only_a_part_then_resumes(server, checksums, root):
    files, _ = mnist_files("MNIST", n_train=200)
    server.publish("m", files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    server.modes[f"m/{rel}"] = ("stall", 2000)
    env = dict(os.environ, NORMLAB_DATA_MIRROR=server.url + "/m")
    p = _cli(["datasets", "--download", "mnist", "--data-dir", str(root)], env)
    part = root / f"{rel}.part"
    assert server.stalled.wait(600)  # generous: a loaded machine starts Python slowly
    deadline = time.monotonic() + 600  # the client writes what it received; wait for it to land
    while not (part.is_file() and part.stat().st_size == 2000) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=600)
    assert part.stat().st_size == 2000 and not (root / rel).exists()
    assert not sources.get_source("mnist").is_present(str(root))
    del server.modes[f"m/{rel}"]
    assert main(["datasets", "--download", "mnist", "--data-dir", str(root), "--data-mirror", server.url + "/m"]) == 0
    assert (f"m/{rel}", "bytes=2000-") in server.ranges
    assert (root / rel).read_bytes() == files[rel]


# ---------------------------------------------------------------- the commands
def test_datasets_lists_size_presence_and_where(server, checksums, root, capsys):
    files, _ = mnist_files("FashionMNIST")
    server.publish("m", files)
    checksums(files)
    assert main(["datasets", "--download", "fashion-mnist", "--data-dir", str(root),
                 "--data-mirror", server.url + "/m"]) == 0
    assert capsys.readouterr().out == f"fashion-mnist: present under {root}/FashionMNIST/raw\n"
    assert main(["datasets", "--data-dir", str(root), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fashion-mnist"]["present"] and not rows["mnist"]["present"]
    assert rows["fashion-mnist"]["where"] == f"{root}/FashionMNIST/raw"
    assert rows["fashion-mnist"]["download_bytes"] == 26421880 + 29515 + 4422102 + 5148
    assert rows["cifar10"]["download_bytes"] == 170498071 and rows["mnist5k"]["where"] is None
    assert main(["datasets", "--data-dir", str(root)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"data root: {root} (from --data-dir)"
    assert table[1].split() == ["name", "train", "test", "classes", "shape", "download", "present", "where"]
    assert f"fashion-mnist   60,000  10,000      10  1x28x28    30.9 MB  yes      {root}/FashionMNIST/raw" in table
    assert main(["datasets", "mnist", "--data-dir", str(root), "--data-mirror", "http://127.0.0.1:1/m"]) == 0
    detail = capsys.readouterr().out.splitlines()
    assert detail[0] == "mnist: 0 of 4 files present"
    assert detail[1].split() == ["missing", f"{root}/MNIST/raw/train-images-idx3-ubyte.gz", "md5",
                                 "f68b3c2dcbeaaa9fbdd348bbdeb94873", "9.9", "MB"]
    assert detail[2].strip() == "http://127.0.0.1:1/m/MNIST/raw/train-images-idx3-ubyte.gz"


def test_download_needs_names_and_known_ones(capsys):
    assert main(["datasets", "--download"]) == 2
    assert capsys.readouterr().err.strip() == ("normlab datasets: error: --download needs the names of the datasets "
                                               "to fetch, e.g. `normlab datasets --download fashion-mnist cifar10`")
    assert main(["datasets", "--download", "fashon-mnist"]) == 2
    assert "fashion-mnist" in capsys.readouterr().err


def test_train_then_eval_download_on_demand(server, checksums, tmp_path, monkeypatch, capsys):
    files, _ = mnist_files("FashionMNIST", n_train=60, n_test=20)
    server.publish("m", files)
    checksums(files)
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", server.url + "/m")
    out = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--model", "lenet-bn", "--epochs", "1",
                 "--batch-size", "16", "--out", str(out), "--no-progress"]) == 0
    assert (tmp_path / "data/FashionMNIST/raw/train-images-idx3-ubyte").is_file()
    import shutil

    shutil.rmtree(tmp_path / "data")  # eval on a machine without the data fetches it again
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test_size"] == 20 and res["test_acc"] == res["summary_test_acc"]
    assert server.hits["m/FashionMNIST/raw/t10k-images-idx3-ubyte.gz"] == 2


# ---------------------------------------------------------------- sweeps: compare (and claims, same path)
def _tiny_experiment(path: Path) -> Path:
    path.write_text("name: tiny\ndescription: a missing mnist-format set, fetched by the sweep\n"
                    "base: {dataset: mnist, model: mlp, width: 8, epochs: 1, batch_size: 16, device: cpu}\n"
                    "factors:\n  norm: [bn, none]\nseeds: 1\n")
    return path


def test_compare_downloads_a_missing_set_once_through_the_mirror(server, checksums, tmp_path, monkeypatch, capsys):
    files, _ = mnist_files("MNIST")
    server.publish("m", files)
    checksums(files)
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", server.url + "/m")
    out = tmp_path / "sweep"
    assert main(["compare", str(_tiny_experiment(tmp_path / "tiny.yaml")), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "normlab: dataset 'mnist' is not under" in err and err.count("md5 verified") == 4
    assert all(server.hits[f"m/{rel}"] == 1 for rel in files)  # fetched before the runs, not once per run
    for rel, data in files.items():
        assert (tmp_path / "data" / rel).read_bytes() == data
    for cell in ("norm=bn-s0", "norm=none-s0"):
        summary = json.loads((out / "runs" / cell / "summary.json").read_text())
        assert (summary["dataset"], summary["epochs"]) == ("mnist", 1)


def test_compare_offline_lists_the_files_to_place_and_trains_nothing(server, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    monkeypatch.setenv("NORMLAB_DATA", str(root))
    monkeypatch.setenv("NORMLAB_DATA_MIRROR", server.url)
    out = tmp_path / "sweep"
    assert main(["compare", str(_tiny_experiment(tmp_path / "tiny.yaml")), "--out", str(out), "--offline"]) == 2
    err = capsys.readouterr().err.splitlines()
    from torchvision.datasets import MNIST

    assert err == [f"normlab compare: error: dataset 'mnist' is not present under '{root}' and normlab is offline "
                   f"(--offline or NORMLAB_OFFLINE=1). Place these files:"] + \
                  [f"  {root}/MNIST/raw/{f}  (md5 {m}, from {MNIST.mirrors[0]}{f})" for f, m in MNIST.resources]
    assert sum(server.hits.values()) == 0 and not list((out / "runs").glob("*/summary.json"))


# ---------------------------------------------------------------- hostile networks and full disks
def _in_thread(fn, limit: float):
    """Run fn in a daemon thread; its result, or a failure if it has not ended within `limit` seconds
    (a generous bound: what is checked is that it ends, not how fast)."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still running after {limit} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_a_dripping_mirror_ends_at_the_deadline_and_the_next_one_is_tried(server, checksums, root, monkeypatch):
    files, _ = mnist_files("MNIST")
    server.publish("slow", files)
    goods = [f"good{i}" for i in range(3)]
    for g in goods:
        server.publish(g, files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    server.modes[f"slow/{rel}"] = ("drip", 0.2)  # never silent for the per-read timeout, never done
    monkeypatch.setenv("NORMLAB_DATA_TIMEOUT", "30")
    monkeypatch.setenv("NORMLAB_DATA_DEADLINE", "2")
    lines = []
    # three good mirrors: a loaded machine that needs longer than the deadline for the 30 KB
    # resumes from the next one, so nothing here depends on how fast the machine is
    mirror = " ".join([f"{server.url}/slow"] + [f"{server.url}/{g}" for g in goods])
    _in_thread(lambda: sources.load_dataset("mnist", data_dir=str(root), mirror=mirror, log=lines.append), limit=120)
    note = next(line for line in lines if line.startswith(f"normlab: {server.url}/slow/{rel}: "))
    assert "still unfinished after the NORMLAB_DATA_DEADLINE of 2 s" in note and note.endswith("trying the next URL")
    assert (root / rel).read_bytes() == files[rel]
    assert server.hits[f"good0/{rel}"] == 1


def test_a_bad_deadline_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA_DEADLINE", "soon")
    with pytest.raises(DataError, match=r"^NORMLAB_DATA_DEADLINE='soon': must be a number of seconds > 0$"):
        download.deadline()


def test_a_captive_portal_is_skipped_for_the_next_mirror_and_keeps_the_part(server, checksums, root):
    files, _ = mnist_files("MNIST")
    server.publish("portal", files)
    server.publish("good", files)
    checksums(files)
    for rel in files:
        server.modes[f"portal/{rel}"] = "portal"
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    (root / "MNIST/raw").mkdir(parents=True)
    (root / f"{rel}.part").write_bytes(files[rel][:1000])  # an earlier, interrupted download
    lines = []
    sources.load_dataset("mnist", data_dir=str(root), mirror=f"{server.url}/portal {server.url}/good", log=lines.append)
    assert (f"normlab: {server.url}/portal/{rel}: answered a web page (text/html; charset=utf-8), not the file: "
            f"a captive portal or login page?; trying the next URL") in lines
    assert (f"good/{rel}", "bytes=1000-") in server.ranges  # the portal's page did not replace the .part
    for r, data in files.items():
        assert (root / r).read_bytes() == data and server.hits[f"good/{r}"] == 1


def test_when_every_mirror_fails_the_error_lists_each_answer(server, checksums, root, capsys):
    files, _ = mnist_files("KMNIST")
    checksums(files)
    rel = "KMNIST/raw/train-images-idx3-ubyte.gz"
    server.publish("portal", files)
    server.modes[f"portal/{rel}"] = "portal"
    wrong = b"\x1f\x8b" + b"\0" * 50
    server.publish("bad", {rel: wrong})
    code = main(["datasets", "--download", "kmnist", "--data-dir", str(root),
                 "--data-mirror", f"{server.url}/portal {server.url}/bad {server.url}/none"])
    err = capsys.readouterr().err.strip().splitlines()
    from torchvision.datasets import KMNIST

    assert code == 2 and err[-1].startswith(
        f"normlab datasets: error: could not download {rel} of dataset 'kmnist': 4 URL(s) tried: "
        f"{server.url}/portal/{rel} (answered a web page (text/html; charset=utf-8), not the file: a captive portal "
        f"or login page?); {server.url}/bad/{rel} (checksum mismatch: expected md5 {md5(files[rel])}, got "
        f"{md5(wrong)}; deleted); {server.url}/none/{rel} (HTTP 404 Not Found); "
        f"{KMNIST.mirrors[0]}train-images-idx3-ubyte.gz (")
    assert leftovers(root) == []


def _disk_fails(monkeypatch, module, seam: str, err: int, when):
    """Make `module.seam(out, block)` raise OSError(err) once `when(out)` holds: the disk filling
    (or refusing) at a chosen file, deterministically."""
    real = getattr(module, seam)

    def write(out, block):
        if when(out):
            raise OSError(err, os.strerror(err))
        return real(out, block)

    monkeypatch.setattr(module, seam, write)


def test_a_disk_that_fills_while_downloading_is_one_line_and_keeps_what_was_verified(server, checksums, root,
                                                                                    capsys, monkeypatch):
    import errno

    files, _ = mnist_files("MNIST", n_test=200)
    server.publish("m", files)
    checksums(files)
    rel = "MNIST/raw/t10k-images-idx3-ubyte.gz"  # the third file: two verified ones before it
    with monkeypatch.context() as m:
        _disk_fails(m, download, "_write", errno.ENOSPC, lambda out: "t10k-images" in out.name and out.tell() > 0)
        code = main(["datasets", "--download", "mnist", "--data-dir", str(root), "--data-mirror", server.url + "/m"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"normlab datasets: error: downloading t10k-images-idx3-ubyte.gz into "
                              f"'{root}/MNIST/raw' failed: the disk is full; about ")
    assert "more are needed there; free some space, or pass --data-dir" in err[-1] and "delete" not in err[-1]
    verified = ["MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz"]
    assert all((root / v).read_bytes() == files[v] for v in verified)  # verified before the disk filled: kept
    kept = (root / f"{rel}.part").stat().st_size
    assert 0 < kept < len(files[rel])
    # space freed: the same command resumes the .part and fetches nothing twice
    assert main(["datasets", "--download", "mnist", "--data-dir", str(root), "--data-mirror", server.url + "/m"]) == 0
    assert (f"m/{rel}", f"bytes={kept}-") in server.ranges
    assert all(server.hits[f"m/{v}"] == 1 for v in verified)
    for r, data in files.items():
        assert (root / r).read_bytes() == data


@pytest.mark.parametrize("err, why", [("EACCES", "it cannot be written (Permission denied)"),
                                      ("EROFS", "it cannot be written (Read-only file system)")])
def test_an_unwritable_data_folder_is_one_line(server, checksums, root, capsys, monkeypatch, err, why):
    import errno

    files, _ = mnist_files("MNIST")
    server.publish("m", files)
    checksums(files)
    _disk_fails(monkeypatch, download, "_write", getattr(errno, err), lambda out: True)
    code = main(["datasets", "--download", "mnist", "--data-dir", str(root), "--data-mirror", server.url + "/m"])
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err_lines[-1] == (
        f"normlab datasets: error: downloading train-images-idx3-ubyte.gz into '{root}/MNIST/raw' failed: {why}; "
        f"pass --data-dir (or set NORMLAB_DATA) to a writable folder; every verified file already there is kept, "
        f"and a partial download resumes on the next try")


def test_a_data_root_that_cannot_be_a_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["datasets", "--download", "mnist", "--data-dir", str(blocker / "data")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"normlab datasets: error: cannot write to the data root '{blocker}/data' (Not a "
                                 f"directory); pass --data-dir (or set NORMLAB_DATA) to a writable folder"]


def test_a_disk_that_fills_while_unpacking_keeps_the_verified_archives(server, checksums, root, capsys, monkeypatch):
    import errno

    files, arrays = mnist_files("MNIST")
    server.publish("m", files)
    checksums(files)
    with monkeypatch.context() as m:
        _disk_fails(m, vision, "_write_block", errno.ENOSPC, lambda out: "t10k-images" in out.name)
        code = main(["datasets", "--download", "mnist", "--data-dir", str(root), "--data-mirror", server.url + "/m"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (f"normlab datasets: error: unpacking t10k-images-idx3-ubyte.gz into '{root}/MNIST/raw' failed: "
                       f"the disk is full; about {(10 * 28 * 28 + 16) / 1000:.1f} KB more are needed there; free some space, or pass "
                       f"--data-dir (or set NORMLAB_DATA) to a folder with room; every verified file already there is "
                       f"kept, and a partial download resumes on the next try")
    for r, data in files.items():
        assert (root / r).read_bytes() == data  # every archive kept, none to delete
    assert not (root / "MNIST/raw/t10k-images-idx3-ubyte").exists()
    assert not (root / "MNIST/raw/t10k-images-idx3-ubyte.part").exists()
    ds = sources.load_dataset("mnist", data_dir=str(root), mirror=server.url + "/m", log=lambda s: None)
    assert torch.equal(ds.test_x[:, 0], torch.from_numpy(arrays["t10k"][0]))
    assert all(server.hits[f"m/{r}"] == 1 for r in files)  # unpacked from the kept archives, not fetched again


def test_a_disk_that_fills_while_unpacking_cifar_keeps_the_archive(server, checksums, root, capsys, monkeypatch):
    import errno
    import tarfile as tf

    files, _ = cifar10_tarball()
    server.publish("m", files)
    checksums(files)
    real = tf.TarFile.extractall

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tf.TarFile, "extractall", full)
    code = main(["datasets", "--download", "cifar10", "--data-dir", str(root), "--data-mirror", server.url + "/m"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"normlab datasets: error: unpacking cifar-10-python.tar.gz into "
                                            f"'{root}' failed: the disk is full; about ")
    assert "delete" not in err[-1]
    assert (root / "cifar-10-python.tar.gz").read_bytes() == files["cifar-10-python.tar.gz"]
    monkeypatch.setattr(tf.TarFile, "extractall", real)
    ds = sources.load_dataset("cifar10", data_dir=str(root), mirror=server.url + "/m", log=lambda s: None)
    assert ds.test_y.tolist() == [7, 8, 9] and server.hits["m/cifar-10-python.tar.gz"] == 1


def test_an_intact_archive_that_will_not_unpack_is_never_called_bad(root, checksums, monkeypatch):
    files, _ = mnist_files("MNIST")
    checksums(files)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    def broken(src, dest):
        raise EOFError("simulated reader failure")

    monkeypatch.setattr(vision, "_gunzip", broken)
    with pytest.raises(DataError) as e:
        sources.load_dataset("mnist", data_dir=str(root))
    msg = str(e.value)
    assert "matches its MD5 (it is intact, keep it)" in msg and "delete" not in msg


def test_two_fetches_of_one_file_without_the_dataset_lock_do_not_corrupt_it(server, checksums, root):
    files, _ = mnist_files("MNIST", n_train=100)
    server.publish("m", files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    server.modes[f"m/{rel}"] = ("trickle", 0.005)
    (remote,) = [r for r in vision.SETS["mnist"].remotes() if r.path == rel]
    results, lines = [], []

    def fetch():
        results.append(download.fetch("mnist", root, remote, mirror=server.url + "/m", log=lines.append))

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert results == [root / rel] * 2
    assert (root / rel).read_bytes() == files[rel] and not (root / f"{rel}.part").exists()
    assert server.hits[f"m/{rel}"] == 1  # the second waited for the first, then found the file verified


def test_a_read_only_data_root_is_one_line(root, capsys, monkeypatch):
    import builtins
    import errno

    root.mkdir()
    real_open = builtins.open

    def read_only(path, mode="r", *a, **k):  # what a read-only mount answers to any write
        if str(path).startswith(str(root)) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(download, "open", read_only, raising=False)
    code = main(["datasets", "--download", "mnist", "--data-dir", str(root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"normlab datasets: error: cannot write to the data root '{root}' (Read-only file "
                                 f"system); pass --data-dir (or set NORMLAB_DATA) to a writable folder"]
    assert list(root.iterdir()) == []


def test_a_silent_mirror_ends_at_the_deadline_before_the_read_timeout(server, checksums, root, monkeypatch):
    files, _ = mnist_files("MNIST")
    server.publish("slow", files)
    goods = [f"good{i}" for i in range(3)]  # three: none of this depends on how fast the machine is
    for g in goods:
        server.publish(g, files)
    checksums(files)
    rel = "MNIST/raw/train-images-idx3-ubyte.gz"
    server.modes[f"slow/{rel}"] = ("stall", 100)
    monkeypatch.setenv("NORMLAB_DATA_TIMEOUT", "600")  # the per-read timeout alone would wait 10 minutes
    monkeypatch.setenv("NORMLAB_DATA_DEADLINE", "3")
    lines = []
    mirror = " ".join([f"{server.url}/slow"] + [f"{server.url}/{g}" for g in goods])
    _in_thread(lambda: sources.load_dataset("mnist", data_dir=str(root), mirror=mirror, log=lines.append), limit=120)
    note = next(line for line in lines if line.startswith(f"normlab: {server.url}/slow/{rel}: "))
    assert "still unfinished after the NORMLAB_DATA_DEADLINE of 3 s (100 B received)" in note
    assert (root / rel).read_bytes() == files[rel]
