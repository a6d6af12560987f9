"""PatchGAN discriminator (pix2pix's NLayerDiscriminator) as used by SeNM-VAE for its GAN loss.

BasicSR's discriminators (VGG-style, U-Net SN, HiFaceGAN's multi-scale one) have other layouts, so the
reference layout (``SIDD/models/discriminator.py``: bias-free convs before BatchNorm, padding 1) is written here.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn as nn


@ARCH_REGISTRY.register()
class PatchGANDiscriminator(nn.Module):
    """Maps an image to a map of real/fake logits, one per overlapping patch (2,765,633 parameters at defaults).

    Args:
        num_in_ch (int): image channels. Default: 3.
        num_feat (int): channels of the first conv. Default: 64.
        num_layers (int): stride-2 conv layers. Default: 3.
        norm (str): 'batch', 'instance' or 'none'. Default: 'batch'.
    """

    def __init__(self, num_in_ch=3, num_feat=64, num_layers=3, norm='batch'):
        super().__init__()
        norms = {'batch': nn.BatchNorm2d, 'instance': nn.InstanceNorm2d, 'none': None}
        if norm not in norms:
            raise ValueError(f'PatchGANDiscriminator: norm must be one of {sorted(norms)}, got {norm!r}')
        norm_layer = norms[norm]

        def block(in_ch, out_ch, stride):
            layers = [nn.Conv2d(in_ch, out_ch, 4, stride, 1, bias=norm_layer is None)]
            if norm_layer is not None:
                layers.append(norm_layer(out_ch))
            return layers + [nn.LeakyReLU(0.2, True)]

        layers = [nn.Conv2d(num_in_ch, num_feat, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, num_layers + 1):
            prev, mult = mult, min(2**n, 8)
            layers += block(num_feat * prev, num_feat * mult, 2 if n < num_layers else 1)
        layers.append(nn.Conv2d(num_feat * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)
