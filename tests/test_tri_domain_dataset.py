"""TriDomainDataset: domain mix, determinism, DDP sampling, aligned augmentation, conversions and errors."""
import math
import os
import random

import cv2
import numpy as np
import pytest
import torch

import senm_plugin  # noqa: F401
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils.registry import DATASET_REGISTRY
from senm_plugin.tools import prepare
from senm_plugin.data.schedule import domain_schedule
from senm_plugin.domains import PAIRED, SOURCE, TARGET

OFFSET = 10  # lq = gt + OFFSET (in 8-bit levels) in every pair written here


def _write(folder, names, size=24, seed=0, offset=None):
    """Random (non-symmetric) uint8 images in [0, 200]; with ``offset`` also a partner folder ``folder + '_lq'``."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    if offset is not None:
        os.makedirs(folder + '_lq', exist_ok=True)
    for name in names:
        img = rng.integers(0, 201, (size, size + 4, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(folder, name), img)
        if offset is not None:
            cv2.imwrite(os.path.join(folder + '_lq', name), img + offset)
    return folder


@pytest.fixture
def tri(tmp_path):
    """Disk options with 2 paired, 9 source and 5 target images of 24x28."""
    gt = _write(str(tmp_path / 'pgt'), [f'p{i}.png' for i in range(2)], offset=OFFSET)
    src = _write(str(tmp_path / 'src'), [f's{i}.png' for i in range(9)], seed=1)
    tgt = _write(str(tmp_path / 'tgt'), [f't{i}.png' for i in range(5)], seed=2)
    return dict(name='tri', type='TriDomainDataset', phase='train', dataroot_paired_gt=gt,
                dataroot_paired_lq=gt + '_lq', dataroot_source=src, dataroot_target=tgt, io_backend={'type': 'disk'},
                gt_size=16, use_hflip=True, use_rot=True)


def _make(opt):
    return DATASET_REGISTRY.get('TriDomainDataset')(dict(opt))


def test_schedule_shares_cover_and_seed():
    domain, item = domain_schedule([2, 9, 5], [1, 1, 1], seed=3)
    assert len(domain) == 27  # max_d ceil(N_d / p_d) = 9 * 3
    assert np.bincount(domain, minlength=3).tolist() == [9, 9, 9]
    for d, n in enumerate([2, 9, 5]):
        assert set(item[domain == d].tolist()) == set(range(n))  # every item appears in an epoch
    again = domain_schedule([2, 9, 5], [1, 1, 1], seed=3)
    other = domain_schedule([2, 9, 5], [1, 1, 1], seed=4)
    assert np.array_equal(domain, again[0]) and np.array_equal(item, again[1])
    assert not (np.array_equal(domain, other[0]) and np.array_equal(item, other[1]))
    # 10 paired items among 48,000 + 48,000 still get a third of the draws
    domain, _ = domain_schedule([10, 48000, 48000], [1, 1, 1], seed=0)
    assert np.bincount(domain).tolist() == [48000] * 3
    domain, _ = domain_schedule([10, 0, 40], [2, 0, 1], seed=0, num_samples=1000)
    assert np.bincount(domain, minlength=3).tolist() == [667, 0, 333]


def test_frequencies_over_random_batches(tri):
    ds = _make(dict(tri, domain_frequency={'paired': 2, 'source': 1, 'target': 1}))
    counts = np.bincount(ds.domain, minlength=3)
    assert counts[PAIRED] == 2 * counts[SOURCE] and abs(counts[SOURCE] - counts[TARGET]) <= 1
    sampler = EnlargedSampler(ds, 1, 0, ratio=200)
    sampler.set_epoch(3)
    draws = ds.domain[list(sampler)[:600]]  # the first 75 batches of 8 of an enlarged epoch
    n = len(draws)
    for d, p in ((PAIRED, 0.5), (SOURCE, 0.25), (TARGET, 0.25)):
        assert abs((draws == d).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert _make(dict(tri, dataroot_source=None, dataroot_target=None)).domain.max() == PAIRED  # fully paired
    assert set(_make(dict(tri, domain_frequency=[0, 1, 1])).domain.tolist()) == {SOURCE, TARGET}


def test_enlarged_sampler_two_ranks_disjoint(tri):
    ds = _make(tri)
    ranks = [EnlargedSampler(ds, 2, rank, ratio=4) for rank in range(2)]
    for s in ranks:
        s.set_epoch(5)
    idx = [list(s) for s in ranks]
    assert len(idx[0]) == len(idx[1]) == math.ceil(len(ds) * 4 / 2)
    # an enlarged epoch holds each index `ratio` times; the ranks split every copy between them
    positions = [set(range(r, 2 * len(idx[0]), 2)) for r in range(2)]
    assert not positions[0] & positions[1]
    counts = np.bincount(idx[0] + idx[1], minlength=len(ds))
    assert counts.min() == counts.max() == 4
    # the same index gives the same (domain, item) on every rank: the stream depends on (seed, index) only
    other = _make(tri)
    assert np.array_equal(ds.domain, other.domain) and np.array_equal(ds.item, other.item)
    for r in range(2):
        share = np.bincount(ds.domain[idx[r]], minlength=3) / len(idx[r])
        assert np.all(np.abs(share - 1 / 3) < 0.15)
    # rank-disjoint samples of one batch really come out of the dataset
    random.seed(0)
    a, b = ds[idx[0][0]], ds[idx[1][0]]
    assert a['gt'].shape == b['gt'].shape == (3, 16, 16)


def test_pairs_stay_aligned_under_dihedral_transforms(tri):
    ds = _make(tri)
    random.seed(0)
    seen = set()
    raw = cv2.imread(os.path.join(tri['dataroot_paired_gt'], 'p0.png'))[..., ::-1]  # RGB
    for i in np.flatnonzero(ds.domain == PAIRED)[:40]:
        out = ds[int(i)]
        assert out['gt'].dtype == torch.float32 and out['gt'].shape == (3, 16, 16)
        assert 0 <= out['gt'].min() and out['lq'].max() <= 1
        torch.testing.assert_close(out['lq'] - out['gt'], torch.full_like(out['gt'], OFFSET / 255.), atol=1e-6, rtol=0)
        if out['gt_path'].endswith('p0.png'):  # find which of the 8 transforms of which crop it is
            patch = (out['gt'].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            for t in range(8):
                cand = np.rot90(patch, t % 4)
                cand = cand[:, ::-1] if t >= 4 else cand
                hits = [(y, x) for y in range(raw.shape[0] - 15) for x in range(raw.shape[1] - 15)
                        if np.array_equal(raw[y:y + 16, x:x + 16], cand)]
                if hits:
                    seen.add(t)
                    break
            else:
                pytest.fail('gt patch is no flip/rotation of a crop of its image')
    assert len(seen) >= 3  # the transforms are really applied
    for i in np.flatnonzero(ds.domain != PAIRED)[:10]:
        out = ds[int(i)]
        assert torch.equal(out['gt'], out['lq']) and out['gt_path'] == out['lq_path']


def test_rgb_order_and_conversions(tmp_path):
    folder = tmp_path / 'odd'
    folder.mkdir()
    blue = np.zeros((20, 20, 3), np.uint8)
    blue[..., 0] = 200  # BGR blue
    cv2.imwrite(str(folder / 'blue.png'), blue)
    cv2.imwrite(str(folder / 'grey.png'), np.full((20, 20), 77, np.uint8))
    cv2.imwrite(str(folder / 'deep.png'), np.full((20, 20, 3), 256 * 90 + 3, np.uint16))
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 150, 0
    cv2.imwrite(str(folder / 'alpha.png'), rgba)
    ds = _make(dict(phase='train', dataroot_source=str(folder), io_backend={'type': 'disk'}, gt_size=20))
    got = {os.path.basename(ds[i]['gt_path']): ds[i]['gt'] for i in range(len(ds))}
    assert torch.allclose(got['blue.png'][2], torch.tensor(200 / 255.)) and got['blue.png'][0].max() == 0
    assert torch.allclose(got['grey.png'], torch.tensor(77 / 255.))  # grey -> 3 channels
    assert torch.allclose(got['deep.png'], torch.tensor(90 / 255.))  # 16-bit -> top 8 bits
    assert torch.allclose(got['alpha.png'][1], torch.tensor(150 / 255.))  # alpha dropped, colour kept


def test_validation_mode_and_lmdb_matches_disk(tri, tmp_path):
    out = str(tmp_path / 'lmdb')
    assert prepare.main(['folders', '--paired-gt', tri['dataroot_paired_gt'], '--paired-lq', tri['dataroot_paired_lq'],
                         '--source', tri['dataroot_source'], '--out', out, '--workers', '1']) == 0
    val = dict(tri, phase='val', center_crop=None)
    disk = _make(val)
    lmdb = _make(dict(val, io_backend={'type': 'lmdb'}, dataroot_paired_gt=f'{out}/paired_gt.lmdb',
                      dataroot_paired_lq=f'{out}/paired_lq.lmdb'))
    assert len(disk) == len(lmdb) == 2 and set(disk.domain.tolist()) == {PAIRED}
    for i in range(2):
        a, b = disk[i], lmdb[i]
        assert a['gt'].shape == (3, 24, 28) and torch.equal(a['gt'], b['gt']) and torch.equal(a['lq'], b['lq'])
        assert b['gt_path'] == f'p{i}'  # LMDB paths are keys, as in BasicSR
    crop = _make(dict(val, center_crop=16))[0]
    torch.testing.assert_close(crop['gt'], disk[0]['gt'][:, 4:20, 6:22])
    # train on the LMDBs (same images): seeded draws give the same stream twice
    opt = dict(tri, io_backend={'type': 'lmdb'}, dataroot_paired_gt=f'{out}/paired_gt.lmdb',
               dataroot_paired_lq=f'{out}/paired_lq.lmdb', dataroot_source=f'{out}/source.lmdb',
               dataroot_target=None, seed=7)
    streams = []
    for _ in range(2):
        ds = _make(opt)
        random.seed(1)
        streams.append(torch.stack([ds[i]['lq'] for i in range(len(ds))]))
    assert torch.equal(*streams)


def test_basicsr_dataloader_with_workers(tri):
    opt = dict(tri, num_worker_per_gpu=2, batch_size_per_gpu=4, dataset_enlarge_ratio=1)
    ds = build_dataset(opt)
    sampler = EnlargedSampler(ds, 1, 0, 1)
    loader = build_dataloader(ds, opt, num_gpu=0, dist=False, sampler=sampler, seed=10)
    batch = next(iter(loader))
    assert batch['gt'].shape == batch['lq'].shape == (4, 3, 16, 16)
    assert batch['domain'].dtype == torch.int64 and batch['domain'].shape == (4, )


def test_errors_name_the_file_or_key(tri, tmp_path):
    with pytest.raises(FileNotFoundError, match='dataroot_source'):
        _make(dict(tri, dataroot_source=str(tmp_path / 'nowhere')))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='dataroot_target.*no images'):
        _make(dict(tri, dataroot_target=str(tmp_path / 'empty')))
    os.rename(os.path.join(tri['dataroot_paired_lq'], 'p1.png'), os.path.join(tri['dataroot_paired_lq'], 'q1.png'))
    with pytest.raises(ValueError, match='do not match.*p1.*q1'):
        _make(tri)
    os.rename(os.path.join(tri['dataroot_paired_lq'], 'q1.png'), os.path.join(tri['dataroot_paired_lq'], 'p1.png'))
    with pytest.raises(ValueError, match='domain_frequency.*target.*dataroot_target'):
        _make(dict(tri, dataroot_target=None, domain_frequency=[1, 1, 1]))
    with pytest.raises(ValueError, match='dataroot_paired_lq'):
        _make(dict(tri, dataroot_paired_lq=None))
    with pytest.raises(ValueError, match='validation/test needs'):
        _make(dict(tri, phase='val', dataroot_paired_gt=None, dataroot_paired_lq=None))
    ds = _make(dict(tri, gt_size=26))
    with pytest.raises(ValueError, match=r'\.png: image is 24x28, smaller than gt_size 26'):
        ds[0]
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'broken.png').write_bytes(b'not a png at all')
    with pytest.raises(ValueError, match='broken.png: cannot be decoded'):
        _make(dict(tri, dataroot_source=str(bad), domain_frequency=[0, 1, 0]))[0]
    out = str(tmp_path / 'lm')
    prepare.main(['folders', '--source', tri['dataroot_source'], '--out', out, '--workers', '1'])
    with pytest.raises(ValueError, match='source.lmdb:s0: image is 24x28, smaller than gt_size 32'):
        _make(dict(tri, io_backend={'type': 'lmdb'}, dataroot_source=f'{out}/source.lmdb', dataroot_paired_gt=None,
                   dataroot_paired_lq=None, dataroot_target=None, gt_size=32))
    with pytest.raises(FileNotFoundError, match='meta_info.txt is missing'):
        _make(dict(tri, io_backend={'type': 'lmdb'}, dataroot_source=str(tmp_path), dataroot_paired_gt=None,
                   dataroot_paired_lq=None, dataroot_target=None))
