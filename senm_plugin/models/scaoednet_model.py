"""ScaoedNetModel: BasicSR's SRModel for denoising (scale 1) with noise-map supervision of every ScaoedNet stage."""
from collections import OrderedDict

import torch
from torch.nn import functional as F

from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from senm_plugin.archs.senmvae_blocks import to_float32
from senm_plugin.models.amp import Amp


def noise_level_map(lq, gt, window=7):
    """Local noise level of a pair: the std of ``lq - gt`` in a ``window`` box, averaged over channels.

    Returns an (N, 1, H, W) map; the box is clipped at the image border (count_include_pad=False).
    """
    noise = lq - gt
    pool = dict(kernel_size=window, stride=1, padding=window // 2, count_include_pad=False)
    mean = F.avg_pool2d(noise, **pool)
    var = F.avg_pool2d(noise * noise, **pool) - mean * mean
    return var.clamp_min(0).sqrt().mean(dim=1, keepdim=True)


@MODEL_REGISTRY.register()
class ScaoedNetModel(SRModel):
    """Denoising model for ScaoedNet (or any network whose forward takes ``return_noise_maps``).

    Training loss (the paper does not publish one; this is our choice):
    ``pixel_opt`` (e.g. L1) on the restored image, plus, with ``noise_map_opt``, a weighted L1 between every
    stage's noise map u_k and the pair's noise-level map ``noise_level_map(lq, gt, window)``::

        noise_map_opt:
          loss_weight: 0.1        # overall weight
          window: 7               # box size of the local std
          stage_weights: ~        # one weight per noise map (u_ini, u_1, ...); default 1 each

    Validation/test options under ``val``: ``self_ensemble: true`` (x8 flips/rotations) and
    ``tile: {tile_size: 512, tile_overlap: 32}``; inference uses the network's fast ``restore`` when it has one.
    ``train.amp: none | bf16 | fp16`` runs the training forward pass in mixed precision (``senm_plugin.models.amp``).
    """

    def init_training_settings(self):
        super().init_training_settings()
        self.amp = Amp(self.opt['train'].get('amp'), self.device)
        noise_opt = self.opt['train'].get('noise_map_opt')
        self.noise_map_opt = None
        if noise_opt:
            unknown = set(noise_opt) - {'loss_weight', 'window', 'stage_weights'}
            if unknown:
                raise ValueError(f'noise_map_opt: unknown keys {sorted(unknown)}; '
                                 f'expected loss_weight, window, stage_weights')
            window = int(noise_opt.get('window', 7))
            if window < 1 or window % 2 == 0:
                raise ValueError(f'noise_map_opt.window must be an odd positive integer, got {window}')
            self.noise_map_opt = dict(
                loss_weight=float(noise_opt.get('loss_weight', 0.1)),
                window=window,
                stage_weights=noise_opt.get('stage_weights'))

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        loss_dict = OrderedDict()
        with self.amp.autocast():
            if self.noise_map_opt is not None:
                self.output, noise_maps = self.net_g(self.lq, return_noise_maps=True)
            else:
                self.output, noise_maps = self.net_g(self.lq), []
        self.output, noise_maps = to_float32(self.output), [to_float32(u) for u in noise_maps]  # losses in float32
        l_total = 0
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if noise_maps:
            l_noise = self._noise_map_loss(noise_maps)
            l_total += l_noise
            loss_dict['l_noise_map'] = l_noise
        if not torch.isfinite(l_total):
            get_root_logger().warning(f'Iteration {current_iter}: non-finite loss {l_total.item()}; step skipped.')
            self.log_dict = self.reduce_loss_dict(loss_dict)
            return
        self.amp.backward(l_total)
        self.amp.step(self.optimizer_g)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _noise_map_loss(self, noise_maps):
        opt = self.noise_map_opt
        weights = opt['stage_weights'] or [1.0] * len(noise_maps)
        if len(weights) != len(noise_maps):
            raise ValueError(f'noise_map_opt.stage_weights has {len(weights)} entries but the network returns '
                             f'{len(noise_maps)} noise maps (one per stage)')
        with torch.no_grad():
            target = noise_level_map(self.lq, self.gt, opt['window'])
        loss = sum(w * F.l1_loss(u, target) for w, u in zip(weights, noise_maps))
        return opt['loss_weight'] * loss

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        val_opt = self.opt.get('val') or {}
        tile = val_opt.get('tile') or {}
        bare = self.get_bare_model(net)
        with torch.no_grad():
            if hasattr(bare, 'restore'):
                self.output = bare.restore(
                    self.lq,
                    tile_size=tile.get('tile_size'),
                    tile_overlap=tile.get('tile_overlap', 32),
                    use_self_ensemble=val_opt.get('self_ensemble', False),
                    channels_last=self.device.type == 'cpu')
            else:
                self.output = net(self.lq)
        if was_training:
            net.train()
