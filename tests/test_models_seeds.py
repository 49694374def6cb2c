"""Issue 17 items 12-14: seed 003's models as written, ResNet v2's block orderings, AlexNet and
VGG (torchvision state dicts load into ours and give the same outputs)."""

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from normlab.errors import ConfigError
from normlab.models import create_model
from normlab.nn.blocks import BLOCK_ORDERS, BasicBlock, OrderedBasicBlock, PreActBlock


def count(m):
    return sum(p.numel() for p in m.parameters())


# ---- seed 003's code, verbatim (the reference)
class Inception(nn.Module):
    def __init__(self, in_channels):
        super(Inception, self).__init__()
        self.pool_conv1x1 = nn.Conv2d(in_channels, 24, kernel_size=1)
        self.conv1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.conv3x3_16 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.conv3x3_24 = nn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.conv5x5 = nn.Conv2d(16, 24, kernel_size=5, padding=2)

    def forward(self, x):
        out1 = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        out1 = self.pool_conv1x1(out1)
        out2 = self.conv1x1(x)
        out3 = self.conv1x1(x)
        out3 = self.conv5x5(out3)
        out4 = self.conv1x1(x)
        out4 = self.conv3x3_16(out4)
        out4 = self.conv3x3_24(out4)
        outputs = (out1, out2, out3, out4)
        return torch.cat(outputs, dim=1)


class GoogleNet(nn.Module):
    def __init__(self):
        super(GoogleNet, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.incep1 = Inception(in_channels=10)
        self.conv2 = nn.Conv2d(88, 20, kernel_size=5)
        self.incep2 = Inception(in_channels=20)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(1408, 10)

    def forward(self, x):
        batch_size = x.size(0)
        x = F.relu(self.mp(self.conv1(x)))
        x = self.incep1(x)
        x = F.relu(self.mp(self.conv2(x)))
        x = self.incep2(x)
        x = x.view(batch_size, -1)
        x = self.fc(x)
        return x


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super(ResidualBlock, self).__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        y = F.relu(self.bn(self.conv1(x)))
        y = self.bn(self.conv1(y))
        return F.relu(x + y)


class ResNet(nn.Module):
    def __init__(self):
        super(ResNet, self).__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=5)
        self.rblock1 = ResidualBlock(channels=16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=5)
        self.rblock2 = ResidualBlock(channels=32)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        batch_size = x.size(0)
        x = self.mp(F.relu(self.conv1(x)))
        x = self.rblock1(x)
        x = self.mp(F.relu(self.conv2(x)))
        x = self.rblock2(x)
        x = x.view(batch_size, -1)
        x = self.fc(x)
        return x


class ResidualBlockV2(nn.Module):  # the seed's closing listing ("所以代码只需要改一下 ResidualBlock 的 BN+ReLU 的顺序")
    def __init__(self, channels):
        super(ResidualBlockV2, self).__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)  # 特征图大小没变
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn(x)))
        y = self.conv2(F.relu(self.bn(y)))
        return x + y  # 不需要再激活
# ---- end of seed 003's code


class ResNetV2(ResNet):
    """The seed's ResNet with the closing listing's block swapped in, as the seed says to do."""

    def __init__(self):
        super().__init__()
        self.rblock1, self.rblock2 = ResidualBlockV2(channels=16), ResidualBlockV2(channels=32)


def _same_function(seed_net, ours, x, train=False):
    ours.load_state_dict(seed_net.state_dict())  # strict: the same names and shapes
    seed_net.train(train), ours.train(train)
    assert torch.allclose(seed_net(x), ours(x), atol=1e-5)


def test_googlenet_seed003_is_the_seeds_net():
    ours = create_model("googlenet-seed003")
    assert count(ours) == count(GoogleNet()) == 96_274
    assert count(create_model("googlenet-mini")) == 96_274 + 2 * (10 * 16 + 16) + 2 * (20 * 16 + 16)
    _same_function(GoogleNet(), ours, torch.randn(3, 1, 28, 28))


def test_resnet_simple_seed003_keeps_the_reused_conv_and_bn():
    ours = create_model("resnet-simple-seed003")
    assert count(ours) == count(ResNet()) == 41_610
    x = torch.randn(4, 1, 28, 28)
    _same_function(ResNet(), ours, x, train=True)
    _same_function(ResNet(), ours, x, train=False)
    ours(x).sum().backward()
    assert ours.rblock1.conv2.weight.grad is None  # built, counted, never used: the bug
    fixed = create_model("resnet-simple")
    assert count(fixed) == 41_610 + 16 * 2 + 32 * 2  # a second BN per block
    fixed(x).sum().backward()
    assert fixed.rblock1.conv2.weight.grad is not None


def test_resnet_simple_preact_seed003_is_the_closing_listing():
    ours = create_model("resnet-simple-preact-seed003")
    assert count(ours) == count(ResNetV2()) == 41_610
    x = torch.randn(4, 1, 28, 28)
    seed = ResNetV2()
    _same_function(seed, ours, x, train=True)  # one training-mode pass: both BN calls update the stats
    for a, b in zip(seed.state_dict().values(), ours.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)  # running statistics included
    _same_function(seed, ours, x, train=False)
    two = create_model("resnet-simple-preact")
    assert count(two) == 41_610 + 16 * 2 + 32 * 2  # a BN of its own before each conv
    blk = two.rblock1.eval()
    with torch.no_grad():
        y = torch.randn(2, 16, 6, 6)
        want = y + blk.conv2(F.relu(blk.bn2(blk.conv1(F.relu(blk.bn1(y))))))
        assert torch.allclose(blk(y), want, atol=1e-6)


def test_resnet14_tutorial_avgpool8_is_seed_001s_head():
    m = create_model("resnet14-tutorial-avgpool8")
    assert isinstance(m.avgpool, nn.AvgPool2d) and m.avgpool.kernel_size == 8
    assert count(m) == count(create_model("resnet14-tutorial", input_size=(32, 32)))
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="AvgPool2d\\(8\\).*29 to 60 pixels, got 28x28"):
        create_model("resnet14-tutorial-avgpool8", input_size=(28, 28))


@pytest.mark.parametrize("order", BLOCK_ORDERS)
def test_block_orders_compute_fig_4(order):
    torch.manual_seed(0)
    blk = OrderedBasicBlock(4, 4, order=order).eval()
    x = torch.randn(2, 4, 5, 5)
    c1, c2, b1, b2 = blk.conv1, blk.conv2, blk.bn1, blk.bn2
    with torch.no_grad():
        for b in (b1, b2):
            b.running_mean.uniform_(-1, 1), b.running_var.uniform_(0.5, 2), b.weight.uniform_(0.5, 2)
        want = {"original": lambda: F.relu(b2(c2(F.relu(b1(c1(x))))) + x),
                "bn-after-add": lambda: F.relu(b2(c2(F.relu(b1(c1(x)))) + x)),
                "relu-before-add": lambda: F.relu(b2(c2(F.relu(b1(c1(x)))))) + x,
                "relu-preact": lambda: b2(c2(F.relu(b1(c1(F.relu(x)))))) + x,
                "full-preact": lambda: c2(F.relu(b2(c1(F.relu(b1(x)))))) + x}[order]()
        keep = x.clone()
        assert torch.allclose(blk(x), want, atol=1e-6)
        assert torch.equal(x, keep)


def test_block_orders_a_and_e_are_the_existing_blocks():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    for order, ref in (("original", BasicBlock(4, 8, 2)), ("full-preact", PreActBlock(4, 4))):
        ours = OrderedBasicBlock(4, 8, 2, order=order) if order == "original" else OrderedBasicBlock(4, 4, order=order)
        ours.load_state_dict(ref.state_dict())  # strict: the same names and shapes
        ours.train(), ref.train()
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
    m = create_model("resnet20", block_order="full-preact")
    assert count(m) == count(create_model("preact-resnet20"))
    with pytest.raises(ConfigError, match="unknown block order 'pre'"):
        create_model("resnet20", block_order="pre")


@pytest.mark.parametrize("name,tv,kw", [("alexnet", "alexnet", {}), ("vgg11", "vgg11", {}),
                                        ("vgg11", "vgg11_bn", {"norm": "bn"})])
def test_torchvision_state_dicts_load_and_agree(name, tv, kw):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, tv)(weights=None, num_classes=7).eval()
    ours = create_model(name, num_classes=7, in_channels=3, **kw).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_parameter_counts_match_torchvision():
    for name, tv in (("alexnet", "alexnet"), ("vgg16", "vgg16")):
        with torch.device("meta"):
            assert count(create_model(name, num_classes=1000, in_channels=3)) == \
                count(getattr(torchvision.models, tv)(weights=None))
    assert count(create_model("vgg16", num_classes=1000, in_channels=3, norm="bn", input_size=(32, 32))) == \
        count(torchvision.models.vgg16_bn(weights=None))


@pytest.mark.parametrize("name", ["alexnet-small", "vgg11-small"])
@pytest.mark.parametrize("size", [28, 96])
def test_small_variants_train_at_28_to_96_px(name, size):
    m = create_model(name, num_classes=10, in_channels=1, input_size=(size, size), norm="bn")
    out = m(torch.randn(2, 1, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
