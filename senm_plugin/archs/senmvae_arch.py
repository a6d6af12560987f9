"""SeNM-VAE (Zheng et al., CVPR 2024): a hierarchical VAE with a content latent z and a degradation latent zn.

Paper Sec. 3.2, Eq. (14)-(21). Three bottom-up encoders (clean x -> a^l for q(z|x); noisy y -> a^l for q(z|y);
noisy y -> a_n^l for q(zn|y,z)), four Gaussian heads per layer (q(z|x), q(z|y), q(zn|y,z), p(zn|z); the zn heads
see the degradation level as one extra input channel) and one top-down decoder shared by p(x|z) and p(y|z,zn).
Attribute names are those of the reference checkpoints (zhengdihan/SeNM-VAE, ``SIDD/models/network_senmvae.py``):
``*_H`` belongs to the clean image x, ``*_L`` to the noisy image y, ``*_N`` to the noise encoder.
"""
import contextlib
import warnings

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn as nn

from ..domains import PAIRED, SOURCE, TARGET
from ..ops.winograd import winograd_convs
from .senmvae_blocks import (DownSample, GaussianHead, RDB, UpSample, append_level, gaussian_kl, gaussian_sample,
                             level_map, mixture_select, noise_std)
from .inference import channels_last_weights


@ARCH_REGISTRY.register()
class SeNMVAE(nn.Module):
    """Semi-supervised noise model: learns p(y|x) from paired, clean-only and noisy-only images.

    Args:
        num_in_ch (int): image channels. Default: 3.
        num_feat (int): feature channels of every layer (reference ``nf``). Default: 64.
        num_latent_layers (list[int]): RDB latent layers per resolution (reference ``nls``); a DownSample latent layer
            sits between consecutive resolutions, so ``[2, 4]`` gives L = 2 + 1 + 4 = 7 latent layers. Default: [2, 4].
            (Its old name ``num_levels`` is still accepted, with a warning, until the next release: "level" is the
            noise level everywhere else.)
        zn_dim (int): channels of each degradation latent layer zn^l. Default: 16.
        num_down (int): extra 2x down-samplings before the first latent layer. Default: 0.
        num_grow_ch (int): growth channels of the residual dense blocks. Default: 32.
        winograd (bool): on CPU, run the 3x3 convolutions through the Winograd F(4x4, 3x3) kernel
            (``senm_plugin.ops.winograd``) in training (forward and backward, channels-last) and in
            ``translate``/``denoise``. Same results to float tolerance; falls back by itself where the kernel cannot
            be built. Default: True.
        zero_init_projections (bool): start ``proj_z`` / ``proj_zn`` at zero weight, as the reference does, so that
            training starts from a plain auto-encoder. With zero projections and zero-initialised head outputs no
            gradient reaches a latent's mean until its projection has grown, which short (CPU) trainings never get
            past for zn; ``False`` keeps PyTorch's default initialisation (not in the paper). Default: True.
        logsigma_init (float | None): start every Gaussian head at log-sigma = this value (the bias of its last
            log-sigma conv) instead of about 0 (PyTorch's default bias, as the reference). A negative value starts
            the latents nearly deterministic, so the decoder is not flooded with unit-variance noise while it learns
            to use them (not in the paper). Default: None.
    """

    def __init__(self, num_in_ch=3, num_feat=64, num_latent_layers=(2, 4), zn_dim=16, num_down=0, num_grow_ch=32,
                 winograd=True, zero_init_projections=True, logsigma_init=None, num_levels=None):
        super().__init__()
        if num_levels is not None:
            warnings.warn('SeNMVAE: the option num_levels is now num_latent_layers (the old name goes in the next '
                          'release); rename it in network_g', FutureWarning, stacklevel=2)
            num_latent_layers = num_levels
        self.winograd = winograd
        nf = num_feat
        self.num_latent_layers = list(num_latent_layers)
        self.num_down = num_down

        def inconv():
            return nn.Sequential(nn.Conv2d(num_in_ch, nf, 1), *[DownSample(nf, nf) for _ in range(num_down)])

        self.inconv_H, self.inconv_L, self.inconv_N = inconv(), inconv(), inconv()

        names = ('encs_H', 'encs_L', 'encs_N', 'Gauconv_zn_q', 'Gauconv_zn_p', 'Gauconv_z_L', 'Gauconv_z_H', 'dec',
                 'proj_zn', 'proj_z')
        layers = {name: [] for name in names}
        for scale, num in enumerate(self.num_latent_layers):
            last = scale == len(self.num_latent_layers) - 1
            for k in range(num + (0 if last else 1)):
                resample = k == num  # the latent layer that changes resolution
                for name in ('encs_H', 'encs_L', 'encs_N'):
                    layers[name].append(DownSample(nf, nf) if resample else RDB(nf, num_grow_ch))
                layers['dec'].append(UpSample(nf, nf) if resample else RDB(nf, num_grow_ch))
                layers['Gauconv_zn_q'].append(GaussianHead(nf + 1, zn_dim, num_grow_ch))
                layers['Gauconv_zn_p'].append(GaussianHead(nf + 1, zn_dim, num_grow_ch))
                layers['Gauconv_z_L'].append(GaussianHead(nf, nf, num_grow_ch))
                layers['Gauconv_z_H'].append(GaussianHead(nf, nf, num_grow_ch))
                layers['proj_zn'].append(nn.Conv2d(zn_dim, nf, 1))
                layers['proj_z'].append(nn.Conv2d(nf, nf, 1))
        for name in names:
            setattr(self, name, nn.ModuleList(layers[name]))
        if zero_init_projections:
            for proj in list(self.proj_z) + list(self.proj_zn):
                nn.init.zeros_(proj.weight)
        if logsigma_init is not None:
            for head in (*self.Gauconv_zn_q, *self.Gauconv_zn_p, *self.Gauconv_z_L, *self.Gauconv_z_H):
                nn.init.constant_(head.v[1].bias, float(logsigma_init))

        self.outconv = nn.Sequential(*[UpSample(nf, nf) for _ in range(num_down)], nn.Conv2d(nf, nf, 3, 1, 1),
                                     nn.ReLU(True), nn.Conv2d(nf, num_in_ch, 3, 1, 1))

    @property
    def num_layers(self):
        """L, the number of latent layers."""
        return len(self.dec)

    @staticmethod
    def _encode(inconv, encs, img):
        """Bottom-up features a^1..a^L (Eq. 15, 18) of one encoder."""
        acts = []
        act = inconv(img)
        for enc in encs:
            act = enc(act)
            acts.append(act)
        return acts

    def translate(self, clean, noise_level, temperature=1.0, deterministic=False, generators=None, channels_last=None,
                  residual=False):
        """Noisy image for ``clean`` by ancestral sampling (Fig. 1b): z ~ q(z|x), zn ~ p(zn|z, level), y = decoder.

        ``noise_level`` is a float or one value per image; ``temperature`` multiplies every zn draw (as the
        reference does); ``deterministic`` takes every latent at its mean; ``generators`` (one per image) make each
        image's draws independent of the batch it is in. ``channels_last`` runs the convolutions in channels-last
        layout (same draws, float-tolerance outputs); by default on CPU without autograd, where it is faster.

        ``residual`` (not in the paper) adds only rendered noise to the clean image: z is taken at the mean of
        q(z|x) and the decoder renders twice from it, once with the zn draws (y) and once as a reference;
        ``'clean'`` returns ``clean + (y - x_hat)`` with the clean reconstruction x_hat (no zn) as the reference,
        ``'mean'`` returns ``clean + (y - y_bar)`` with zn at the mean of p(zn|z, level) as the reference (noise of
        zero mean by construction). Whatever the decoder gets wrong about the content appears in both renderings and
        cancels, so a model whose content path is not yet exact (short training) still adds only noise. ``'level'``
        is ``'mean'`` with each image's noise scaled so that its std equals that image's ``noise_level``, which in
        training is exactly std(y - x): the model gives the noise its structure (spatial and channel correlation,
        dependence on the signal), the level its strength, which short trainings render too weak.
        """
        if residual not in (False, None, 'clean', 'mean', 'level'):
            raise ValueError(f"residual must be False, 'clean', 'mean' or 'level', got {residual!r}")
        with self._inference_layout(clean, channels_last) as clean:
            acts = self._encode(self.inconv_H, self.encs_H, clean)
            if not residual:
                return self._render(acts, noise_level, temperature, deterministic, deterministic, generators)
            noisy = self._render(acts, noise_level, temperature, True, deterministic, generators)
            if residual == 'clean':
                reference = self._render(acts, None, 0., True, True, None)
            else:
                reference = self._render(acts, noise_level, temperature, True, True, None)
            noise = noisy - reference
            if residual == 'level':
                noise = noise * (level_map(noise_level, noise[:, :1, :1, :1]) / noise_std(noise))
            return (clean + noise).contiguous()

    def _render(self, acts, noise_level, temperature, z_mean, zn_mean, generators):
        """Top-down pass from the clean features ``acts``: z ~ q(z|x) (its mean if ``z_mean``), then zn ~ p(zn|z,
        level) scaled by ``temperature`` (its mean if ``zn_mean``; no zn at all if ``noise_level`` is None)."""
        dec = 0
        for i in reversed(range(self.num_layers)):
            z = gaussian_sample(*self.Gauconv_z_H[i](dec + acts[i]), z_mean, generators)
            dec = dec + self.proj_z[i](z)
            if noise_level is not None:
                zn = gaussian_sample(*self.Gauconv_zn_p[i](append_level(dec, noise_level)), zn_mean, generators)
                dec = dec + self.proj_zn[i](zn * temperature)
            dec = self.dec[i](dec)
        return self.outconv(dec).contiguous()

    def denoise(self, noisy, deterministic=False, channels_last=None):
        """Clean estimate of ``noisy`` decoded from z ~ q(z|y) (no degradation latent); ``channels_last`` as in
        ``translate``."""
        with self._inference_layout(noisy, channels_last) as noisy:
            acts = self._encode(self.inconv_L, self.encs_L, noisy)
            dec = 0
            for i in reversed(range(self.num_layers)):
                z = gaussian_sample(*self.Gauconv_z_L[i](dec + acts[i]), deterministic)
                dec = self.dec[i](dec + self.proj_z[i](z))
            return self.outconv(dec).contiguous()

    @contextlib.contextmanager
    def _inference_layout(self, img, channels_last):
        """Yield ``img`` in the layout to run in, with the weights in that layout for the duration."""
        if channels_last is None:
            channels_last = img.device.type == 'cpu' and not torch.is_grad_enabled()
        with channels_last_weights(self, channels_last), winograd_convs(self, self.winograd and channels_last):
            yield img.contiguous(memory_format=torch.channels_last) if channels_last else img

    def forward(self, clean, noisy, noise_level, domain, mix_x=None, mix_y=None, deterministic=False):
        """Training pass that computes, per domain, only what that domain's loss (Eq. 11) uses.

        Args:
            clean, noisy (Tensor): (B, C, H, W) images x and y (the absent one of a single-domain sample is ignored).
            noise_level (Tensor): (B,) degradation level per sample (used for paired and target samples).
            domain (Tensor): (B,) labels 0 paired, 1 source (clean only), 2 target (noisy only).
            mix_x, mix_y (Tensor | None): (B,) 0/1 choices of the Eq. (5) mixture for the paired samples of the
                x and y reconstruction passes (1: z from q(z|x), 0: from q(z|y)); drawn with p = 1/2 if None.
            deterministic (bool): take every latent at its mean.

        Returns:
            dict: ``x_idx`` / ``x_hat`` (batch indices and reconstructions of x, paired + source samples),
            ``y_idx`` / ``y_hat`` and ``kl_zn`` (paired + target samples), ``z_idx`` / ``kl_z`` (paired samples:
            KL(q(z|y) || q(z|x)) summed over both passes). KL terms are per sample: the sum over layers of the
            per-element mean. On CPU with ``winograd`` the images come back channels-last.
        """
        with winograd_convs(self, self.winograd and clean.device.type == 'cpu', training=True):
            return self._forward(clean, noisy, noise_level, domain, mix_x, mix_y, deterministic)

    def _forward(self, clean, noisy, noise_level, domain, mix_x, mix_y, deterministic):
        """``forward`` without the choice of convolution kernel."""
        idx_p, idx_s, idx_t = self._split_domains(domain, clean.device)
        s, p, t = idx_s.numel(), idx_p.numel(), idx_t.numel()

        # Rows of the shared decoder state: [source, paired (x pass), paired (y pass), target]. The q(z|x) head
        # then runs on the contiguous rows [:s+2p] and the q(z|y) head on [s:], each only where a loss needs it.
        x_idx, y_idx = torch.cat([idx_s, idx_p]), torch.cat([idx_p, idx_t])
        n_x, n_y = s + p, p + t
        if p:
            mix_x = self._mixture(mix_x, idx_p, clean)
            mix_y = self._mixture(mix_y, idx_p, clean)
            mode = torch.cat([mix_x, mix_y]).view(-1, 1, 1, 1)
        acts_h = self._encode(self.inconv_H, self.encs_H, clean.index_select(0, x_idx)) if n_x else None
        if n_y:
            y_rows = noisy.index_select(0, y_idx)
            acts_l = self._encode(self.inconv_L, self.encs_L, y_rows)
            acts_n = self._encode(self.inconv_N, self.encs_N, y_rows)
            level = noise_level.reshape(-1).to(clean).index_select(0, y_idx)

        dec = 0
        kl_z = clean.new_zeros(2 * p)
        kl_zn = clean.new_zeros(n_y)
        for i in reversed(range(self.num_layers)):
            z_parts = []
            if s + 2 * p:
                a_h = torch.cat([acts_h[i], acts_h[i][s:]]) if p else acts_h[i]
                hm, hv = self.Gauconv_z_H[i](self._rows(dec, 0, s + 2 * p) + a_h)
                z_h = gaussian_sample(hm, hv, deterministic)
            if 2 * p + t:
                a_l = torch.cat([acts_l[i][:p], acts_l[i]]) if p else acts_l[i]
                lm, lv = self.Gauconv_z_L[i](self._rows(dec, s, s + 2 * p + t) + a_l)
                z_l = gaussian_sample(lm, lv, deterministic)
            if s:
                z_parts.append(z_h[:s])
            if p:
                z_parts.append(mixture_select(z_h[s:], z_l[:2 * p], mode))
                kl_z = kl_z + gaussian_kl(lm[:2 * p], lv[:2 * p], hm[s:], hv[s:]).mean(dim=(1, 2, 3))
            if t:
                z_parts.append(z_l[2 * p:])
            dec = dec + self.proj_z[i](torch.cat(z_parts) if len(z_parts) > 1 else z_parts[0])

            if n_y:
                dec_y = dec[n_x:]
                qm, qv = self.Gauconv_zn_q[i](append_level(dec_y + acts_n[i], level))
                pm, pv = self.Gauconv_zn_p[i](append_level(dec_y, level))
                kl_zn = kl_zn + gaussian_kl(qm, qv, pm, pv).mean(dim=(1, 2, 3))
                dec_y = dec_y + self.proj_zn[i](gaussian_sample(qm, qv, deterministic))
                dec = torch.cat([dec[:n_x], dec_y]) if n_x else dec_y
            dec = self.dec[i](dec)

        out = self.outconv(dec)
        return {
            'x_idx': x_idx,
            'x_hat': out[:n_x],
            'y_idx': y_idx,
            'y_hat': out[n_x:],
            'kl_zn': kl_zn,
            'z_idx': idx_p,
            'kl_z': kl_z[:p] + kl_z[p:],
        }

    @staticmethod
    def _split_domains(domain, device):
        """Batch indices of the paired, source and target samples; any other label raises ValueError."""
        domain = domain.reshape(-1).to(device)
        idx = [torch.nonzero(domain == d).flatten() for d in (PAIRED, SOURCE, TARGET)]
        if sum(i.numel() for i in idx) != domain.numel():
            raise ValueError(f'domain labels must be {PAIRED} (paired), {SOURCE} (source) or {TARGET} (target), '
                             f'got {domain.tolist()}')
        return idx

    @staticmethod
    def _rows(dec, start, stop):
        """Rows [start:stop] of the decoder state (which is the scalar 0 above the top layer)."""
        return dec if not torch.is_tensor(dec) else dec[start:stop]

    @staticmethod
    def _mixture(mix, idx_p, ref):
        """The 0/1 mixture choices of the paired samples: given, or a fair coin per sample."""
        if mix is None:
            return (torch.rand(idx_p.numel(), device=ref.device) > 0.5).to(ref.dtype)
        return mix.reshape(-1).to(ref).index_select(0, idx_p)
