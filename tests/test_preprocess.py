"""Preprocessing against scikit-learn's scalers and PCA, and its round trip through JSON."""

import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from normlab.config import make_config
from normlab.data import pipeline, preprocess
from normlab.errors import ConfigError


def images(n=300, seed=0, shape=(2, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n,) + shape, generator=g, dtype=torch.uint8)
    x[:, 0, 0, 0] = 9  # a constant feature: scale must stay 1, as in sklearn
    x[:, 1] = (x[:, 1].int() // 2 + x[:, 0].int() // 3).to(torch.uint8)  # correlated channels for PCA
    return x


def flat(x):
    return x.reshape(len(x), -1).numpy().astype(np.float64) / 255.0


@pytest.mark.parametrize("spec,ref", [("standardize", StandardScaler), ("minmax", MinMaxScaler),
                                      ("robust", RobustScaler), ("maxabs", MaxAbsScaler),
                                      ("center", lambda: StandardScaler(with_std=False))])
def test_scalers_match_sklearn(spec, ref):
    train, test = images(), images(seed=1)
    t = preprocess.fit(spec, train)
    expect = ref().fit(flat(train)).transform(flat(test))
    got = t(test).reshape(len(test), -1).double().numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4)


def test_pca_matches_sklearn_up_to_sign():
    train, test = images(), images(seed=1)
    for spec, whiten in (("pca:5", False), ("pca-whiten:5", True)):
        t = preprocess.fit(spec, train)
        assert t.output_shape == (5, 1, 1)
        got = t(test).reshape(len(test), -1).double().numpy()
        expect = PCA(5, whiten=whiten, svd_solver="full").fit(flat(train)).transform(flat(test))
        signs = np.sign((got * expect).sum(0))
        np.testing.assert_allclose(got * signs, expect, rtol=1e-3, atol=1e-3)


def test_zca_whitens_and_stays_in_pixel_space():
    train = images(n=2000)
    t = preprocess.fit("zca:1e-6", train)
    z = t(train).reshape(len(train), -1).double()
    cov = np.cov(z.numpy(), rowvar=False)
    var = flat(train).var(0)
    live = var > 1e-12
    np.testing.assert_allclose(cov[np.ix_(live, live)], np.eye(live.sum()), atol=2e-2)
    m = t.matrix.double().numpy()
    np.testing.assert_allclose(m, m.T, atol=1e-5)  # ZCA's matrix is symmetric (PCA's is not)
    assert t(train).shape == train.shape


def test_channel_is_the_default_per_channel_normalize():
    x = images()
    t = preprocess.fit(None, x)
    f = x.double() / 255
    expect = (f - f.mean((0, 2, 3), keepdim=True)) / f.std((0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(t(x).double(), expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", ["channel", "robust", "pca-whiten:3", "zca"])
def test_json_round_trip_is_exact(spec):
    x = images()
    t = preprocess.fit(spec, x)
    back = preprocess.Preprocess.from_dict(json.loads(json.dumps(t.to_dict())))
    assert torch.equal(back(x), t(x))


def test_fitted_on_training_split_only():
    cfg = make_config({"dataset": "digits", "preprocess": "standardize", "val_split": 0.2})
    data, pre = pipeline.load(cfg)
    t = pre.input_transform()
    np.testing.assert_allclose(t.center.numpy(), flat(data.train_x).mean(0), atol=1e-6)
    assert not np.allclose(t.center.numpy(), flat(torch.cat([data.train_x, data.val[0]])).mean(0), atol=1e-6)
    assert pre.model_input_shape == (1, 8, 8)


def test_spec_errors():
    with pytest.raises(ConfigError, match=r"^preprocess: pca needs the number of components, e.g. pca:50, got 'pca'$"):
        preprocess.parse("pca")
    with pytest.raises(ConfigError, match=r"^unknown preprocess 'whiten'\."):
        preprocess.parse("whiten")
    with pytest.raises(ConfigError, match=r"^preprocess pca:100: at most min\(train images, features\) = 32 components$"):
        preprocess.fit("pca:100", images())


def smooth_images(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, 16, 16, generator=g)
    blur = torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1, count_include_pad=False)
    return (blur * 255).round().to(torch.uint8)


def test_zca_patch_is_the_patch_whitening_applied_as_a_convolution():
    x = smooth_images()
    t = preprocess.fit("zca-patch:3:1e-4", x)
    out = t(x)
    assert out.shape == x.shape
    # an interior pixel is W[centre] @ (its 3x3 patch - mean), by hand
    f = t.matrix.double().numpy().reshape(9)
    patch = x[5, 0, 6:9, 3:6].double().numpy().reshape(9) / 255 - t.center[0].item()
    assert abs(out[5, 0, 7, 4].item() - float(f @ patch)) < 1e-4

    def neighbour_corr(z):
        a, b = z[:, 0, 2:-2, 2:-3].reshape(-1), z[:, 0, 2:-2, 3:-2].reshape(-1)
        return float(np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1])

    assert neighbour_corr(x.double()) > 0.5 and abs(neighbour_corr(out)) < 0.1  # decorrelated
    back = preprocess.Preprocess.from_dict(json.loads(json.dumps(t.to_dict())))
    assert torch.equal(back(x), out)
    with pytest.raises(ConfigError, match=r"^preprocess: zca-patch:4 needs an odd patch size >= 1$"):
        preprocess.parse("zca-patch:4")
