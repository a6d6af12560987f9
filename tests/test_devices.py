"""The same checks on every device this machine has (CPU always, CUDA where present): training steps with mixed
precision and seeded generation. On a CPU-only machine the CUDA cases are skipped; benchmarks/gpu_check.sh runs
them on a GPU."""
import contextlib
import math

import numpy as np
import pytest
import torch
import yaml

import senm_plugin  # noqa: F401
from basicsr.models import build_model
from helpers import REPO_ROOT
from senm_plugin.archs.senmvae_arch import SeNMVAE
from senm_plugin.noise.model import synthesize

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA'))]
pytestmark = pytest.mark.usefixtures('one_thread')


def build(option_file, tmp_path, device, amp):
    with open(f'{REPO_ROOT}/tests/data/{option_file}') as f:
        opt = yaml.safe_load(f)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, num_gpu=int(device == 'cuda'))
    opt['path'].update(experiments_root=str(tmp_path), models=str(tmp_path / 'models'),
                       training_states=str(tmp_path), visualization=str(tmp_path))
    opt['train']['amp'] = amp
    torch.manual_seed(0)
    return build_model(opt)


def amp_modes(device):
    return ['none', 'bf16'] + (['fp16'] if device == 'cuda' else [])


@pytest.mark.parametrize('device', DEVICES)
def test_senmvae_training_steps_in_every_precision(tmp_path, device):
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 3, 32, 32, generator=g)
    data = {'gt': gt, 'lq': (gt + 0.05 * torch.randn(gt.shape, generator=g)).clamp(0, 1), 'domain': torch.arange(3)}
    for amp in amp_modes(device):
        model = build('tiny_senm.yml', tmp_path / amp, device, amp)
        model.feed_data(data)
        for it in range(1, 4):
            model.optimize_parameters(it)
        assert math.isfinite(model.log_dict['l_rec_y']) and model.log_dict['skipped_g_nonfinite_loss'] == 0, amp
        params = list(model.net_g.parameters())
        assert all(p.device.type == device and p.dtype == torch.float32 and torch.isfinite(p).all() for p in params)


@pytest.mark.parametrize('device', DEVICES)
def test_scaoednet_training_steps_in_every_precision(tmp_path, device):
    gt = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for amp in amp_modes(device):
        model = build('tiny_scaoednet.yml', tmp_path / amp, device, amp)
        before = [p.detach().clone() for p in model.net_g.parameters()]
        model.feed_data({'lq': gt + 0.1 * torch.randn_like(gt), 'gt': gt})
        for it in range(1, 7):  # fp16 skips its first steps while the loss scale falls from 65536 to one that fits
            model.optimize_parameters(it)
        assert math.isfinite(model.log_dict['l_pix']), amp
        assert any(not torch.equal(a, b) for a, b in zip(before, model.net_g.parameters())), amp


@pytest.mark.parametrize('device', DEVICES)
def test_generation_is_seeded_per_image_on_the_device(device):
    torch.manual_seed(0)
    net = SeNMVAE(num_feat=8, num_latent_layers=[1, 1], zn_dim=4, num_grow_ch=8, zero_init_projections=False).to(device)
    net.eval()
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(3)]
    # on CUDA: one convolution algorithm whatever the batch size, and no TF32
    fixed = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
             if device == 'cuda' else contextlib.nullcontext())
    with torch.no_grad(), fixed:
        together = synthesize(net, imgs, [0.05] * 3, seed=7, batch_size=3, device=device)
        alone = synthesize(net, imgs[1:2], [0.05], seed=7, batch_size=1, device=device, indices=[1])
        other_seed = synthesize(net, imgs[1:2], [0.05], seed=8, batch_size=1, device=device, indices=[1])
    if device == 'cpu':
        np.testing.assert_array_equal(together[1], alone[0])
    else:  # a batch of 3 may still round differently from a batch of 1: equal up to one 8-bit step
        assert np.abs(together[1].astype(int) - alone[0]).max() <= 1
    assert np.abs(alone[0].astype(int) - other_seed[0]).max() > 1  # another seed, other noise
