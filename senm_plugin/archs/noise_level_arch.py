"""The degradation-level predictor of SeNM-VAE (paper Sec. 3.2, "Degradation level controllable generation")."""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn as nn


@ARCH_REGISTRY.register()
class NoiseLevelNet(nn.Module):
    """Predicts one degradation level per image (B, 1, 1, 1) from a noisy image.

    Four stride-2 4x4 convs (num_feat x 1, 2, 4, 8), global average pooling and a three-layer MLP; the layout (and
    state-dict keys) of the reference ``SIDD/models/network_nlnet.py`` (2,920,897 parameters at the defaults).
    """

    def __init__(self, num_in_ch=3, num_feat=64):
        super().__init__()
        nf = num_feat
        self.net = nn.Sequential(
            nn.Conv2d(num_in_ch, nf, 4, 2, 1), nn.ReLU(True),
            nn.Conv2d(nf, nf * 2, 4, 2, 1), nn.ReLU(True),
            nn.Conv2d(nf * 2, nf * 4, 4, 2, 1), nn.ReLU(True),
            nn.Conv2d(nf * 4, nf * 8, 4, 2, 1), nn.AdaptiveAvgPool2d(1))
        self.dense = nn.Sequential(
            nn.Linear(nf * 8, nf * 4), nn.ReLU(True),
            nn.Linear(nf * 4, nf * 2), nn.ReLU(True),
            nn.Linear(nf * 2, 1))

    def forward(self, x):
        return self.dense(self.net(x).flatten(1)).view(-1, 1, 1, 1)
