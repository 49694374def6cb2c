"""Batched augmentation: geometry against explicit windows, statistics, and seeding."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from normlab.data import augment
from normlab.data.loader import DeviceLoader, Normalize
from normlab.errors import ConfigError


def distinct_images(n, c=2, h=6, w=5):
    """uint8 images whose pixels are all different from each other and from the zero padding."""
    assert c * h * w < 255
    return torch.arange(1, c * h * w + 1, dtype=torch.uint8).view(1, c, h, w).expand(n, c, h, w).clone()


@settings(max_examples=30, deadline=None)
@given(pad=st.integers(1, 4), seed=st.integers(0, 2**31 - 1), h=st.integers(2, 7), w=st.integers(2, 7))
def test_crop_is_a_window_of_the_padded_image(pad, seed, h, w):
    x = distinct_images(16, 2, h, w)
    out = augment.random_crop(x, pad, torch.Generator().manual_seed(seed))
    padded = F.pad(x, (pad, pad, pad, pad))
    windows = [padded[0, :, i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    assert out.shape == x.shape and out.dtype == torch.uint8
    for o in out:
        assert any(torch.equal(o, win) for win in windows)


def test_crop_offsets_cover_all_positions_uniformly():
    x = distinct_images(9000, 1, 3, 3)
    out = augment.random_crop(x, 1, torch.Generator().manual_seed(0))
    padded = F.pad(x[:1], (1, 1, 1, 1))[0]
    keys = [padded[:, i:i + 3, j:j + 3] for i in range(3) for j in range(3)]
    counts = torch.tensor([sum(torch.equal(o, k) for o in out[:900]) for k in keys])
    assert counts.sum() == 900 and counts.min() > 60  # 9 offsets, about 100 each


def test_flip_is_a_flip_and_about_half():
    x = torch.randint(0, 256, (4000, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = augment.hflip(x, torch.Generator().manual_seed(2))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert abs(flipped.float().mean().item() - 0.5) < 0.03  # binomial sd 0.008
    # the flip is torchvision's horizontal flip
    from torchvision.transforms.v2 import functional as TF

    assert torch.equal(out[flipped][0], TF.horizontal_flip(x[flipped][0]))


def test_cutout_zeroes_one_square():
    x = torch.full((500, 1, 10, 10), 7, dtype=torch.uint8)
    out = augment.cutout(x, 4, torch.Generator().manual_seed(3))
    holes = out[:, 0] == 0
    assert set(out.unique().tolist()) <= {0, 7}
    for hole in holes:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        # a rectangle (the square clipped at the border), never larger than 4 x 4
        assert int(hole.sum()) == len(rows) * len(cols) and len(rows) <= 4 and len(cols) <= 4
    assert (holes.flatten(1).sum(1) == 16).float().mean() > 0.2  # centred inside: the full square


def test_translate_matches_an_explicit_shift():
    x = distinct_images(1, 1, 5, 5)
    out = augment.shift(x, torch.tensor([1]), torch.tensor([-2]), pad=2)
    expect = torch.zeros_like(x)
    expect[0, 0, :4, 2:] = x[0, 0, 1:, :3]
    assert torch.equal(out, expect)


def test_resize_close_to_torchvision():
    from torchvision.transforms.v2 import functional as TF

    x = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    ours = augment.resize(x, (12, 12)).int()
    ref = TF.resize(x, [12, 12], antialias=True).int()
    assert (ours - ref).abs().max() <= 1


def loader(seed, spec="crop:2,flip,cutout:3"):
    x = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    y = torch.arange(50)
    return DeviceLoader(x, y, 16, Normalize([0.5], [0.25]), shuffle=True,
                        generator=torch.Generator().manual_seed(seed), augment=augment.make_augment(spec))


def test_same_seed_same_batches_other_seed_other_batches():
    a = [b for b in loader(0)]
    b = [b for b in loader(0)]
    c = [b for b in loader(1)]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    # and the second epoch differs from the first
    ld = loader(0)
    e1, e2 = [b[0] for b in ld], [b[0] for b in ld]
    assert not torch.equal(e1[0], e2[0])


def test_spec_errors():
    with pytest.raises(ConfigError, match=r"^augment: cutout needs an integer, e.g. cutout:4, got cutout:x$"):
        augment.parse("cutout:x")
    with pytest.raises(ConfigError, match=r"^augment: flip takes no argument, got 'flip:2'$"):
        augment.parse("flip:2")
    with pytest.raises(ConfigError, match=r"^unknown augmentation 'rotation'\. Did you mean 'rotate'\?"):
        augment.parse("rotation:3")
    with pytest.raises(ConfigError, match=r"^augment: rotate:200 is out of range \(0 < D < 180 degrees\)$"):
        augment.parse("rotate:200")
    with pytest.raises(ConfigError, match=r"^augment: zoom needs a number, e.g. zoom:10, got zoom:big$"):
        augment.parse("zoom:big")
    assert augment.parse("crop:4, flip,resize:16x12") == [("crop", 4), ("flip", None), ("resize", (16, 12))]
    assert augment.make_augment("") is None


def test_rotate_scale_against_exact_geometry():
    import math
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    quarter = augment.rotate_scale(x, torch.tensor([math.pi / 2, -math.pi / 2]), torch.ones(2))
    # pixel centres of a square image land on pixel centres: bilinear is exact here
    assert torch.equal(quarter[0], torch.rot90(x[0], 1, (1, 2)))
    assert torch.equal(quarter[1], torch.rot90(x[1], -1, (1, 2)))
    assert torch.equal(augment.random_warp(x, 0.0, 0.0), x)
    # zoom 2 about the centre: output pixel (i, j) samples input (i/2 + 1.5, ...) on a 6x6 grid;
    # the centre 2x2 of a constant-per-quadrant image keeps its values
    q = torch.zeros(1, 1, 6, 6, dtype=torch.uint8)
    q[..., :3, :3], q[..., :3, 3:], q[..., 3:, :3], q[..., 3:, 3:] = 10, 20, 30, 40
    z = augment.rotate_scale(q, torch.zeros(1), torch.tensor([2.0]))
    assert z[0, 0, 0, 0] == 10 and z[0, 0, 0, 5] == 20 and z[0, 0, 5, 0] == 30 and z[0, 0, 5, 5] == 40


def test_rotate_and_zoom_are_drawn_in_range_and_fused():
    x = torch.zeros(64, 1, 9, 9, dtype=torch.uint8)
    x[:, :, 4, 4] = 255  # one bright centre pixel stays at the centre under rotation and zoom
    out = augment.make_augment("rotate:30,zoom:10")(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.all(out[:, 0, 4, 4] > 0)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    fused = augment.make_augment("rotate:30,zoom:10")(x, g1)
    assert torch.equal(fused, augment.random_warp(x, 30.0, 0.10, 0.0, g2))  # one resampling, same draws


def test_elastic_field_has_the_asked_rms_and_is_smooth():
    field = augment.elastic_field((16, 1, 28, 28), 1.5, torch.Generator().manual_seed(0))
    assert field.shape == (16, 28, 28, 2)
    pixels = torch.stack([field[..., 0] * 14, field[..., 1] * 14], -1)  # [-1, 1] units -> pixels
    rms = pixels.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.full((16,), 1.5), rtol=1e-4)
    # smooth: neighbouring displacements differ far less than the displacements themselves
    # (for independent per-pixel noise the ratio would be sqrt(2))
    step = (pixels[:, 1:] - pixels[:, :-1]).pow(2).mean().sqrt()
    assert step < 0.25 * 1.5


def test_elastic_moves_pixels_by_the_field_and_fuses_with_rotate():
    x = torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8)
    ones = torch.ones(4)
    # a constant field of +1 pixel in x: each output pixel samples its right neighbour in the input
    shift = torch.zeros(4, 12, 12, 2)
    shift[..., 0] = 2 / 12
    moved = augment.rotate_scale(x, torch.zeros(4), ones, shift)
    assert torch.equal(moved[..., :, :-1], x[..., :, 1:]) and torch.all(moved[..., :, -1] == 0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    fused = augment.make_augment("rotate:10,elastic:2")(x, g1)
    assert torch.equal(fused, augment.random_warp(x, 10.0, 0.0, 2.0, g2))
    with pytest.raises(ConfigError, match=r"^augment: elastic:12 is out of range \(0 < A < 10 pixels\)$"):
        augment.parse("elastic:12")
