"""Input preprocessing fitted on the training split only, and saved so `predict` applies the same.

Every transform maps a uint8 batch (N, C, H, W) to float model input. Pixels are first scaled to
0..1 (as ToTensor does); then, per `--preprocess`:

  channel         per-channel mean/std over the training images (the default; tutorials' Normalize)
  scale           nothing more: pixels in 0..1, as ToTensor alone gives (the d2l book's loaders)
  center          per-feature (pixel) mean subtracted, no scaling: seed 002's first step, 中心化
                  (sklearn StandardScaler(with_std=False))
  standardize     per-feature (pixel) mean/std            (sklearn StandardScaler)
  minmax          per-feature (x - min) / (max - min)     (sklearn MinMaxScaler)
  robust          per-feature (x - median) / IQR          (sklearn RobustScaler)
  maxabs          per-feature x / max|x|                  (sklearn MaxAbsScaler)
  pca:D           projection on the top D principal components -> shape (D, 1, 1)  (sklearn PCA)
  pca-whiten:D    the same, each component scaled to unit variance                  (PCA(whiten=True))
  zca[:EPS]       ZCA whitening: rotate to PCA axes, scale to unit variance, rotate back; same shape
  zca-patch:K[:EPS]  ZCA fitted on K x K patches, applied as a convolution (each output pixel is
                  its patch's whitened centre pixel); same shape (EPS default 0.001)

Features whose spread is 0 on the training split are left unscaled (scale 1), as sklearn does.
Fitted arrays are stored in preprocess.json as base64 float32, so a run directory is self-contained.
"""

from __future__ import annotations

import base64
from typing import Any, Optional

import numpy as np
import torch

from ..errors import ConfigError

KINDS = ("channel", "scale", "center", "standardize", "minmax", "robust", "maxabs", "pca", "pca-whiten", "zca", "zca-patch")
PATCH_SAMPLES = 100_000  # patches drawn to fit zca-patch


def parse(spec: Optional[str]) -> tuple[str, Any]:  # the argument's type depends on the kind
    spec = (spec or "channel").strip().lower()
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        from ..errors import unknown_name

        raise unknown_name("preprocess", kind, KINDS)
    if kind in ("pca", "pca-whiten"):
        try:
            dim = int(arg)
        except ValueError:
            raise ConfigError(f"preprocess: {kind} needs the number of components, e.g. {kind}:50, "
                              f"got {spec!r}") from None
        if dim < 1:
            raise ConfigError(f"preprocess: {kind}:{dim} needs at least 1 component")
        return kind, dim
    if kind == "zca-patch":
        size, _, eps_text = arg.partition(":")
        try:
            k, eps = int(size), float(eps_text) if eps_text else 1e-3
        except ValueError:
            raise ConfigError(f"preprocess: zca-patch needs an odd patch size and an optional epsilon, "
                              f"e.g. zca-patch:5 or zca-patch:5:0.001, got {spec!r}") from None
        if k < 1 or k % 2 == 0:
            raise ConfigError(f"preprocess: zca-patch:{k} needs an odd patch size >= 1")
        if not eps > 0:
            raise ConfigError(f"preprocess: zca-patch epsilon must be > 0, got {eps}")
        return kind, [k, eps]
    if kind == "zca":
        try:
            zca_eps = float(arg) if arg else 1e-2
        except ValueError:
            raise ConfigError(f"preprocess: zca takes an optional epsilon, e.g. zca:0.01, got {spec!r}") from None
        if not zca_eps > 0:
            raise ConfigError(f"preprocess: zca epsilon must be > 0, got {zca_eps}")
        return kind, zca_eps
    if arg:
        raise ConfigError(f"preprocess: {kind} takes no argument, got {spec!r}")
    return kind, None


def _enc(a) -> str:
    return base64.b64encode(np.ascontiguousarray(np.asarray(a, dtype=np.float32)).tobytes()).decode("ascii")


def _dec(s: str, shape) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.float32).reshape(shape).copy())


def _nonzero(scale: np.ndarray) -> np.ndarray:
    # Rounding leaves a constant feature's spread at ~1e-17, not 0: the same cut-off as sklearn.
    return np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)


def _features(x_uint8: torch.Tensor) -> np.ndarray:
    return x_uint8.reshape(len(x_uint8), -1).cpu().numpy().astype(np.float64) / 255.0


class Preprocess:
    """A fitted transform: out = ((x / 255) - center) / scale, then optionally @ matrix."""

    def __init__(self, kind: str, arg, image_shape, center, scale, matrix=None):
        self.kind, self.arg = kind, arg
        self.image_shape = tuple(int(s) for s in image_shape)
        self.center = torch.as_tensor(center, dtype=torch.float32).reshape(-1)
        self.scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        self.matrix = None if matrix is None else torch.as_tensor(matrix, dtype=torch.float32).contiguous()
        self._cache: dict = {}

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.kind in ("pca", "pca-whiten"):
            assert self.matrix is not None  # fitted with the components
            return (self.matrix.shape[1], 1, 1)
        if self.kind == "zca-patch":
            return self.image_shape
        return self.image_shape

    def _consts(self, device, dtype):
        key = (device, dtype)
        if key not in self._cache:
            inv = (1.0 / (255.0 * self.scale)).to(device, dtype)
            shift = (self.center / self.scale).to(device, dtype)
            m = None if self.matrix is None else self.matrix.to(device, dtype)
            self._cache[key] = (inv, shift, m)
        return self._cache[key]

    def __call__(self, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        inv, shift, m = self._consts(x.device, dtype)
        n = x.shape[0]
        flat = torch.addcmul(-shift, x.reshape(n, -1).to(dtype), inv)
        if self.kind == "zca-patch":
            img = flat.reshape((n,) + self.image_shape)
            return torch.nn.functional.conv2d(img, m, padding=m.shape[-1] // 2)
        if m is not None:
            flat = flat @ m
        return flat.reshape((n,) + self.output_shape)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "arg": self.arg, "image_shape": list(self.image_shape),
             "features": int(self.center.numel()), "center": _enc(self.center), "scale": _enc(self.scale)}
        if self.matrix is not None:
            d["matrix"] = _enc(self.matrix)
            d["matrix_shape"] = list(self.matrix.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        f = d["features"]
        matrix = _dec(d["matrix"], d["matrix_shape"]) if "matrix" in d else None
        return cls(d["kind"], d["arg"], d["image_shape"], _dec(d["center"], (f,)), _dec(d["scale"], (f,)), matrix)


def fit(spec: Optional[str], train_x: torch.Tensor) -> Preprocess:
    """Fit the transform `spec` names on uint8 training images (N, C, H, W)."""
    kind, arg = parse(spec)
    shape = tuple(train_x.shape[1:])
    if kind == "channel":
        from .loader import channel_stats

        mean, std = channel_stats(train_x)
        hw = shape[1] * shape[2]
        return Preprocess(kind, arg, shape, np.repeat(mean, hw), np.repeat(std, hw))
    if kind == "scale":
        f = int(np.prod(shape))
        return Preprocess(kind, arg, shape, np.zeros(f), np.ones(f))
    if kind == "zca-patch":
        return _fit_zca_patch(train_x, *arg)
    x = _features(train_x)
    n, f = x.shape
    if kind == "center":
        return Preprocess(kind, arg, shape, x.mean(0), np.ones(f))
    if kind == "standardize":
        return Preprocess(kind, arg, shape, x.mean(0), _nonzero(x.std(0)))
    if kind == "minmax":
        lo, hi = x.min(0), x.max(0)
        return Preprocess(kind, arg, shape, lo, _nonzero(hi - lo))
    if kind == "robust":
        q1, med, q3 = np.percentile(x, [25, 50, 75], axis=0)
        return Preprocess(kind, arg, shape, med, _nonzero(q3 - q1))
    if kind == "maxabs":
        return Preprocess(kind, arg, shape, np.zeros(f), _nonzero(np.abs(x).max(0)))
    # PCA family: eigen-decomposition of the training covariance (n - 1 denominator, as sklearn).
    if n < 2:
        raise ConfigError(f"preprocess {spec!r} needs at least 2 training images, got {n}")
    mean = x.mean(0)
    xc = x - mean
    cov = (xc.T @ xc) / (n - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    if kind in ("pca", "pca-whiten"):
        if arg > min(n, f):
            raise ConfigError(f"preprocess {kind}:{arg}: at most min(train images, features) = "
                              f"{min(n, f)} components")
        comps = evecs[:, :arg]
        if kind == "pca-whiten":
            comps = comps / np.sqrt(np.where(evals[:arg] > 0, evals[:arg], 1.0))
        return Preprocess(kind, arg, shape, mean, np.ones(f), comps)
    w = (evecs / np.sqrt(evals + arg)) @ evecs.T  # zca
    return Preprocess(kind, arg, shape, mean, np.ones(f), w)


def _fit_zca_patch(train_x: torch.Tensor, k: int, eps: float = 1e-3, seed: int = 0) -> Preprocess:
    """ZCA on K x K patches (C*K*K features) drawn from the training images with a fixed seed.
    The whitening matrix's rows for the centre pixel of each channel become a (C, C, K, K)
    convolution, so every pixel is replaced by the whitened centre of the patch around it."""
    c, h, w = train_x.shape[1:]
    if k > min(h, w):
        raise ConfigError(f"preprocess zca-patch:{k}: the patch is larger than the {h}x{w} images")
    g = torch.Generator().manual_seed(seed)
    n = len(train_x)
    per_pos = (h - k + 1) * (w - k + 1)
    count = min(PATCH_SAMPLES, n * per_pos)
    img = torch.randint(0, n, (count,), generator=g)
    top = torch.randint(0, h - k + 1, (count,), generator=g)
    left = torch.randint(0, w - k + 1, (count,), generator=g)
    rows = (top.view(-1, 1) + torch.arange(k)).view(count, 1, k, 1)
    cols = (left.view(-1, 1) + torch.arange(k)).view(count, 1, 1, k)
    patches = train_x[img.view(-1, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]
    p = patches.reshape(count, -1).numpy().astype(np.float64) / 255.0
    if count < 2:
        raise ConfigError("preprocess zca-patch needs at least 2 patches")
    channel_mean = p.reshape(count, c, k * k).mean((0, 2))
    pc = p - np.repeat(channel_mean, k * k)
    cov = (pc.T @ pc) / (count - 1)
    evals, evecs = np.linalg.eigh(cov)
    wmat = (evecs / np.sqrt(np.clip(evals, 0, None) + eps)) @ evecs.T
    centre = [ch * k * k + (k // 2) * k + k // 2 for ch in range(c)]
    filters = wmat[centre].reshape(c, c, k, k)
    center = np.repeat(channel_mean, h * w)
    return Preprocess("zca-patch", [k, eps], (c, h, w), center, np.ones(c * h * w), filters)
