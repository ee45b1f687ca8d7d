"""Small, deterministic networks for tests, examples and benchmarks.

Every factory draws its initial weights from its own seeded ``torch.Generator``
(the global RNG is never touched), so two calls return identical networks.
"""

import torch
from torch import nn

__all__ = [
    "make_mlp",
    "make_small_cnn",
    "make_staged_cnn",
    "make_resnet18",
    "make_transformer_encoder",
]


def _reinitialise(module, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                bound = (1.0 / p.shape[1]) ** 0.5 * (3.0**0.5)
                p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=generator))
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
    return module


def make_mlp(n_features=4, hidden=(16, 8), n_outputs=3, seed=0):
    """A ``nn.Sequential`` MLP: ``Linear -> ReLU`` per hidden layer, then ``Linear``.

    Parameters
    ----------
    n_features : int, default=4
        Input width.
    hidden : tuple of int, default=(16, 8)
        Hidden widths.
    n_outputs : int, default=3
        Output width.
    seed : int, default=0
        Seed of the weights.

    Returns
    -------
    net : torch.nn.Sequential
    """
    layers, width = [], n_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return _reinitialise(nn.Sequential(*layers), seed)


def make_small_cnn(in_channels=1, n_classes=10, seed=0):
    """Three ``conv -> ReLU -> max-pool`` stages and a linear head.

    Takes ``(N, in_channels, H, W)`` with ``H, W >= 8``.
    """
    net = nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, n_classes),
    )
    return _reinitialise(net, seed)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and a shortcut."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 images (CIFAR layout): stem, 4 stages of 2 blocks, head."""

    def __init__(self, n_classes=10, width=64):
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, n_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_resnet18(n_classes=10, width=64, seed=0):
    """A ResNet-18-style CNN for ``(N, 3, 32, 32)`` inputs (9 blocks + head)."""
    net = _reinitialise(ResNet18(n_classes=n_classes, width=width), seed)
    return net.eval()


class StagedCNN(nn.Module):
    """Four user-named ``nn.Sequential`` stages chained by ``forward``, then a head.

    Each stage is convolution, batch norm and an in-place ReLU; the stages are
    the names users write in a grid (``"block1"`` ... ``"block4"``).
    """

    def __init__(self, n_classes=10, width=16):
        super().__init__()
        widths = [3, width, 2 * width, 4 * width, 8 * width]
        for i in range(4):
            stride = 1 if i == 0 else 2
            setattr(self, f"block{i + 1}", nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 3, stride, 1, bias=False),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(inplace=True),
            ))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(widths[-1], n_classes)

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(self.flat(self.pool(x)))


def make_staged_cnn(n_classes=10, width=16, seed=0):
    """A CNN with user-named stages ``block1`` ... ``block4`` for ``(N, 3, H, W)``."""
    return _reinitialise(StagedCNN(n_classes=n_classes, width=width), seed).eval()


class TransformerClassifier(nn.Module):
    """Token embedding, ``nn.TransformerEncoder`` and a linear head on the mean token."""

    def __init__(self, vocab_size, d_model, n_layers, n_heads, n_classes):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, 4 * d_model, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, input_ids):
        hidden = self.encoder(self.embed(input_ids))
        return self.head(hidden.mean(dim=1))


def make_transformer_encoder(
    vocab_size=1000, d_model=128, n_layers=6, n_heads=4, n_classes=2, seed=0
):
    """A 6-layer ``nn.TransformerEncoder`` classifier over token ids ``(N, T)``."""
    net = TransformerClassifier(vocab_size, d_model, n_layers, n_heads, n_classes)
    return _reinitialise(net, seed).eval()
