import os

# Tests are small; one thread keeps them deterministic and stops oversubscribing 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def quiet():
    """A log function that collects lines instead of printing."""
    lines = []
    f = lines.append
    f.lines = lines
    return f


# ---------------------------------------------------------------- no network but the loopback
# Datasets download on demand, so a test that forgot a mirror would reach the internet. Every
# test process and its subprocesses get: a private data root, no user mirror or offline setting,
# and HTTP(S) proxies pointing at a closed loopback port (urllib honours them, so a publisher's
# URL fails at once with "connection refused"). In this process, sockets refuse any host but the
# loopback as well.
import socket  # noqa: E402
import tempfile  # noqa: E402

for _var in ("NORMLAB_DATA_MIRROR", "NORMLAB_OFFLINE", "NORMLAB_DATA_CHECKSUMS", "NORMLAB_DATA_TIMEOUT",
             "NORMLAB_DATA_DEADLINE"):
    os.environ.pop(_var, None)
os.environ["NORMLAB_DATA"] = tempfile.mkdtemp(prefix="normlab-test-data-")


def _closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DEAD_PROXY = f"http://127.0.0.1:{_closed_loopback_port()}"
for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ftp_proxy", "all_proxy", "ALL_PROXY"):
    os.environ[_var] = _DEAD_PROXY
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"

LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def check(host):
        if isinstance(host, str) and host not in LOOPBACK and not host.startswith("127."):
            raise OSError(f"test guard: no network in tests (tried to reach {host!r})")

    def connect(self, address):
        if isinstance(address, tuple):
            check(address[0])
        return real_connect(self, address)

    def getaddrinfo(host, *a, **k):
        check(host)
        return real_getaddrinfo(host, *a, **k)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield


# ---------------------------------------------------------------- the docs' warm normlab
WARM_NORMLAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                            "warm_normlab.py")


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory):
    """A scripts/warm_normlab.py server for the module's tests: `.client` (the command that runs
    `normlab ARGS` through it: append ARGS), `.sock` (its socket), `.env` (the environment it was
    started with, which its commands run warm under), `.module` (the script)."""
    import importlib.util
    import sys
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("warm_normlab", WARM_NORMLAB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sock = tmp_path_factory.mktemp("warm") / "s.sock"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    server = module.start(sock, env, wait=120)
    assert sock.exists(), "the warm server did not start"
    yield SimpleNamespace(client=[sys.executable, WARM_NORMLAB, "client", str(sock)], sock=sock, env=env,
                          module=module)
    module.stop(server)
