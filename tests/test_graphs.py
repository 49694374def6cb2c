"""`--cuda-graphs` refuses, in one line, what a CUDA graph cannot hold (the GPU behaviour itself is
checked in tests/test_cuda.py on a GPU)."""

import pytest
import torch

import normlab
from normlab.config import make_config
from normlab.errors import ConfigError
from normlab.train import graphs
from normlab.train.step import Step


def _step(optimizer="momentum"):
    model = torch.nn.Linear(4, 2)
    opt = (torch.optim.LBFGS(model.parameters()) if optimizer == "lbfgs"
           else torch.optim.SGD(model.parameters(), lr=0.1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return Step(model, opt, sched, make_config({}).section("regularization"))


CUDA = torch.device("cuda")


@pytest.mark.parametrize("kw,optimizer,message", [
    (dict(compiled=True, distributed=False), "momentum", "--cuda-graphs and --compile both take over the step; use one"),
    (dict(compiled=False, distributed=True), "momentum", "--cuda-graphs does not combine with torchrun yet"),
    (dict(compiled=False, distributed=False), "lbfgs", "--cuda-graphs: L-BFGS re-evaluates the loss in a closure"),
])
def test_combinations_a_graph_cannot_hold_are_refused(kw, optimizer, message):
    with pytest.raises(ConfigError) as e:
        graphs.check_supported(_step(optimizer), CUDA, **kw)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_cuda_graphs_on_cpu_is_one_line_before_anything_is_written(tmp_path, capsys):
    from normlab.cli import main

    assert main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--device", "cpu",
                 "--cuda-graphs", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("normlab train: error: --cuda-graphs needs a CUDA device, and this run is on cpu; "
                   "drop --cuda-graphs (or --no-cuda-graphs over a recipe)")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="--cuda-graphs needs a CUDA device"):
        normlab.train({"dataset": "digits", "model": "mlp", "epochs": 1, "device": "cpu", "cuda_graphs": True,
                       "out": str(tmp_path / "api")}, log=lambda *a: None)
