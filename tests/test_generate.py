"""`basicsr generate`: determinism across batch sizes, resuming, level modes, output formats and errors."""
import json
import os

import cv2
import numpy as np
import pytest
import yaml

from helpers import TINY_LEVEL_OPT, TINY_SENMVAE_OPT, run_basicsr, save_tiny_senmvae, write_pairs
from senm_plugin.errors import GenerateError
from senm_plugin.noise.levels import SIDD_LOG_SHOT_RANGE, plan_levels
from senm_plugin.tools.generate import main, run_generate

NET_OPT = json.dumps(TINY_SENMVAE_OPT)


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Checkpoints and a clean folder of 5 images: four 24x24 and one odd-sized 19x26."""
    root = tmp_path_factory.mktemp('gen')
    model, level_model, bare = save_tiny_senmvae(str(root / 'models'))
    gt_dir, lq_dir = write_pairs(str(root / 'pairs'), num=4, size=24)
    odd = cv2.resize(cv2.imread(os.path.join(gt_dir, '000.png')), (26, 19))
    cv2.imwrite(os.path.join(gt_dir, '004_odd.png'), odd)
    cv2.imwrite(os.path.join(lq_dir, '004_odd.png'), odd)
    return {'root': root, 'model': model, 'level_model': level_model, 'bare': bare, 'clean': gt_dir, 'noisy': lq_dir}


def _cfg(setup, out, **kw):
    cfg = {'model': setup['model'], 'input': setup['clean'], 'out': str(out), 'network_g': NET_OPT,
           'network_le': TINY_LEVEL_OPT, 'format': 'png', 'batch_size': 2, 'device': 'cpu'}
    cfg.update(kw)
    return cfg


def _png_bytes(folder):
    return {n: open(os.path.join(folder, n), 'rb').read() for n in sorted(os.listdir(folder))}


def _lmdb_records(path):
    import lmdb
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        records = dict(txn.cursor())
    env.close()
    return records


def test_same_seed_same_images_whatever_the_batch_size(setup, tmp_path):
    m1 = run_generate(_cfg(setup, tmp_path / 'a', batch_size=2), progress=False)
    m2 = run_generate(_cfg(setup, tmp_path / 'b', batch_size=5), progress=False)
    run_generate(_cfg(setup, tmp_path / 'c', seed=1), progress=False)
    a, b, c = (_png_bytes(tmp_path / d / 'lq') for d in 'abc')
    assert m1['complete'] and len(a) == 5
    assert a == b  # byte-identical whatever the batching
    assert [i['level'] for i in m1['images']] == [i['level'] for i in m2['images']]
    assert all(a[n] != c[n] for n in a)  # another seed, other noise
    # the odd-sized image comes back at its own size; gt is the clean input
    odd = cv2.imread(str(tmp_path / 'a' / 'lq' / '004_odd.png'))
    assert odd.shape == (19, 26, 3)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'a' / 'gt' / '004_odd.png')),
                                  cv2.imread(os.path.join(setup['clean'], '004_odd.png')))
    assert m1['images'][4]['key'] == '004_odd' and m1['images'][4]['size'] == [19, 26]
    # a bare state dict (reference format) gives the same images
    run_generate(_cfg(setup, tmp_path / 'd', model=setup['bare']), progress=False)
    assert _png_bytes(tmp_path / 'd' / 'lq') == a


def test_resume_lmdb_after_interruption(setup, tmp_path):
    whole = run_generate(_cfg(setup, tmp_path / 'whole', format='lmdb'), progress=False)
    part = run_generate(_cfg(setup, tmp_path / 'part', format='lmdb', batch_size=1), progress=False, _stop_after=2)
    assert not part['complete']
    assert not os.path.exists(tmp_path / 'part' / 'lq.lmdb')
    assert json.load(open(tmp_path / 'part' / 'manifest.json'))['complete'] is False
    assert len(os.listdir(tmp_path / 'part' / '_staging' / 'lq')) == 2
    (tmp_path / 'part' / '_staging' / 'lq' / 'junk.png.tmp').write_bytes(b'half a file')  # killed mid-write
    resumed = run_generate(_cfg(setup, tmp_path / 'part', format='lmdb', batch_size=3), progress=False)
    assert resumed['complete'] and whole['complete']
    assert not os.path.exists(tmp_path / 'part' / '_staging')
    for name in ('gt.lmdb', 'lq.lmdb'):
        assert _lmdb_records(str(tmp_path / 'part' / name)) == _lmdb_records(str(tmp_path / 'whole' / name))
        meta = (tmp_path / 'part' / name / 'meta_info.txt').read_text()
        assert meta == (tmp_path / 'whole' / name / 'meta_info.txt').read_text()
        assert '004_odd.png (19,26,3) 1' in meta
    # a finished output is left alone by a re-run
    again = run_generate(_cfg(setup, tmp_path / 'part', format='lmdb'), progress=False)
    assert again['fingerprint'] == whole['fingerprint']


def test_resume_png_regenerates_missing_files(setup, tmp_path):
    run_generate(_cfg(setup, tmp_path / 'o'), progress=False)
    before = _png_bytes(tmp_path / 'o' / 'lq')
    os.remove(tmp_path / 'o' / 'lq' / '001.png')
    os.remove(tmp_path / 'o' / 'lq' / '004_odd.png')
    run_generate(_cfg(setup, tmp_path / 'o', batch_size=4), progress=False)
    assert _png_bytes(tmp_path / 'o' / 'lq') == before


def test_lmdb_output_is_read_by_paired_image_dataset(setup, tmp_path):
    from basicsr.data.paired_image_dataset import PairedImageDataset
    run_generate(_cfg(setup, tmp_path / 'l', format='lmdb'), progress=False)
    run_generate(_cfg(setup, tmp_path / 'p', format='png'), progress=False)
    ds = PairedImageDataset({'dataroot_gt': str(tmp_path / 'l' / 'gt.lmdb'), 'dataroot_lq': str(tmp_path / 'l' /
                            'lq.lmdb'), 'io_backend': {'type': 'lmdb'}, 'phase': 'val', 'scale': 1})
    assert len(ds) == 5
    for item in ds:
        key = item['lq_path']
        lq = cv2.imread(str(tmp_path / 'p' / 'lq' / f'{key}.png'))[..., ::-1].transpose(2, 0, 1) / 255.
        gt = cv2.imread(os.path.join(setup['clean'], f'{key}.png'))[..., ::-1].transpose(2, 0, 1) / 255.
        np.testing.assert_allclose(item['lq'].numpy(), lq, atol=1e-6)
        np.testing.assert_allclose(item['gt'].numpy(), gt, atol=1e-6)


def test_level_modes(setup, tmp_path):
    fixed = run_generate(_cfg(setup, tmp_path / 'f', levels='fixed:0.03'), progress=False)
    assert [i['level'] for i in fixed['images']] == [0.03] * 5

    prior = run_generate(_cfg(setup, tmp_path / 's', levels='sidd-prior', seed=3), progress=False)
    levels = np.array([i['level'] for i in prior['images']])
    np.testing.assert_array_equal(levels, plan_levels('sidd-prior', None, 5, 3))
    assert len(set(levels)) == 5 and np.all(levels > np.sqrt(10**SIDD_LOG_SHOT_RANGE[0])) and np.all(levels < 0.5)

    # estimate: the net_le file beside net_g is found; each image gets one of the real images' estimates
    est = run_generate(_cfg(setup, tmp_path / 'e', levels=f'estimate:{setup["noisy"]}'), progress=False)
    from senm_plugin.data.image_set import ImageSet
    from senm_plugin.noise.levels import estimate_levels
    from senm_plugin.noise.model import load_level_net
    estimates = estimate_levels(load_level_net(setup['level_model'], TINY_LEVEL_OPT), ImageSet(setup['noisy']))
    assert est['settings']['estimates']['count'] == 5
    assert all(np.isclose(estimates, i['level']).any() for i in est['images'])
    mean = run_generate(_cfg(setup, tmp_path / 'm', levels=f'estimate:{setup["noisy"]}', level_pick='mean',
                             level_model=setup['level_model']), progress=False)
    np.testing.assert_allclose([i['level'] for i in mean['images']], [estimates.mean()] * 5)
    # the level changes the noise
    assert _png_bytes(tmp_path / 'f' / 'lq') != _png_bytes(tmp_path / 'm' / 'lq')


def test_highpass_levels_need_pairs_and_follow_the_scaled_estimate(setup, tmp_path):
    from senm_plugin.data.image_set import ImageSet
    from senm_plugin.noise.level_estimate import fit_scale, highpass_sigma
    # the bare checkpoint has no net_le beside it: the high-pass estimator does not need one
    cfg = _cfg(setup, tmp_path / 'h', model=setup['bare'], levels=f'estimate:{setup["noisy"]}',
               level_estimator='highpass')
    with pytest.raises(GenerateError, match='--level-estimator highpass needs --calibrate'):
        run_generate(cfg, progress=False)
    manifest = run_generate(dict(cfg, calibrate=[setup['clean'], setup['noisy']]), progress=False)
    clean, noisy = ImageSet(setup['clean']), ImageSet(setup['noisy'])
    scale = fit_scale([clean.read(i) for i in range(5)], [noisy.read(i) for i in range(5)])
    expected = [scale * highpass_sigma(noisy.read(i)) / 255 for i in range(5)]
    assert manifest['settings']['level_estimator'] == 'highpass'
    assert manifest['settings']['level_scale'] == pytest.approx(scale)
    assert all(np.isclose(expected, i['level']).any() for i in manifest['images'])


def test_option_file_and_command_line(setup, tmp_path):
    opt = tmp_path / 'gen.yml'
    opt.write_text(yaml.safe_dump({'model': setup['bare'], 'input': setup['clean'], 'out': str(tmp_path / 'x'),
                                   'network_g': TINY_SENMVAE_OPT, 'levels': 'fixed:0.05', 'format': 'png',
                                   'device': 'cpu'}))
    proc = run_basicsr(['generate', '-opt', str(opt), '--batch-size', '3', '--normalize'], cwd=str(tmp_path))
    assert 'wrote 5 pairs' in proc.stdout
    manifest = json.load(open(tmp_path / 'x' / 'manifest.json'))
    assert manifest['settings']['normalize'] is True and manifest['complete'] is True
    # --normalize: each channel's mean moves to the clean image's (up to clipping and rounding)
    clean = cv2.imread(os.path.join(setup['clean'], '002.png')).astype(float)
    noisy = cv2.imread(str(tmp_path / 'x' / 'lq' / '002.png')).astype(float)
    assert np.abs(noisy.mean((0, 1)) - clean.mean((0, 1))).max() < 40


def test_clear_errors(setup, tmp_path, capsys):
    base = ['--input', setup['clean'], '--network-opt', NET_OPT, '--format', 'png', '--device', 'cpu']
    assert main(['--model', str(tmp_path / 'none.pth'), '--out', str(tmp_path / 'o1')] + base) == 1
    assert 'none.pth not found' in capsys.readouterr().err

    # the paper-size network cannot take the tiny checkpoint: the message names keys
    with pytest.raises(GenerateError, match=r'missing keys|encs_H'):
        run_generate(_cfg(setup, tmp_path / 'o2', network_g=None), progress=False)
    assert not os.path.exists(tmp_path / 'o2')

    empty = tmp_path / 'empty'
    empty.mkdir()
    assert main(['--model', setup['model'], '--input', str(empty), '--out', str(tmp_path / 'o3'),
                 '--network-opt', NET_OPT]) == 1
    assert 'holds no images' in capsys.readouterr().err

    with pytest.raises(GenerateError, match='fixed:<level>'):
        run_generate(_cfg(setup, tmp_path / 'o4', levels='gauss'), progress=False)
    with pytest.raises(GenerateError, match='--level-model'):
        run_generate(_cfg(setup, tmp_path / 'o5', model=setup['bare'], levels=f'estimate:{setup["noisy"]}'),
                     progress=False)

    run_generate(_cfg(setup, tmp_path / 'o6'), progress=False)
    with pytest.raises(GenerateError, match='other settings'):
        run_generate(_cfg(setup, tmp_path / 'o6', seed=5), progress=False)
    run_generate(_cfg(setup, tmp_path / 'o6', seed=5, overwrite=True), progress=False)
    assert json.load(open(tmp_path / 'o6' / 'manifest.json'))['settings']['seed'] == 5


def _tree_bytes(root):
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), 'rb').read()
            for d, _, files in os.walk(root) for f in files}


def test_overwrite_never_deletes_inputs_or_what_it_did_not_write(setup, tmp_path):
    import shutil
    data = tmp_path / 'D'
    shutil.copytree(os.path.dirname(setup['clean']), data)  # D/gt (clean input) and D/lq (real noisy images)
    before = _tree_bytes(data)
    # the folder holding the input has no manifest of ours: nothing there is replaced, even with --overwrite
    with pytest.raises(GenerateError, match='holds no manifest.json of basicsr generate'):
        run_generate(_cfg(setup, data, input=str(data / 'gt'), overwrite=True), progress=False)
    assert _tree_bytes(data) == before
    # an earlier generation of ours, used as the input of the next: --overwrite refuses to delete the input
    run_generate(_cfg(setup, tmp_path / 'g'), progress=False)
    before = _tree_bytes(tmp_path / 'g')
    with pytest.raises(GenerateError, match=r"would delete .*gt, which holds this run's input"):
        run_generate(_cfg(setup, tmp_path / 'g', input=str(tmp_path / 'g' / 'gt'), seed=3, overwrite=True),
                     progress=False)
    assert _tree_bytes(tmp_path / 'g') == before


def test_out_of_range_options_and_non_finite_output_are_refused(setup, tmp_path):
    with pytest.raises(GenerateError, match=r'levels are noise stds in \[0, 1\].*fixed:0.098'):
        run_generate(_cfg(setup, tmp_path / 'a', levels='fixed:25'), progress=False)
    with pytest.raises(GenerateError, match='--compress-level must be 0'):
        run_generate(_cfg(setup, tmp_path / 'b', compress_level=99), progress=False)
    with pytest.raises(GenerateError, match=r'non-finite values for 000, 001 .*temperature 1e\+30'):
        run_generate(_cfg(setup, tmp_path / 'c', temperature=1e30, levels='fixed:0.05'), progress=False)
    assert not os.listdir(tmp_path / 'c' / 'lq')  # nothing written for it


def test_two_processes_under_torchrun_write_what_one_process_writes(setup, tmp_path):
    import subprocess
    import sys
    args = ['--model', setup['model'], '--input', setup['clean'], '--network-opt', NET_OPT, '--level-network-opt',
            json.dumps(TINY_LEVEL_OPT), '--levels', f'estimate:{setup["noisy"]}', '--device', 'cpu',
            '--batch-size', '2', '--seed', '3']
    assert main(args + ['--out', str(tmp_path / 'one')]) == 0
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')  # gloo on CPU where GPUs exist too
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m',
                           'senm_plugin.tools.generate'] + args + ['--out', str(tmp_path / 'two')],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank, share in ((0, 3), (1, 2)):  # 5 images: every second one each
        assert f'rank {rank} of 2: {share} of its {share} images to do (5 in all)' in proc.stdout, proc.stdout
    for name in ('gt.lmdb', 'lq.lmdb'):
        assert _lmdb_records(str(tmp_path / 'one' / name)) == _lmdb_records(str(tmp_path / 'two' / name)), name
    one, two = (json.load(open(tmp_path / d / 'manifest.json')) for d in ('one', 'two'))
    assert two['complete'] and one['fingerprint'] == two['fingerprint'] and one['images'] == two['images']
    assert not os.path.exists(tmp_path / 'two' / '_staging')
