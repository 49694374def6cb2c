"""The docs' warm `normlab` (scripts/warm_normlab.py) is the same program as a cold one: the same
output, exit status and files for a command that succeeds and one that fails, and a cold start
where the environment differs in what torch reads at import."""

import os
import subprocess
import sys


def both(server, args, cwd, env=None):
    env = dict(server.env, **(env or {}))
    warm = subprocess.run([*server.client, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    cold = subprocess.run([sys.executable, "-m", "normlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    return warm, cold


def test_a_failing_command_says_the_same_with_the_same_status(warm_server, tmp_path):
    warm, cold = both(warm_server, ["train", "--dataset", "digits", "--epochs", "0"], tmp_path)
    assert warm.returncode == cold.returncode == 2
    assert warm.stderr == cold.stderr == "normlab train: error: epochs: must be >= 1, got 0\n"
    assert warm.stdout == cold.stdout == ""


def test_a_training_run_writes_the_same_run(warm_server, tmp_path):
    args = ["train", "--dataset", "digits", "--model", "logistic", "--epochs", "1", "--no-progress", "--threads", "1"]
    env = warm_server.env
    warm = subprocess.run([*warm_server.client, *args, "--out", "w"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    cold = subprocess.run([sys.executable, "-m", "normlab", *args, "--out", "c"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert warm.returncode == cold.returncode == 0, warm.stderr + cold.stderr
    assert (tmp_path / "w" / "weights.safetensors").read_bytes() == (tmp_path / "c" / "weights.safetensors").read_bytes()
    assert warm.stdout.splitlines()[0] == cold.stdout.splitlines()[0].replace("run dir c", "run dir w")


def test_an_environment_torch_reads_at_import_gets_a_cold_start(warm_server):
    """The server imported torch under its own OMP_NUM_THREADS; a command with another must not
    inherit that torch: the server answers COLD and the client runs the command itself."""
    import json
    import socket
    import struct

    warm = warm_server.module
    sock, env = warm_server.sock, warm_server.env
    for changed, expect_cold in (({"OMP_NUM_THREADS": "2"}, True), ({"NORMLAB_X": "1"}, False)):
        request = json.dumps({"argv": ["--version"], "cwd": str(sock.parent), "env": dict(env, **changed)}).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn, open(os.devnull, "w") as null:
            conn.connect(str(sock))
            socket.send_fds(conn, [struct.pack("!I", len(request))], [0, null.fileno(), null.fileno()])
            conn.sendall(request)
            (code,) = struct.unpack("!i", warm._recv_exactly(conn, 4))
        assert (code == warm.COLD) == expect_cold and (expect_cold or code == 0)
