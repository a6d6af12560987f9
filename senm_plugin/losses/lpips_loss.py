"""LPIPS (AlexNet) perceptual loss from the ``lpips`` package, loaded from local files only (never downloads)."""
import os
import warnings

import torch
from torch import nn as nn

from basicsr.utils.registry import LOSS_REGISTRY
from senm_plugin.checkpoint import CheckpointError, extract_state_dict, safe_load

# torchvision's ImageNet AlexNet (AlexNet_Weights.IMAGENET1K_V1); the lpips package loads it through
# torchvision, which would download it into <torch hub dir>/checkpoints/.
ALEXNET_FILE = 'alexnet-owt-7be5be79.pth'
ALEXNET_URL = f'https://download.pytorch.org/models/{ALEXNET_FILE}'


class LPIPSWeightsNotFoundError(FileNotFoundError):
    """The ImageNet AlexNet backbone weights LPIPS needs are not on this machine."""


def default_alexnet_path():
    """Where torchvision caches the AlexNet weights: ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints', ALEXNET_FILE)


def find_alexnet_weights(pretrained_path=None):
    """Path of a local AlexNet weights file: ``pretrained_path`` if given, else torch's hub cache."""
    path = os.path.expanduser(pretrained_path) if pretrained_path else default_alexnet_path()
    if os.path.isfile(path):
        return path
    where = f'pretrained_path points at {path}, which does not exist' if pretrained_path else \
        f'it is not in the torch hub cache ({path})'
    raise LPIPSWeightsNotFoundError(
        f'LPIPSLoss needs the ImageNet AlexNet weights {ALEXNET_FILE} ({ALEXNET_URL}) and never downloads them; '
        f'{where}. Copy the file to {default_alexnet_path()} or set the loss option '
        f'`pretrained_path: /path/to/{ALEXNET_FILE}`. (`random_backbone: true` runs with a random AlexNet, '
        f'for tests only: the loss is then not perceptual.)')


@LOSS_REGISTRY.register()
class LPIPSLoss(nn.Module):
    """LPIPS distance (AlexNet trunk, linear layers v0.1) as a frozen loss on images in [0, 1].

    The SeNM-VAE reference applies ``lpips.LPIPS(net='alex')`` to its noisy reconstruction with weight 0.01
    (``Per_weight``). The linear-layer weights ship inside the ``lpips`` package; the AlexNet trunk comes from
    ``pretrained_path`` or torch's hub cache.

    Args:
        loss_weight (float): weight of the loss. Default: 1.0.
        pretrained_path (str | None): local torchvision AlexNet state dict (``alexnet-owt-7be5be79.pth``, whole
            model or ``features.*`` only). Default: the torch hub cache.
        random_backbone (bool): keep a randomly initialised trunk; for tests only. Default: False.
        normalize (bool): inputs are in [0, 1] and are mapped to [-1, 1] as LPIPS expects. Default: True. The
            reference passes [0, 1] images without this mapping; ``normalize: false`` reproduces it.
        reduction (str): 'mean' | 'sum' | 'none' over the batch. Default: 'mean'.
    """

    def __init__(self, loss_weight=1.0, pretrained_path=None, random_backbone=False, normalize=True, reduction='mean'):
        super().__init__()
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f'Unsupported reduction {reduction!r}; use mean, sum or none')
        import lpips  # deferred: only runs that use this loss need the package

        self.loss_weight = loss_weight
        self.normalize = normalize
        self.reduction = reduction
        backbone_path = None if random_backbone else find_alexnet_weights(pretrained_path)
        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
            warnings.simplefilter('ignore', UserWarning)
            # pnet_rand=True builds the trunk without weights, so torchvision never downloads; pretrained=True
            # loads the linear layers from the package's own weights/v0.1/alex.pth.
            self.lpips = lpips.LPIPS(pretrained=True, net='alex', pnet_rand=True, verbose=False)
        if backbone_path is not None:
            self._load_backbone(backbone_path)
        for param in self.lpips.parameters():
            param.requires_grad = False
        self.lpips.eval()

    def _load_backbone(self, path):
        """Copy torchvision AlexNet ``features.<i>`` weights into the lpips trunk slices holding layer i."""
        state = extract_state_dict(safe_load(path), path=path)
        loaded = 0
        for sl in self.lpips.net.children():
            for idx, layer in sl.named_children():
                for name, param in layer.named_parameters(recurse=False):
                    key = f'features.{idx}.{name}'
                    if key not in state or state[key].shape != param.shape:
                        found = tuple(state[key].shape) if key in state else 'missing'
                        raise CheckpointError(f'{path} is not a torchvision AlexNet state dict: {key} is {found}, '
                                              f'expected {tuple(param.shape)}')
                    with torch.no_grad():
                        param.copy_(state[key])
                    loaded += 1
        if loaded != 10:  # five convolutions, weight and bias each
            raise CheckpointError(f'Loaded {loaded} AlexNet tensors from {path}, expected 10')

    def train(self, mode=True):
        """Keep the LPIPS network in eval mode whatever the caller asks (it is frozen)."""
        super().train(mode)
        self.lpips.eval()
        return self

    def forward(self, pred, target, **kwargs):
        """Weighted LPIPS distance between ``pred`` and ``target`` (N, C, H, W); gradients flow to ``pred``."""
        if pred.shape[1] == 1:
            pred, target = pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        dist = self.lpips(pred, target, normalize=self.normalize).flatten()
        if self.reduction == 'mean':
            dist = dist.mean()
        elif self.reduction == 'sum':
            dist = dist.sum()
        return self.loss_weight * dist
