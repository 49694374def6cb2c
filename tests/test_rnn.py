"""The row-by-row recurrent models (issue 17 item 4): with no norm they are torch's GRU/LSTM
cells exactly; with LN, BN or GN they normalize as Ba et al. (2016) / Cooijmans et al. (2016)."""

import pytest
import torch
from torch import nn

from normlab import cli
from normlab.models import create_model


@pytest.mark.parametrize("name,ref", [("gru-rows", nn.GRUCell), ("lstm-rows", nn.LSTMCell)])
def test_no_norm_equals_torch_cell(name, ref):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=1, input_size=(7, 5), width=6).eval()
    cell = ref(5, 6)
    cell.load_state_dict({k: v for k, v in model.cells[0].state_dict().items() if not k.startswith("norm")})
    x = torch.randn(3, 1, 7, 5)
    h = torch.zeros(3, 6)
    c = torch.zeros(3, 6)
    for t in range(7):
        if name == "gru-rows":
            h = cell(x[:, 0, t], h)
        else:
            h, c = cell(x[:, 0, t], (h, c))
    assert torch.allclose(model(x), model.classifier(h), atol=1e-6)


def test_layer_norm_normalizes_each_example_alone_and_bn_needs_a_batch():
    torch.manual_seed(0)
    ln = create_model("lstm-rows", norm="ln", width=8)
    assert sum(isinstance(m, nn.LayerNorm) for m in ln.modules()) == 3  # input, recurrent, cell state
    x = torch.randn(4, 1, 28, 28)
    ln.train()
    # Train-mode LN output of one example does not depend on the others in the batch.
    assert torch.allclose(ln(x)[:1], ln(x[:1]), atol=1e-5)
    bn = create_model("gru-rows", norm="bn", width=8).train()
    assert isinstance(bn.cells[0].norm_ih[0], nn.BatchNorm1d)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn(x[:1])
    per_step = create_model("gru-rows", norm="bn", width=8, per_step=True)
    assert len(per_step.cells[0].norm_ih) == 28  # Cooijmans et al.: statistics per time step
    per_step(x).sum().backward()


def test_trains_from_the_command_line(tmp_path):
    out = tmp_path / "rnn"
    assert cli.main(["train", "--dataset", "synthetic", "--model", "gru-rows", "--norm", "ln", "--width", "16",
                     "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    assert (out / "weights.safetensors").is_file()
