"""MixedPairDataset: shares of synthetic and real pairs, determinism, reading from folders and LMDBs, errors."""
import os
import random

import numpy as np
import pytest

from basicsr.utils.registry import DATASET_REGISTRY
from helpers import REPO_ROOT, folder_to_lmdb, write_pairs
from senm_plugin.data.mixed_pair_dataset import MixedPairDataset

SYNTH_SIGMA, REAL_SIGMA = 4.0, 20.0


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    """20 synthetic pairs (folders, noise std 4) and 3 real pairs (LMDB, noise std 20), 32x32."""
    root = tmp_path_factory.mktemp('mixed')
    synth_gt, synth_lq = write_pairs(str(root / 'synth'), num=20, size=32, sigma=SYNTH_SIGMA, seed=1)
    real_gt, real_lq = write_pairs(str(root / 'real'), num=3, size=32, sigma=REAL_SIGMA, seed=2)
    real_gt = folder_to_lmdb(real_gt, str(root / 'real_gt.lmdb'))
    real_lq = folder_to_lmdb(real_lq, str(root / 'real_lq.lmdb'))
    return {'synth_gt': synth_gt, 'synth_lq': synth_lq, 'real_gt': real_gt, 'real_lq': real_lq}


def _opt(roots, **kw):
    opt = {'type': 'MixedPairDataset', 'phase': 'train', 'dataroot_synth_gt': roots['synth_gt'],
           'dataroot_synth_lq': roots['synth_lq'], 'dataroot_real_gt': roots['real_gt'],
           'dataroot_real_lq': roots['real_lq'], 'real_ratio': 0.2, 'gt_size': 16, 'use_hflip': True,
           'use_rot': True}
    opt.update(kw)
    return opt


def test_registered_and_exact_share_per_epoch(roots):
    ds = DATASET_REGISTRY.get('MixedPairDataset')(_opt(roots))
    # default length: every pair appears: max(20 / 0.8, 3 / 0.2) = 25 indices, 5 of them real
    assert len(ds) == 25 and int((ds.origin == 1).sum()) == 5
    assert set(ds.item[ds.origin == 1]) == {0, 1, 2} and set(ds.item[ds.origin == 0]) == set(range(20))
    big = MixedPairDataset(_opt(roots, num_samples=1000, real_ratio=0.35))
    assert int((big.origin == 1).sum()) == 350


def test_ratio_holds_for_random_draws(roots):
    """Indices drawn at random (as a shuffling sampler does) see real pairs with probability real_ratio."""
    ds = MixedPairDataset(_opt(roots, num_samples=5000, real_ratio=0.3))
    rng = np.random.default_rng(0)
    draws = 4000
    idx = rng.integers(0, len(ds), draws)
    share = (ds.origin[idx] == 1).mean()
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / draws)  # binomial, 4 standard deviations
    # and the items read really come from the right source: the noise std tells them apart
    random.seed(0)
    stds = {0: [], 1: []}
    for i in range(40):
        item = ds[i]
        assert item['gt'].shape == item['lq'].shape == (3, 16, 16)
        stds[item['origin']].append(float((item['lq'] - item['gt']).std() * 255))
    assert stds[0] and stds[1]
    assert max(stds[0]) < 8 < min(stds[1])


def test_deterministic_under_seed(roots):
    a, b = MixedPairDataset(_opt(roots, seed=3)), MixedPairDataset(_opt(roots, seed=3))
    c = MixedPairDataset(_opt(roots, seed=4))
    np.testing.assert_array_equal(a.origin, b.origin)
    np.testing.assert_array_equal(a.item, b.item)
    assert not (np.array_equal(a.origin, c.origin) and np.array_equal(a.item, c.item))
    random.seed(7)
    x = a[5]
    random.seed(7)
    y = b[5]
    assert x['gt_path'] == y['gt_path'] and (x['lq'] == y['lq']).all()


def test_sources_list_weights_and_val_phase(roots):
    sources = [{'name': 'synth', 'dataroot_gt': roots['synth_gt'], 'dataroot_lq': roots['synth_lq'],
                'io_backend': {'type': 'disk'}, 'weight': 1},
               {'name': 'real', 'dataroot_gt': roots['real_gt'], 'dataroot_lq': roots['real_lq'],
                'io_backend': {'type': 'lmdb'}, 'weight': 3}]
    ds = MixedPairDataset({'sources': sources, 'gt_size': 16, 'num_samples': 400, 'phase': 'train'})
    assert int((ds.origin == 1).sum()) == 300
    ds = MixedPairDataset({'sources': sources, 'ratios': [1, 0], 'gt_size': 16, 'num_samples': 100})
    assert int((ds.origin == 1).sum()) == 0
    val = MixedPairDataset({'sources': sources, 'phase': 'val'})
    assert len(val) == 23
    item = val[22]
    assert item['origin'] == 1 and item['gt_path'] == '002' and item['gt'].shape == (3, 32, 32)


def test_synth_only_and_errors(roots):
    only = MixedPairDataset({'dataroot_synth_gt': roots['synth_gt'], 'dataroot_synth_lq': roots['synth_lq'],
                             'gt_size': 16})
    assert len(only) == 20 and not only.origin.any()
    with pytest.raises(ValueError, match='dataroot_real_gt and dataroot_real_lq'):
        MixedPairDataset(_opt(roots, dataroot_real_lq=None))
    with pytest.raises(ValueError, match='real_ratio must be in'):
        MixedPairDataset(_opt(roots, real_ratio=1.5))
    with pytest.raises(ValueError, match='gives real pairs a share'):
        MixedPairDataset({'dataroot_synth_gt': roots['synth_gt'], 'dataroot_synth_lq': roots['synth_lq'],
                          'gt_size': 16, 'real_ratio': 0.5})
    with pytest.raises(ValueError, match='gt_size'):
        MixedPairDataset(_opt(roots, gt_size=None))
    with pytest.raises(Exception, match='smaller than gt_size'):
        MixedPairDataset(_opt(roots, gt_size=64))


def test_synth_option_file_builds_the_dataset(roots):
    import yaml
    with open(os.path.join(REPO_ROOT, 'options', 'train', 'scaoednet_sidd_synth.yml')) as f:
        opt = yaml.safe_load(f)
    train = opt['datasets']['train']
    assert train['type'] == 'MixedPairDataset'
    train.update(dataroot_synth_gt=roots['synth_gt'], dataroot_synth_lq=roots['synth_lq'],
                 dataroot_real_gt=roots['real_gt'], dataroot_real_lq=roots['real_lq'], gt_size=16, phase='train')
    train['io_backend'] = {'type': 'auto'}
    train.pop('io_backend_synth', None)
    train.pop('io_backend_real', None)
    ds = MixedPairDataset(train)
    assert len(ds) > 0 and abs((ds.origin == 1).mean() - train['real_ratio']) < 0.05
