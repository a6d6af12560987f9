"""ScaoedNetModel: noise-level target, losses, tiled/ensemble testing, tiny `basicsr train` and `basicsr test` runs."""
import copy
import glob
import os

import numpy as np
import pytest
import torch
import yaml

import senm_plugin  # noqa: F401
from basicsr.models import build_model
from senm_plugin.models.scaoednet_model import noise_level_map
from helpers import REPO_ROOT, folder_to_lmdb, run_basicsr, write_pairs

TINY_OPT = os.path.join(REPO_ROOT, 'tests', 'data', 'tiny_scaoednet.yml')


def load_tiny_opt():
    with open(TINY_OPT) as f:
        return yaml.safe_load(f)


def test_noise_level_map_closed_form():
    torch.manual_seed(0)
    gt = torch.rand(1, 3, 9, 9)
    assert torch.allclose(noise_level_map(gt + 0.2, gt, window=3), torch.zeros(1, 1, 9, 9), atol=1e-4)
    noise = torch.randn(1, 3, 9, 9)
    got = noise_level_map(gt + noise, gt, window=5)
    assert got.shape == (1, 1, 9, 9)
    patch = noise[0, :, 2:7, 2:7].reshape(3, -1).numpy().astype(np.float64)  # the box around pixel (4, 4)
    assert got[0, 0, 4, 4].item() == pytest.approx(patch.std(axis=1).mean(), rel=1e-4)
    corner = noise[0, :, :3, :3].reshape(3, -1).numpy().astype(np.float64)  # clipped at the border
    assert got[0, 0, 0, 0].item() == pytest.approx(corner.std(axis=1).mean(), rel=1e-4)


def make_model(tmp_path, **val):
    opt = load_tiny_opt()
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(experiments_root=str(tmp_path), models=str(tmp_path), training_states=str(tmp_path))
    opt['val'].update(val)
    return build_model(opt)


def test_losses_and_inference_modes(tmp_path):
    torch.manual_seed(0)
    model = make_model(tmp_path)
    gt = torch.rand(2, 3, 16, 16)
    model.feed_data({'lq': gt + 0.1 * torch.randn_like(gt), 'gt': gt})
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_pix', 'l_noise_map'}
    assert model.log_dict['l_noise_map'] > 0

    lq = torch.rand(1, 3, 20, 18)
    model.feed_data({'lq': lq})
    model.test()
    plain = model.output
    assert plain.shape == lq.shape and model.net_g.training  # back to training mode after validation
    model.opt['val']['tile'] = {'tile_size': 64, 'tile_overlap': 8}  # one tile: identical
    model.test()
    assert torch.allclose(model.output, plain, atol=1e-5)
    model.opt['val']['self_ensemble'] = True
    model.test()
    assert model.output.shape == lq.shape and not torch.allclose(model.output, plain, atol=1e-4)


def test_bad_noise_map_options(tmp_path):
    opt = load_tiny_opt()
    model = make_model(tmp_path)
    model.noise_map_opt['stage_weights'] = [1, 1, 1]
    gt = torch.rand(1, 3, 16, 16)
    model.feed_data({'lq': gt, 'gt': gt})
    with pytest.raises(ValueError, match='3 entries but the network returns 2'):
        model.optimize_parameters(1)
    opt['train']['noise_map_opt']['window'] = 4
    with pytest.raises(ValueError, match='odd positive'):
        bad = copy.deepcopy(opt)
        bad.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
        build_model(bad)


def test_tiny_train_and_test(tmp_path):
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'train'), num=4, size=24)
    # odd-sized validation images: padded and cropped back by the network
    val_gt, val_lq = write_pairs(str(tmp_path / 'val'), num=4, size=33, seed=1)
    val_gt_lmdb = folder_to_lmdb(val_gt, str(tmp_path / 'val_gt.lmdb'))
    val_lq_lmdb = folder_to_lmdb(val_lq, str(tmp_path / 'val_lq.lmdb'))

    opt = load_tiny_opt()
    opt['name'] = 'tiny_scaoednet_test_run'
    opt['datasets']['train'].update(dataroot_gt=gt_dir, dataroot_lq=lq_dir)
    opt['datasets']['val'].update(dataroot_gt=val_gt_lmdb, dataroot_lq=val_lq_lmdb)
    train_yml = tmp_path / 'train.yml'
    train_yml.write_text(yaml.safe_dump(opt))
    run_basicsr(['train', '-opt', str(train_yml)], cwd=str(tmp_path))

    exp = tmp_path / 'experiments' / opt['name']
    ckpt = exp / 'models' / 'net_g_4.pth'
    assert ckpt.is_file() and (exp / 'training_states' / '4.state').is_file()
    log = open(glob.glob(str(exp / 'train_*.log'))[0]).read()
    assert 'l_noise_map' in log and '# psnr' in log and '# ssim' in log

    test_opt = {
        'name': 'tiny_scaoednet_test',
        'model_type': 'ScaoedNetModel',
        'scale': 1,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'test_1': dict(opt['datasets']['val'], name='val_lmdb'),
            'test_2': {
                'name': 'val_disk',
                'type': 'PairedImageDataset',
                'dataroot_gt': val_gt,
                'dataroot_lq': val_lq,
                'io_backend': {'type': 'disk'}
            }
        },
        'network_g': opt['network_g'],
        'path': {'pretrain_network_g': str(ckpt), 'param_key_g': 'params', 'strict_load_g': True},
        'val': dict(
            opt['val'], save_img=True, suffix=None, self_ensemble=True, tile={
                'tile_size': 16,
                'tile_overlap': 4
            }),
    }
    test_yml = tmp_path / 'test.yml'
    test_yml.write_text(yaml.safe_dump(test_opt))
    run_basicsr(['test', '-opt', str(test_yml)], cwd=str(tmp_path))
    results = tmp_path / 'results' / 'tiny_scaoednet_test'
    log = open(glob.glob(str(results / 'test_*.log'))[0]).read()
    assert log.count('# psnr') == 2 and 'val_lmdb' in log and 'val_disk' in log
    assert len(glob.glob(str(results / 'visualization' / 'val_disk' / '*.png'))) == 4


def test_bf16_training_step(tmp_path):
    gt = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    data = {'lq': gt + 0.1 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1)), 'gt': gt}
    logs = {}
    for mode in ('none', 'bf16'):
        torch.manual_seed(0)
        opt = load_tiny_opt()
        opt['train']['amp'] = mode
        opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
        opt['path'].update(experiments_root=str(tmp_path), models=str(tmp_path), training_states=str(tmp_path))
        model = build_model(opt)
        model.feed_data(data)
        model.optimize_parameters(1)
        logs[mode] = {k: float(v) for k, v in model.log_dict.items()}
        assert all(p.dtype == torch.float32 for p in model.net_g.parameters())
    for name in ('l_pix', 'l_noise_map'):
        assert logs['bf16'][name] == pytest.approx(logs['none'][name], rel=0.05), name
    assert logs['bf16']['l_pix'] != logs['none']['l_pix']  # the forward did run in bfloat16
