"""Like-for-like arms (issue 26): for every claim of `normlab claims` (quick and full) and every
experiment file, each arm's config is resolved and its model built, and the arms may differ only in
the factor the claim or experiment names: not in another option, the data, the schedule or the
seeds, and not in a layer outside the factor (e.g. IN with no norm after the Linear layers where
GN and LN have one)."""

import itertools
from pathlib import Path

import pytest
import torch

from normlab.experiments.claims import CLAIMS
from normlab.experiments.claims.runner import plan
from normlab.experiments.spec import load_experiment
from normlab.grid import cell_config, expand
from normlab.config import make_config
from normlab.models import create_model
from normlab.models.from_config import MODEL_OPTIONS
from normlab.train.resolve import resolve_config
from normlab.train.resolve import resolve

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))
SHAPES = {"digits": (1, 8, 8), "mnist5k": (1, 28, 28), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
          "synthetic": (1, 28, 28), "cifar10": (3, 32, 32)}
# How a run is executed, not what it computes (or the run folder and seed, compared apart)
RUNTIME = {"out", "seed", "threads", "progress", "curves", "device", "channels_last", "compile", "tensorboard", "log_every",
           # when the held-out split is evaluated: training is the same to the bit (tests/test_val_every.py),
           # and no claim reads validation metrics (ln-recurrent's arms evaluate it after their last epoch)
           "val_every"}
ACTS = set(torch.nn.modules.activation.__all__)
NORM_TYPES = ("BatchNorm", "GroupNorm", "LayerNorm", "InstanceNorm", "SyncBatchNorm",
              # the layers after the tutorials (nn/newer_norms.py, torch's RMSNorm and LocalResponseNorm)
              "RMSNorm", "FilterResponseNorm", "EvoNorm", "BatchRenorm", "GhostBatchNorm", "NoisyBatchNorm",
              "LocalResponseNorm")
# Norm kinds that put no norm layer where a norm sits (the identity there), and those that change
# the convolutions' or every layer's weights instead: their arms differ there by the norm factor.
NO_LAYER = ("none", "ws", "wn")


def resolved(cfg: dict):
    return resolve(make_config(cfg))  # no option an arm sets goes unused


def layers(cfg) -> list[tuple[str, str]]:
    """Every module of the arm's model as (name, kind): a norm layer's kind is "norm"."""
    kw = {k: getattr(cfg, k) for k in MODEL_OPTIONS if getattr(cfg, k) is not None}
    c, h, w = SHAPES[cfg.dataset]
    m = create_model(cfg.model, in_channels=c, input_size=(h, w), norm=cfg.norm, act=cfg.act, dropout=cfg.dropout,
                     norm_impl=cfg.norm_impl, bn_eps=cfg.bn_eps, bn_momentum=cfg.bn_momentum,
                     dropout_mode=cfg.dropout_mode, **kw)
    out = []
    for name, mod in m.named_modules():
        if ".parametrizations" in name or name.endswith("parametrizations"):
            continue  # weight norm's parametrization modules: the layer they belong to says "+wn"
        kind = type(mod).__name__
        if kind.startswith("Parametrized"):
            kind = kind.removeprefix("Parametrized") + "+wn"
        out.append((name, "norm" if kind.startswith(NORM_TYPES) or kind == "LayerNormCHW" else kind))
    return out


def weights_moved(ka: str, kb: str, a, b) -> bool:
    """A layer whose weights the norm factor reparametrizes: Conv2d against StdConv2d (ws, gn+ws)
    or a layer against its weight-normalized self (wn), in the arm that asks for it."""
    for (k1, n1), (k2, n2) in (((ka, a.norm), (kb, b.norm)), ((kb, b.norm), (ka, a.norm))):
        if k1 == "Conv2d" and k2 == "StdConv2d" and n2.endswith("ws"):
            return True
        if k2 == k1 + "+wn" and n2 == "wn":
            return True
    return False


def same_but(a, b, varies: set, where: str) -> None:
    """Configs a and b (resolved) differ only in `varies`; their models differ only in layers the
    factor decides: with the norm as factor, a norm layer may face a norm of another kind, or the
    identity in an arm without norm; with the model as factor, the models may differ."""
    diff = {k for k in a.to_dict() if k not in RUNTIME and a.to_dict()[k] != b.to_dict()[k]}
    assert diff <= varies, f"{where}: the arms also differ in {sorted(diff - varies)}"
    if varies & {"model", "block_order", "shortcut_op"}:
        return
    la, lb = layers(a), layers(b)
    if varies & {"dropout", "hidden_dropout"}:  # dropout layers come and go: the rest, in order, is the same
        la, lb = ([(None, k) for _, k in x if k not in ("Dropout", "Identity")] for x in (la, lb))
        assert [k for _, k in la] == [k for _, k in lb], f"{where}: different layers besides dropout"
    assert [n for n, _ in la] == [n for n, _ in lb], f"{where}: different layers"
    for (name, ka), (_, kb) in zip(la, lb):
        if ka == kb:
            continue
        if "act" in varies and ka in ACTS and kb in ACTS:
            continue
        # only the norm factor moves layers, and only where a norm sits: norm vs none is Identity
        # in the arm whose norm is none; two arms with real norms must have them in the same places
        if "norm" in varies and weights_moved(ka, kb, a, b):
            continue
        none_a, none_b = a.norm in NO_LAYER, b.norm in NO_LAYER
        ok = "norm" in varies and {ka, kb} <= {"norm", "Identity"} and (
            (ka == "Identity" and none_a) or (kb == "Identity" and none_b) or ka == kb == "norm")
        assert ok, f"{where}: layer {name!r} is {ka} in one arm and {kb} in the other ({a.norm} vs {b.norm})"


@pytest.mark.parametrize("quick", [True, False])
def test_every_claims_arms_differ_only_in_its_factor(quick):
    names = [n for n, c in CLAIMS.items() if c.arms is not None]
    exps, arms = plan(names, quick)
    assert set(arms) == set(names)
    for name, by_label in arms.items():
        varies = set(CLAIMS[name].varies)
        assert varies, f"claim {name} names no factor"
        cfgs, seeds = {}, {}
        for label, (ename, cell) in by_label.items():
            exp = exps[ename][0]
            cfgs[label] = resolved(cell_config(exp, cell, exp.seeds[0]))
            seeds[label] = exp.seeds
        assert len({tuple(s) for s in seeds.values()}) == 1, f"claim {name}: arms on different seeds {seeds}"
        for x, y in itertools.combinations(cfgs, 2):
            same_but(cfgs[x], cfgs[y], varies, f"claim {name} ({'quick' if quick else 'full'}): {x} vs {y}")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_files_cells_differ_only_in_their_factors(path):
    exp = load_experiment(path)
    cells = expand(exp)
    cfgs = {c.id: resolved(cell_config(exp, c, exp.seeds[0])) for c in cells}
    # each pair of cells one factor apart differs in that factor alone
    pairs = 0
    for a, b in itertools.combinations(cells, 2):
        differ = [k for (k, va), (_, vb) in zip(a.factors.items(), b.factors.items()) if va != vb]
        if len(differ) == 1:
            same_but(cfgs[a.id], cfgs[b.id], set(differ), f"{path.name}: {a.id} vs {b.id}")
            pairs += 1
    assert pairs >= len(cells) - 1


def test_the_check_finds_the_old_gn_beats_ln_in_arms():
    # GN with a norm after lenet-bn's Linear layers against IN, which has none there: refused
    # (IN's old arm, conv-only without saying so, is now refused where it is built; the same
    # arm with fc_norm off is told apart by its config)
    from normlab.errors import ConfigError

    gn = resolved({"model": "lenet-bn", "dataset": "mnist5k", "norm": "gn:2"})
    with pytest.raises(ConfigError, match=r"^fc_norm: norm in normalizes over spatial positions"):
        layers(resolved({"model": "lenet-bn", "dataset": "mnist5k", "norm": "in"}))
    inst = resolved({"model": "lenet-bn", "dataset": "mnist5k", "norm": "in-affine", "fc_norm": False})
    with pytest.raises(AssertionError, match=r"also differ in \['fc_norm'\]"):
        same_but(gn, inst, {"norm"}, "old")
    # and a layer outside the factor: a norm after the Linear layers in one arm only
    with pytest.raises(AssertionError, match=r"layer 'fc.1' is norm in one arm and Identity in the other"):
        same_but(gn, resolved({"model": "lenet-bn", "dataset": "mnist5k", "norm": "ln", "fc_norm": False}),
                 {"norm", "fc_norm"}, "old")
    # and an option outside the factor
    with pytest.raises(AssertionError, match=r"also differ in \['lr'\]"):
        same_but(gn, resolved({"model": "lenet-bn", "dataset": "mnist5k", "norm": "ln", "lr": 0.1}), {"norm"}, "x")
    conv_gn = resolved({"model": "lenet-bn", "dataset": "mnist5k", "norm": "gn:2", "fc_norm": False})
    conv_in = resolved({"model": "lenet-bn", "dataset": "mnist5k", "norm": "in", "fc_norm": False})
    same_but(conv_gn, conv_in, {"norm"}, "new")  # conv-only for both: like for like
