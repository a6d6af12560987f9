"""Building blocks of SeNM-VAE: residual dense blocks, resampling layers, Gaussian heads and the closed-form KL.

Module attribute names (``net``, ``down``, ``up``, ``m``, ``v``) follow the public reference checkpoints of
zhengdihan/SeNM-VAE (``SIDD/models/network_senmvae.py``) so that those load with ``strict=True``.
"""
import torch
from basicsr.archs.rrdbnet_arch import ResidualDenseBlock
from torch import nn as nn


# Log-sigma values are bounded to this range wherever a Gaussian head is read. Inside it nothing changes; outside, a
# tanh ramp one unit wide takes over, so a head whose raw output runs away (q(z|x) shrinking its variance without a
# prior to stop it) can no longer overflow exp(-2 log sigma) in the KL. sigma = e^-10 is 4.5e-5 in latent units,
# far below anything that changes an 8-bit output.
LOGSIGMA_BOUNDS = (-10., 10.)


def bound_logsigma(logsigma, bounds=LOGSIGMA_BOUNDS):
    """``logsigma`` unchanged inside ``bounds``, eased by a unit-wide tanh ramp outside (C1, so gradients flow)."""
    lo, hi = bounds
    below = lo + torch.tanh(logsigma - lo)
    above = hi + torch.tanh(logsigma - hi)
    return torch.where(logsigma < lo, below, torch.where(logsigma > hi, above, logsigma))


def to_float32(tensor):
    """``tensor`` in float32 when autocast made it half or bfloat16; other dtypes (e.g. float64) unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def gaussian_kl(mu_q, logsigma_q, mu_p, logsigma_p):
    """Element-wise KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) of diagonal Gaussians given (mean, log-sigma).

    Written with exp of log-sigma differences rather than a ratio of exps: sigma_q^2 / sigma_p^2 as two exps
    underflows to 0/0 once both are tiny, while exp(2 (log sigma_q - log sigma_p)) stays exact.
    """
    return (logsigma_p - logsigma_q - 0.5 + 0.5 * torch.exp(2 * (logsigma_q - logsigma_p)) +
            0.5 * ((mu_q - mu_p) * torch.exp(-logsigma_p))**2)


def gaussian_sample(mu, logsigma, deterministic=False, generators=None):
    """A reparameterised draw mu + sigma * eps from N(mu, sigma^2), or the mean when ``deterministic``.

    ``generators``: one ``torch.Generator`` per sample, so that sample b's draws do not depend on the batch it is in.
    """
    if deterministic:
        return mu
    if generators is None:
        # drawn in logical (not memory) order, so a channels-last run samples what a contiguous one does
        return mu + logsigma.exp() * torch.randn(mu.shape, device=mu.device, dtype=mu.dtype)
    if len(generators) != mu.shape[0]:
        raise ValueError(f'{len(generators)} generators for a batch of {mu.shape[0]}')
    eps = torch.stack([torch.randn(tuple(mu.shape[1:]), generator=g, device=g.device) for g in generators])
    return mu + logsigma.exp() * eps.to(mu)


def mixture_select(z_x, z_y, mode):
    """Eq. (5) mixture draw: per sample, the q(z|x) draw where ``mode`` is 1 and the q(z|y) draw where it is 0."""
    return z_x * mode + z_y * (1 - mode)


def append_level(feat, level):
    """Concatenate the degradation level as one extra constant channel (``level``: float or per-image tensor)."""
    level = level_map(level, feat)
    if feat.shape[1] > 1 and feat.stride(1) == 1:
        # channels-last features: give the one-channel map channels-last strides too, or torch.cat falls back to
        # NCHW and every convolution after it converts back
        level = level.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    return torch.cat([feat, level], dim=1)


def level_map(level, feat):
    """A (B, 1, H, W) tensor holding each image's degradation level, on ``feat``'s device and dtype."""
    b, _, h, w = feat.shape
    if not torch.is_tensor(level):
        return feat.new_full((b, 1, h, w), float(level))
    level = level.to(device=feat.device, dtype=feat.dtype).reshape(-1)
    if level.numel() == 1:
        level = level.expand(b)
    elif level.numel() != b:
        raise ValueError(f'noise_level has {level.numel()} values for a batch of {b} images')
    return level.view(b, 1, 1, 1).expand(b, 1, h, w)


def noise_std(noise, eps=1e-8):
    """Per-image std of ``noise`` over channels and pixels, as (B, 1, 1, 1) and at least ``eps``: the measure of the
    degradation level (std(y - x) of a pair)."""
    return noise.flatten(1).std(dim=1).clamp_min(eps).view(-1, 1, 1, 1)


class RDB(nn.Module):
    """The basic block f / g of Eq. (15)-(19): one residual dense block (BasicSR's, growth 32, init scale 0.1)."""

    def __init__(self, num_feat=64, num_grow_ch=32):
        super().__init__()
        self.net = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        return self.net(x)


class DownSample(nn.Module):
    """Halve the resolution: pixel-unshuffle by 2 then a 3x3 conv."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.down = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(in_ch * 4, out_ch, 3, 1, 1))

    def forward(self, x):
        return self.down(x)


class UpSample(nn.Module):
    """Double the resolution: pixel-shuffle by 2 then a 3x3 conv."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.up = nn.Sequential(nn.PixelShuffle(2), nn.Conv2d(in_ch // 4, out_ch, 3, 1, 1))

    def forward(self, x):
        return self.up(x)


class GaussianHead(nn.Module):
    """Predicts (mean, log-sigma) of a diagonal Gaussian latent layer: two RDB + 1x1-conv branches.

    The last 1x1 conv of each branch starts with zero weights, so every layer starts near N(bias, exp(bias)^2).
    Log-sigma is read through ``bound_logsigma``. Both come out in float32 under mixed precision, so latent draws
    and KL terms keep full precision.
    """

    def __init__(self, in_ch, out_ch, num_grow_ch=32, zero_last=True):
        super().__init__()
        self.m = nn.Sequential(RDB(in_ch, num_grow_ch), nn.Conv2d(in_ch, out_ch, 1))
        self.v = nn.Sequential(RDB(in_ch, num_grow_ch), nn.Conv2d(in_ch, out_ch, 1))
        if zero_last:
            nn.init.zeros_(self.m[1].weight)
            nn.init.zeros_(self.v[1].weight)

    def forward(self, x):
        return to_float32(self.m(x)), bound_logsigma(to_float32(self.v(x)))
