"""Validation of a SeNM-VAE in training: noisy images generated from the clean validation images and scored against
the real ones, the denoise path scored against the clean ones, image grids (a mixin of ``SeNMVAEModel``)."""
from collections import OrderedDict
from os import path as osp

import numpy as np
import torch
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import imwrite, tensor2img
from tqdm import tqdm

VAL_METRIC_PAIRS = ('noise', 'denoise')


class SeNMVAEValidation:
    """``test``, ``nondist_validation`` and the visuals of SeNMVAEModel (which provides the networks and options)."""

    def val_noise_level(self, clean, noisy):
        """Level for generating the validation noisy images: val option ``noise_level`` ('pair', 'estimate' or a
        number; default 'pair' = std of the real noise of each pair)."""
        choice = self.opt.get('val', {}).get('noise_level', 'pair')
        if choice == 'pair':
            return torch.std(noisy - clean, dim=(1, 2, 3))
        if choice == 'estimate':
            return self.net_le(noisy).flatten()
        return float(choice)

    def test(self):
        """Generated noisy image (fixed seed per validation image) and denoised estimate for the fed pair."""
        net_g, net_le = self.get_bare_model(self.net_g), self.get_bare_model(self.net_le)
        net_g.eval()
        net_le.eval()
        seed = self.opt.get('val', {}).get('seed', 0) + getattr(self, '_val_index', 0)
        devices = [self.device] if self.device.type == 'cuda' else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            self.generated = net_g.translate(self.gt, self.val_noise_level(self.gt, self.lq),
                                             temperature=self.opt.get('val', {}).get('temperature', 1.0))
            self.denoised = net_g.denoise(self.lq)
        net_g.train()
        net_le.train()

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Noise metrics of generated vs real noisy images, metrics of the denoise path and image grids.

        Each ``val.metrics`` entry is a BasicSR metric computed on ``pair: noise`` (default: ``img`` = generated,
        ``img2`` = real noisy, ``img_clean`` = clean) or ``pair: denoise`` (``img`` = denoised, ``img2`` = clean).
        """
        dataset_name = dataloader.dataset.opt['name']
        val_opt = self.opt['val']
        metrics = val_opt.get('metrics') or {}
        for name, opt_ in metrics.items():
            if opt_.get('pair', 'noise') not in VAL_METRIC_PAIRS:
                raise ValueError(f'val.metrics.{name}.pair must be one of {VAL_METRIC_PAIRS}, got {opt_["pair"]!r}')
        if metrics:
            self._initialize_best_metric_results(dataset_name)
        self.metric_results = {name: 0. for name in metrics}
        num_tb = val_opt.get('num_tb_images', 4)
        gain = val_opt.get('noise_gain', 4.)
        pbar = tqdm(total=len(dataloader), unit='image') if val_opt.get('pbar', False) else None
        count = 0
        for idx, val_data in enumerate(dataloader):
            self._val_index = idx
            self.feed_data(val_data)
            self.test()
            for b in range(self.gt.shape[0]):
                tensors = (self.gt, self.lq, self.generated, self.denoised)
                clean, real, gen, den = (t[b:b + 1].detach().cpu() for t in tensors)
                imgs = {'clean': tensor2img(clean), 'real': tensor2img(real), 'gen': tensor2img(gen),
                        'den': tensor2img(den)}
                data = {
                    'noise': {'img': imgs['gen'], 'img2': imgs['real'], 'img_clean': imgs['clean']},
                    'denoise': {'img': imgs['den'], 'img2': imgs['clean']}
                }
                for name, opt_ in metrics.items():
                    opt_ = {k: v for k, v in opt_.items() if k not in ('pair', 'better')}
                    self.metric_results[name] += calculate_metric(data[metrics[name].get('pair', 'noise')], opt_)
                name = osp.splitext(osp.basename(val_data['lq_path'][b]))[0] if 'lq_path' in val_data else str(count)
                if save_img:
                    noise = tensor2img((gen - clean) * gain + 0.5)
                    grid = np.concatenate([imgs['clean'], imgs['real'], imgs['gen'], noise], axis=1)
                    imwrite(grid, osp.join(self.opt['path']['visualization'], name, f'{name}_{current_iter}.png'))
                    if tb_logger is not None and count < num_tb:
                        tb_logger.add_image(f'{dataset_name}/{name}', grid[..., ::-1].copy(), current_iter,
                                            dataformats='HWC')
                count += 1
            if pbar is not None:
                pbar.update(1)
        if pbar is not None:
            pbar.close()
        del self.generated, self.denoised
        self._val_index = 0
        if metrics:
            for name in self.metric_results:
                self.metric_results[name] /= max(count, 1)
                self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    _log_validation_metric_values = SRModel._log_validation_metric_values

    def get_current_visuals(self):
        out = OrderedDict(gt=self.gt.detach().cpu(), lq=self.lq.detach().cpu())
        if hasattr(self, 'generated'):
            out['result'] = self.generated.detach().cpu()
        return out
