"""Training model of SeNM-VAE: the semi-supervised objective of Eq. (9)-(11) on paired / source / target samples."""
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from senm_plugin.domains import PAIRED, TARGET
from senm_plugin.archs.senmvae_blocks import to_float32
from senm_plugin.heap import retain_heap_for_training
from senm_plugin.models.amp import Amp
from senm_plugin.models.senmvae_validation import SeNMVAEValidation

# Reference settings (zhengdihan/SeNM-VAE, SIDD/options/train_*_paired_data.json and models/model_senmvae.py).
DEFAULT_TRAIN = {
    'kl_zn_weight': 1e-2,  # w_n on KL(q(zn|y,z) || p(zn|z)) ("KL_weight")
    'kl_anneal_iters': 10000,  # linear KL annealing of w_n ("KL_anneal_maxiter"); 0 disables it
    'kl_z_weight': 1e-7,  # lambda on KL(q(z|y) || q(z|x)), applied on top of w_n ("KLZ_weight")
    'grad_clip': 200.,  # max gradient norm of net_g
    'grad_skip_norm': 150.,  # skip the generator step when the norm before clipping is >= this
    'net_d_iters': 1,  # generator step every net_d_iters iterations ("D_update_ratio")
    'net_d_init_iters': 0,  # no generator step for the first iterations ("D_init_iters")
    'paired_only': False,  # fully paired training (Loss_p only): every sample is treated as paired
    'max_skipped_steps': 20,  # stop the run after this many generator steps in a row were skipped; 0 = never
}
# train options read by BasicSR's pipeline or by this model besides DEFAULT_TRAIN
OTHER_TRAIN_KEYS = ('optim_g', 'optim_d', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'level_opt',
                    'perceptual_opt', 'gan_opt', 'retain_heap', 'amp')


class TrainingDivergedError(RuntimeError):
    """Training can no longer make progress: generator steps keep being skipped or the weights are non-finite."""


@MODEL_REGISTRY.register()
class SeNMVAEModel(SeNMVAEValidation, BaseModel):
    """SeNM-VAE with its noise-level estimator (``network_le``) and PatchGAN (``network_d``) for BasicSR training.

    Loss (reference defaults): MSE(x_hat, x) on paired+source, MSE(y_hat, y) + w_n KL(zn) + LPIPS + RaGAN on
    paired+target, w_n lambda KL(q(z|y) || q(z|x)) and |sigma - sigma_hat| on paired; sigma = std(y - x) for paired
    samples, the estimator's sigma_hat for target ones. Every weight is a ``train`` option (see DEFAULT_TRAIN).
    """

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = self._build('network_g', 'g')
        self.net_le = self._build('network_le', 'le', {'type': 'NoiseLevelNet'})
        self.skipped = {'g_nonfinite_loss': 0, 'g_nonfinite_grad': 0, 'g_large_grad': 0, 'd_nonfinite': 0,
                        'g_fp16_overflow': 0}
        self.amp = Amp(None, self.device)
        self.skip_run = []  # (iteration, reason) of the generator steps skipped in a row up to now
        if self.is_train:
            self.init_training_settings()

    def _build(self, key, label, default=None):
        """Build, place and (optionally) load one network from ``opt[key]`` / ``path.pretrain_<key>``."""
        if key not in self.opt and default is not None:
            self.opt[key] = dict(default)
        net = self.model_to_device(build_network(self.opt[key]))
        self.print_network(net)
        load_path = self.opt['path'].get(f'pretrain_{key}')
        if load_path is not None:
            self.load_network(net, load_path, self.opt['path'].get(f'strict_load_{label}', True),
                              self.opt['path'].get(f'param_key_{label}', 'params'))
        return net

    def init_training_settings(self):
        train_opt = self.opt['train']
        unknown = sorted(set(train_opt) - set(DEFAULT_TRAIN) - set(OTHER_TRAIN_KEYS))
        if unknown:
            raise ValueError(f'SeNMVAEModel: unknown train options {unknown}; known: '
                             f'{sorted(DEFAULT_TRAIN) + sorted(OTHER_TRAIN_KEYS)}')
        if train_opt.get('gan_opt') and not train_opt.get('optim_d'):
            raise ValueError('SeNMVAEModel: train.gan_opt needs train.optim_d for the discriminator')
        self.train_opt = {k: train_opt.get(k, v) for k, v in DEFAULT_TRAIN.items()}
        self.amp = Amp(train_opt.get('amp'), self.device)
        self.net_g.train()
        self.net_le.train()
        self.cri_pix = build_loss(train_opt.get('pixel_opt', {'type': 'MSELoss'})).to(self.device)
        self.cri_level = build_loss(train_opt.get('level_opt', {'type': 'L1Loss'})).to(self.device)
        self.cri_perceptual = build_loss(train_opt['perceptual_opt']).to(self.device) \
            if train_opt.get('perceptual_opt') else None
        self.cri_gan = build_loss(train_opt['gan_opt']).to(self.device) if train_opt.get('gan_opt') else None
        self.net_d = None
        if self.cri_gan is not None:
            self.net_d = self._build('network_d', 'd', {'type': 'PatchGANDiscriminator'})
            self.net_d.train()
        self.setup_optimizers()
        self.setup_schedulers()
        retain_heap_for_training(train_opt, self.device)  # fewer page faults per CPU step (benchmarks/RESULTS.md)

    def setup_optimizers(self):
        train_opt = self.opt['train']
        # as the reference, one optimizer holds the VAE and the noise-level estimator
        params = [p for net in (self.net_g, self.net_le) for p in net.parameters() if p.requires_grad]
        optim_opt = dict(train_opt['optim_g'])
        self.optimizer_g = self.get_optimizer(optim_opt.pop('type'), params, **optim_opt)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_opt = dict(train_opt['optim_d'])
            self.optimizer_d = self.get_optimizer(optim_opt.pop('type'), self.net_d.parameters(), **optim_opt)
            self.optimizers.append(self.optimizer_d)

    def feed_data(self, data):
        self.gt = data['gt'].to(self.device)
        self.lq = data['lq'].to(self.device)
        paired_only = self.opt.get('train', {}).get('paired_only', False)
        if 'domain' in data and not paired_only:
            self.domain = data['domain'].reshape(-1).long().to(self.device)
        else:
            self.domain = torch.full((self.gt.shape[0], ), PAIRED, dtype=torch.long, device=self.device)

    def kl_zn_weight(self, current_iter):
        """w_n at ``current_iter``: linear annealing from 0 over ``kl_anneal_iters`` iterations (paper Sec. 4.2)."""
        weight, anneal = self.train_opt['kl_zn_weight'], self.train_opt['kl_anneal_iters']
        return weight * min(current_iter / anneal, 1.) if anneal and anneal > 0 else weight

    def compute_losses(self, current_iter, mix_x=None, mix_y=None, deterministic=False):
        """Generator loss terms of this batch (only those its domains need); returns (terms dict, outputs)."""
        x, y, domain = self.gt, self.lq, self.domain
        idx_p = torch.nonzero(domain == PAIRED).flatten()
        idx_y = torch.nonzero((domain == PAIRED) | (domain == TARGET)).flatten()
        is_paired_y = domain.index_select(0, idx_y) == PAIRED
        # degradation level: sigma = std(y - x) for paired samples, the estimator's sigma_hat for target ones
        sigma = torch.std(y - x, dim=(1, 2, 3))
        level = sigma.detach().clone()
        terms = OrderedDict()
        if idx_y.numel():
            with self.amp.autocast():
                sigma_hat = to_float32(self.net_le(y.index_select(0, idx_y))).flatten()
            level = level.index_copy(0, idx_y, torch.where(is_paired_y, sigma.index_select(0, idx_y), sigma_hat))
            if idx_p.numel():
                terms['l_level'] = self.cri_level(sigma_hat[is_paired_y], sigma.index_select(0, idx_p))
        with self.amp.autocast():
            out = self.net_g(x, y, level, domain, mix_x=mix_x, mix_y=mix_y, deterministic=deterministic)
        out = {k: to_float32(v) if v.is_floating_point() else v for k, v in out.items()}  # losses in float32
        w_n = self.kl_zn_weight(current_iter)
        if out['x_idx'].numel():
            terms['l_rec_x'] = self.cri_pix(out['x_hat'], x.index_select(0, out['x_idx']))
        if out['y_idx'].numel():
            y_rows = y.index_select(0, out['y_idx'])
            terms['l_rec_y'] = self.cri_pix(out['y_hat'], y_rows)
            terms['l_kl_zn'] = w_n * out['kl_zn'].mean()
            if self.cri_perceptual is not None:
                terms['l_percep'] = self.cri_perceptual(out['y_hat'], y_rows)
            if self.cri_gan is not None:
                terms['l_g_gan'] = self.cri_gan(self.net_d(y_rows).detach(), self.net_d(out['y_hat']), is_disc=False)
        if out['z_idx'].numel():
            terms['l_kl_z'] = w_n * self.train_opt['kl_z_weight'] * out['kl_z'].mean()
        return terms, out

    def optimize_parameters(self, current_iter):
        log = OrderedDict()
        if self.net_d is not None:
            for p in self.net_d.parameters():
                p.requires_grad = False
        self.optimizer_g.zero_grad(set_to_none=True)
        step_g = (current_iter % self.train_opt['net_d_iters'] == 0
                  and current_iter > self.train_opt['net_d_init_iters'])
        terms, out = self.compute_losses(current_iter)
        self.y_hat, self.y_idx = out['y_hat'], out['y_idx']
        if step_g:
            log.update(self._step_generator(terms, current_iter))
        for name in ('l_rec_x', 'l_rec_y', 'l_kl_zn', 'l_kl_z', 'l_level', 'l_percep', 'l_g_gan'):
            # every key on every iteration (0 when the batch has no sample for it): DDP reduces the same keys
            log[name] = terms[name].detach() if name in terms else torch.zeros((), device=self.device)
        log['kl_zn_weight'] = torch.tensor(self.kl_zn_weight(current_iter), device=self.device)
        if self.net_d is not None:
            log.update(self._step_discriminator())
        for name, count in self.skipped.items():
            log[f'skipped_{name}'] = torch.tensor(float(count), device=self.device)
        self.log_dict = self.reduce_loss_dict(log)

    def _step_generator(self, terms, current_iter):
        """Backward, clip and step unless the loss or gradient norm is bad; the reason is counted and logged, and a
        run of ``max_skipped_steps`` skipped steps in a row stops training (``_check_skip_run``)."""
        l_total = sum(terms.values())
        log = OrderedDict(l_total=l_total.detach())
        reason, warn = None, True  # large-gradient skips are only counted, as before: they are common early on
        if not torch.isfinite(l_total):
            self.skipped['g_nonfinite_loss'] += 1
            bad = ', '.join(f'{k} = {v.item():g}' for k, v in terms.items() if not torch.isfinite(v))
            reason = f'non-finite loss term {bad}'
        else:
            self.amp.backward(l_total)
            self.amp.unscale(self.optimizer_g)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.train_opt['grad_clip'])
            le_norm = torch.nn.utils.clip_grad_norm_(self.net_le.parameters(), float('inf'))
            log['grad_norm'] = grad_norm.detach()
            finite = bool(torch.isfinite(grad_norm) and torch.isfinite(le_norm))
            if not finite and self.amp.scaler is not None:
                # fp16 overflow: the scaler lowers its scale and the next step tries again; not a divergence
                self.amp.skip()
                self.skipped['g_fp16_overflow'] += 1
                return log
            if not finite:
                self.skipped['g_nonfinite_grad'] += 1
                reason = f'non-finite gradient norm (net_g {grad_norm.item()}, net_le {le_norm.item()})'
            elif grad_norm.item() >= self.train_opt['grad_skip_norm']:
                self.skipped['g_large_grad'] += 1
                warn = False
                reason = (f'gradient norm {grad_norm.item():.4g} >= grad_skip_norm '
                          f'{self.train_opt["grad_skip_norm"]:g}; terms ' +
                          ', '.join(f'{k} = {v.item():.4g}' for k, v in terms.items()))
            else:
                self.amp.step(self.optimizer_g)
                self._check_weights(current_iter)
            if reason is not None:
                self.amp.skip()
        if reason is not None and warn:
            self._warn_skip(reason)
        self._check_skip_run(current_iter, reason)
        return log

    def _check_skip_run(self, current_iter, reason):
        """Track skipped generator steps in a row; raise once there are ``max_skipped_steps`` of them."""
        if reason is None:
            self.skip_run = []
            return
        self.skip_run.append((current_iter, reason))
        limit = self.train_opt['max_skipped_steps']
        if limit and len(self.skip_run) >= limit:
            first = self.skip_run[0][0]
            raise TrainingDivergedError(
                f'SeNMVAEModel: {len(self.skip_run)} generator steps in a row were skipped (iterations {first} to '
                f'{current_iter}); the last one: {reason}. The run has stopped rather than go on without learning; '
                f'the checkpoints saved before iteration {first} are intact. Lower train.optim_g.lr (or raise '
                f'train.kl_anneal_iters) and resume with --auto_resume, or set train.max_skipped_steps: 0 to go on.')

    def _check_weights(self, current_iter):
        """Raise if an optimizer step left a non-finite weight (nothing later could repair it)."""
        for net_label, net in (('net_g', self.net_g), ('net_le', self.net_le)):
            named = list(self.get_bare_model(net).named_parameters())
            finite = torch.stack([torch.isfinite(p).all() for _, p in named])
            if not bool(finite.all()):  # one device sync per network
                name = named[int(torch.nonzero(~finite)[0])][0]
                raise TrainingDivergedError(
                    f'SeNMVAEModel: iteration {current_iter}: the optimizer step made {net_label}.{name} non-finite. '
                    'The run has stopped; the checkpoints saved before are intact. Lower train.optim_g.lr and resume '
                    'with --auto_resume.')

    def _step_discriminator(self):
        """One RaGAN discriminator step on the real and reconstructed noisy images of this batch."""
        log = OrderedDict()
        for p in self.net_d.parameters():
            p.requires_grad = True
        self.optimizer_d.zero_grad(set_to_none=True)
        if not self.y_idx.numel():
            log['l_d'] = torch.zeros((), device=self.device)
            return log
        real = self.lq.index_select(0, self.y_idx)
        pred_real, pred_fake = self.net_d(real), self.net_d(self.y_hat.detach())
        l_d = self.cri_gan(pred_real, pred_fake, is_disc=True)
        if torch.isfinite(l_d):
            l_d.backward()
            self.optimizer_d.step()
        else:
            self.skipped['d_nonfinite'] += 1
            self._warn_skip(f'non-finite discriminator loss {l_d.item()}')
        log['l_d'] = l_d.detach()
        log['out_d_real'] = pred_real.detach().mean()
        log['out_d_fake'] = pred_fake.detach().mean()
        return log

    @staticmethod
    def _warn_skip(reason):
        get_root_logger().warning(f'SeNMVAEModel: step skipped: {reason}')

    def save(self, epoch, current_iter):
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_network(self.net_le, 'net_le', current_iter)
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)
