"""ScaoedNet: self-correcting alternating optimisation denoiser (NeurIPS 2022 poster), registered as ``ScaoedNet``.

Faithful to the reference ``DN`` class of ``chaoren88/ScaoedNet``: same state-dict keys and shapes (572 entries,
3,371,750 parameters at the defaults), so the released checkpoints load with ``strict=True``. Reference ``T`` is
``num_stages - 1``.
"""
import torch
from torch import nn as nn
from torch.nn import functional as F

from basicsr.utils.registry import ARCH_REGISTRY
from ..heap import retained_heap
from ..ops.winograd import winograd_convs
from .scaoednet_blocks import ConvLayer, DENet, InitialDENet, RENet
from .inference import channels_last_weights, self_ensemble, tiled_forward


@ARCH_REGISTRY.register()
class ScaoedNet(nn.Module):
    """ScaoedNet denoiser: LS encoding E, U_ini, then K stages of z = a Z(z, E(y), u) + b E(y) and u += U(z, y, u).

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels (the reference fixes 64). Default: 64.
        num_stages (int): Stages K of the self-correcting alternation (the paper's K; reference T + 1). Default: 5.
        num_blocks (int): FMMA blocks in the RE network (the paper's T = 16). Default: 16.

    ``forward(x)`` returns the restored image; ``forward(x, return_noise_maps=True)`` returns
    ``(image, noise_maps)`` where ``noise_maps`` is the list [u_ini, u_1, ..., u_{K-1}] of K one-channel
    full-resolution maps, exactly the reference's first output. Inputs of any height and width are accepted:
    an odd side is padded by one replicated row/column (the LS encoding needs even sides) and cropped back.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_stages=5, num_blocks=16):
        super().__init__()
        if num_stages < 1:
            raise ValueError(f'ScaoedNet: num_stages must be >= 1, got {num_stages}')
        self.num_in_ch = num_in_ch
        self.num_stages = num_stages
        # a and b of z = a * Z(...) + b * E(y); learnable, initialised to 1 as in the reference
        self.a = nn.Parameter(torch.ones(1))
        self.b = nn.Parameter(torch.ones(1))
        self.head = nn.Sequential(ConvLayer(num_in_ch * 4, num_feat, 3))  # LS encoding E
        self.DE_Net = DENet(num_feat)
        self.ini_DE_Net = InitialDENet(num_in_ch, num_feat)
        self.RE_Net = RENet(num_feat, num_blocks)
        self.tail = nn.Sequential(ConvLayer(num_feat, num_out_ch * 4, 3))  # LS decoding D (with pixel shuffle)
        # head_E(E) and head_Q(Q) do not change across stages: compute them once (the reference recomputes them
        # every stage). False reproduces the reference's operation count, e.g. for MAC counting.
        self.reuse_invariants = True

    def check_input(self, x):
        """Raise a ValueError/TypeError that says what was expected when ``x`` is not a usable image batch."""
        if not torch.is_tensor(x):
            raise TypeError(f'ScaoedNet expects a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4 or x.size(1) != self.num_in_ch:
            raise ValueError(f'ScaoedNet expects an (N, {self.num_in_ch}, H, W) image batch, got shape '
                             f'{tuple(x.shape)}')
        if x.dtype != self.a.dtype:
            raise TypeError(f'ScaoedNet expects {self.a.dtype} input (the weights\' dtype; images scaled to [0, 1]), '
                            f'got {x.dtype}; convert with x.float() / 255 for uint8 images')
        if not torch.isfinite(x).all():
            raise ValueError('ScaoedNet input contains NaN or Inf values')

    def forward(self, x, return_noise_maps=False):
        self.check_input(x)
        h, w = x.shape[-2:]
        pad_h, pad_w = h % 2, w % 2
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
        image, noise_maps = self._stages(x)
        if pad_h or pad_w:
            image = image[..., :h, :w]
            noise_maps = [u[..., :h, :w] for u in noise_maps]
        return (image, noise_maps) if return_noise_maps else image

    def _stages(self, y):
        """The self-correcting alternation of Eq. (2) on an even-sized batch; returns (image, noise maps)."""
        e = self.head(F.pixel_unshuffle(y, 2))
        u, q = self.ini_DE_Net(y)
        e_head = self.RE_Net.head_E(e) if self.reuse_invariants else None
        q_head = self.DE_Net.head_Q(q) if self.reuse_invariants else None
        z = self.a * self.RE_Net(e, e, u, e_head) + self.b * e
        noise_maps = [u]
        for _ in range(self.num_stages - 1):
            u = u + self.DE_Net(u, q, z, q_head)
            z = self.a * self.RE_Net(z, e, u, e_head) + self.b * e
            noise_maps.append(u)
        return F.pixel_shuffle(self.tail(z), 2), noise_maps

    @torch.inference_mode()
    def restore(self, x, tile_size=None, tile_overlap=32, use_self_ensemble=False, channels_last=True,
                winograd=True):
        """Fast inference: the same outputs as ``forward`` (float tolerance), in inference mode and channels-last,
        with the 3x3 convolutions as Winograd F(4x4, 3x3) on CPU (``senm_plugin.ops.winograd``) and freed
        memory kept in the heap while it runs (``senm_plugin.heap``).

        Args:
            x (Tensor): (N, C, H, W) noisy images in [0, 1].
            tile_size (int | None): Restore tile by tile (``tile_size`` square input tiles) to bound memory.
            tile_overlap (int): Pixels shared by neighbouring tiles; each output pixel comes from the tile in
                which it lies farthest from a seam.
            use_self_ensemble (bool): Average the outputs over the 8 flips/rotations (the poster's dagger rows).
            channels_last (bool): Run the convolutions in channels-last layout (faster on CPU).
            winograd (bool): Use the Winograd kernel for channels-last CPU input (needs a C++ compiler the first
                time; without one, or with False, oneDNN's direct convolutions run).
        """
        self.check_input(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        run = self.forward
        if tile_size is not None:
            run = (lambda inp, fn=run: tiled_forward(fn, inp, tile_size, tile_overlap))
        # retained_heap: feature maps are freed and reallocated hundreds of times per image
        with channels_last_weights(self, channels_last), winograd_convs(self, channels_last and winograd), \
                retained_heap():
            out = self_ensemble(run, x) if use_self_ensemble else run(x)
        return out.contiguous()
