"""Recurrent nets that read an image row by row: the test bed for "LayerNorm suits recurrent nets".

Source: seed 004 (LN for RNNs, where BN's batch statistics do not fit); the normalized cells
follow Ba, Kiros & Hinton (2016), "Layer Normalization", Sec. 3.1 and eq. (20-22): the input
and the recurrent pre-activations are normalized separately, then biased, and the LSTM also
normalizes its cell state before the output tanh. Each image (N, C, H, W) is a sequence of H
steps of C*W features (28 steps of 28 pixels for MNIST); the last hidden state goes to a
linear classifier.

With norm "none" a cell computes exactly torch.nn.GRUCell / LSTMCell (same gate order, same
parameter names weight_ih, weight_hh, bias_ih, bias_hh), which the tests check.

Batch norm in a recurrent net: one BN layer shared by all time steps mixes the statistics of
early and late steps. Cooijmans et al. (2016), "Recurrent Batch Normalization", keep separate
statistics per time step: `per_step=True` gives each step its own norm layers (for BN, its own
running statistics; a model then only takes sequences up to its training length). Either way
BN needs more than one example per batch in training; LN and GN normalize each example alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn as tnn

from ..nn.factory import feature_norm
from .registry import register


class NormGRUCell(tnn.Module):
    """h' = (1 - z) * n + z * h with r, z = sigmoid(Nx(W_i x) + Nh(W_h h) + b), the new gate
    n = tanh(Nx(W_in x) + b_in + r * (Nh(W_hn h) + b_hn)); N* are the norm layers (identity for none)."""

    gates = 3

    def __init__(self, n_in, hidden, norm_layer, per_step: int = 0):
        super().__init__()
        self.hidden = hidden
        k = self.gates * hidden
        bound = 1 / math.sqrt(hidden)  # torch's RNN-cell initialization
        self.weight_ih = tnn.Parameter(torch.empty(k, n_in).uniform_(-bound, bound))
        self.weight_hh = tnn.Parameter(torch.empty(k, hidden).uniform_(-bound, bound))
        self.bias_ih = tnn.Parameter(torch.empty(k).uniform_(-bound, bound))
        self.bias_hh = tnn.Parameter(torch.empty(k).uniform_(-bound, bound))
        steps = max(per_step, 1)
        self.norm_ih = tnn.ModuleList(feature_norm(norm_layer, k) for _ in range(steps))
        self.norm_hh = tnn.ModuleList(feature_norm(norm_layer, k) for _ in range(steps))

    def _pre(self, x, h, t):
        step = min(t, len(self.norm_ih) - 1)
        gi = self.norm_ih[step](x @ self.weight_ih.t()) + self.bias_ih
        gh = self.norm_hh[step](h @ self.weight_hh.t()) + self.bias_hh
        return gi, gh, step

    def forward(self, x, state, t: int = 0):
        h = state
        gi, gh, _ = self._pre(x, h, t)
        i_r, i_z, i_n = gi.chunk(3, -1)  # the last dim: a seed-stacked cell's (S, B, 3H) too
        h_r, h_z, h_n = gh.chunk(3, -1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h

    def init_state(self, x):
        return x.new_zeros(x.shape[0], self.hidden)


class NormLSTMCell(NormGRUCell):
    """Gates i, f, g, o (torch's order) from Nx(W_i x) + Nh(W_h h) + b; c' = f * c + i * g;
    h' = o * tanh(Nc(c')) (Ba et al. eq. 22)."""

    gates = 4

    def __init__(self, n_in, hidden, norm_layer, per_step: int = 0):
        super().__init__(n_in, hidden, norm_layer, per_step)
        self.norm_c = tnn.ModuleList(feature_norm(norm_layer, hidden) for _ in range(len(self.norm_ih)))

    def forward(self, x, state, t: int = 0):
        h, c = state
        gi, gh, step = self._pre(x, h, t)
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.norm_c[step](c)), c

    def init_state(self, x):
        h = x.new_zeros(x.shape[0], self.hidden)
        return h, h.clone()


class RowRNN(tnn.Module):
    """Image rows as time steps -> `depth` stacked normalized GRU/LSTM cells -> (dropout) -> linear."""

    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, cell="gru", width=128, depth=1,
                 dropout=0.0, per_step=False):
        super().__init__()
        steps, cols = input_size
        cls = NormGRUCell if cell == "gru" else NormLSTMCell
        n_in = in_channels * cols
        self.cells = tnn.ModuleList()
        for _ in range(depth):
            self.cells.append(cls(n_in, width, norm_layer, steps if per_step else 0))
            n_in = width
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.classifier = tnn.Linear(width, num_classes)

    def forward(self, x):
        seq = x.permute(0, 2, 1, 3).flatten(2)  # (N, H, C*W): one row per step
        states = [c.init_state(seq) for c in self.cells]
        for t in range(seq.shape[1]):
            inp = seq[:, t]
            for k, cell in enumerate(self.cells):
                states[k] = cell(inp, states[k], t)
                inp = states[k][0] if isinstance(states[k], tuple) else states[k]
        return self.classifier(self.dropout(inp))


@register("gru-rows", "rnn", "GRU reading the image row by row (28 steps for MNIST), LN/BN/GN or no norm",
          default_norm="none", default_act="identity", takes_act=False, width=128, depth=1, per_step=False)
def gru_rows(**kw):
    return RowRNN(cell="gru", **kw)


@register("lstm-rows", "rnn", "LSTM reading the image row by row, LN/BN/GN or no norm (Ba et al. 2016)",
          default_norm="none", default_act="identity", takes_act=False, width=128, depth=1, per_step=False)
def lstm_rows(**kw):
    return RowRNN(cell="lstm", **kw)
