"""``basicsr prepare``: SIDD-Medium, SIDD validation and plain folders to BasicSR LMDBs; re-runs and bad inputs."""
import json
import os

import cv2
import numpy as np
import pytest

import senm_plugin  # noqa: F401
from basicsr.utils import FileClient
from helpers import run_basicsr
from senm_plugin.data import lmdb_io
from senm_plugin.tools import prepare

CROP, PER_IMAGE = 16, 4


def make_sidd(root, scenes=3, hw=(48, 56), seed=0):
    """A SIDD-Medium-shaped folder: ``root/Data/<scene>/NNNN_{GT,NOISY}_SRGB_01{0,1}.PNG``; noisy = clean + 20."""
    rng = np.random.default_rng(seed)
    for s in range(1, scenes + 1):
        folder = os.path.join(root, 'Data', f'{s:04d}_001_S6_00100_00060_3200_L')
        os.makedirs(folder)
        for frame in ('010', '011'):
            clean = rng.integers(0, 230, hw + (3, ), dtype=np.uint8)
            cv2.imwrite(os.path.join(folder, f'{s:04d}_GT_SRGB_{frame}.PNG'), clean)
            cv2.imwrite(os.path.join(folder, f'{s:04d}_NOISY_SRGB_{frame}.PNG'), clean + 20)
    return str(root)


def _sidd_args(src, out, *extra):
    return ['sidd', '--src', src, '--out', out, '--paired', '3', '--crop', str(CROP), '--crops-per-image',
            str(PER_IMAGE), '--workers', '1', *extra]


def _read_lmdb(path):
    """{key: uint8 BGR image} of a BasicSR LMDB, read through BasicSR's FileClient."""
    keys = [line.split(' ')[0][:-4] for line in open(os.path.join(path, 'meta_info.txt'))]
    client = FileClient('lmdb', db_paths=[path], client_keys=['x'])
    return {k: cv2.imdecode(np.frombuffer(client.get(k, 'x'), np.uint8), cv2.IMREAD_COLOR) for k in keys}


@pytest.fixture(scope='module')
def sidd_src(tmp_path_factory):
    return make_sidd(tmp_path_factory.mktemp('sidd') / 'SIDD_Medium_Srgb')


@pytest.fixture(scope='module')
def sidd_out(sidd_src, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('prepared') / 'SIDD')
    assert prepare.main(_sidd_args(sidd_src, out)[:-1] + ['2']) == 0  # 2 worker processes
    return out


def test_sidd_counts_split_and_content(sidd_src, sidd_out):
    split = json.load(open(os.path.join(sidd_out, 'split.json')))
    total = 6 * PER_IMAGE
    dom = split['domains']
    assert [len(dom[d]) for d in ('paired', 'source', 'target')] == [3, 10, 11]
    assert not set(dom['paired']) & set(dom['source']) and not set(dom['source']) & set(dom['target'])
    assert len(set(dom['paired']) | set(dom['source']) | set(dom['target'])) == total == len(split['crops'])
    lmdbs = {n: _read_lmdb(os.path.join(sidd_out, f'{n}.lmdb')) for n in ('paired_gt', 'paired_lq', 'source', 'target')}
    assert sorted(lmdbs['paired_gt']) == sorted(lmdbs['paired_lq']) == sorted(dom['paired'])
    assert sorted(lmdbs['source']) == sorted(dom['source']) and sorted(lmdbs['target']) == sorted(dom['target'])
    images = [(cv2.imread(os.path.join(sidd_src, im['gt'])), cv2.imread(os.path.join(sidd_src, im['lq'])))
              for im in split['images']]
    for name, role in (('paired_gt', 0), ('paired_lq', 1), ('source', 0), ('target', 1)):
        for key, img in lmdbs[name].items():
            i, top, left = split['crops'][key]
            assert img.shape == (CROP, CROP, 3)
            assert np.array_equal(img, images[i][role][top:top + CROP, left:left + CROP]), (name, key)
    for key in dom['paired']:
        assert np.array_equal(lmdbs['paired_lq'][key].astype(int) - lmdbs['paired_gt'][key], np.full((16, 16, 3), 20))
    meta = open(os.path.join(sidd_out, 'source.lmdb', 'meta_info.txt')).readline().split()
    assert meta[0].endswith('.png') and meta[1:] == ['(16,16,3)', '1']


def test_sidd_same_seed_same_split(sidd_src, sidd_out, tmp_path):
    again, other = str(tmp_path / 'again'), str(tmp_path / 'other')
    assert prepare.main(_sidd_args(sidd_src, again)) == 0
    assert prepare.main(_sidd_args(sidd_src, other, '--seed', '1')) == 0
    first, second, third = (json.load(open(os.path.join(p, 'split.json'))) for p in (sidd_out, again, other))
    assert first['domains'] == second['domains'] and first['crops'] == second['crops']
    assert first['domains'] != third['domains']
    assert _read_lmdb(os.path.join(sidd_out, 'target.lmdb')).keys() == _read_lmdb(
        os.path.join(again, 'target.lmdb')).keys()


def test_split_all_halves_every_crop(sidd_src, tmp_path):
    out = str(tmp_path / 'all')
    assert prepare.main(_sidd_args(sidd_src, out, '--split-all')) == 0
    dom = json.load(open(os.path.join(out, 'split.json')))['domains']
    assert len(dom['source']) == len(dom['target']) == 12 and len(dom['paired']) == 3


def test_rerun_keeps_finished_and_rebuilds_unfinished(sidd_src, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / 'SIDD')
    # interrupted run: Ctrl-C after a few entries of the first LMDB; nothing unfinished is left behind
    calls = {'n': 0}
    real_put = lmdb_io.LmdbBuild.put

    def put_then_stop(self, *args):
        calls['n'] += 1
        if calls['n'] > 4:
            raise KeyboardInterrupt
        real_put(self, *args)

    monkeypatch.setattr(lmdb_io.LmdbBuild, 'put', put_then_stop)
    with pytest.raises(KeyboardInterrupt):
        prepare.main(_sidd_args(sidd_src, out))
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == []
    assert prepare.main(_sidd_args(sidd_src, out)) == 0
    reference = _read_lmdb(os.path.join(out, 'target.lmdb'))
    # a killed run leaves a partial folder and a finished LMDB without its marker: both are rebuilt
    stamp = os.path.getmtime(os.path.join(out, 'source.lmdb', 'data.mdb'))
    os.remove(os.path.join(out, 'target.lmdb', lmdb_io.DONE_MARKER))
    os.makedirs(os.path.join(out, '_partial_paired_gt.lmdb'))
    open(os.path.join(out, '_partial_paired_gt.lmdb', 'data.mdb'), 'w').write('junk')
    os.remove(os.path.join(out, 'paired_gt.lmdb', lmdb_io.DONE_MARKER))
    capsys.readouterr()
    assert prepare.main(_sidd_args(sidd_src, out)) == 0
    printed = capsys.readouterr().out
    assert 'source.lmdb: finished and verified, kept' in printed and 'target.lmdb: written and verified' in printed
    assert os.path.getmtime(os.path.join(out, 'source.lmdb', 'data.mdb')) == stamp
    assert not os.path.exists(os.path.join(out, '_partial_paired_gt.lmdb'))
    assert _read_lmdb(os.path.join(out, 'target.lmdb')).keys() == reference.keys()
    # a meta_info that disagrees with the LMDB is not trusted
    with open(os.path.join(out, 'source.lmdb', 'meta_info.txt'), 'a') as f:
        f.write('extra.png (16,16,3) 1\n')
    assert lmdb_io.finished_status(os.path.join(out, 'source.lmdb'), 'x') is None
    # other settings: refused unless --overwrite
    assert prepare.main(_sidd_args(sidd_src, out, '--seed', '5')) == 1
    assert '--overwrite' in capsys.readouterr().err
    assert prepare.main(_sidd_args(sidd_src, out, '--seed', '5', '--overwrite')) == 0
    assert json.load(open(os.path.join(out, 'split.json')))['seed'] == 5


def test_bad_inputs_name_the_file(tmp_path, capsys):
    src = make_sidd(tmp_path / 'bad', scenes=2)
    scene = os.path.join(src, 'Data', os.listdir(os.path.join(src, 'Data'))[0])
    gt = os.path.join(scene, sorted(os.listdir(scene))[0])
    content = open(gt, 'rb').read()
    open(gt, 'wb').write(content[:len(content) // 2])  # readable header, truncated data
    assert prepare.main(_sidd_args(src, str(tmp_path / 'o1'))) == 1
    err = capsys.readouterr().err
    assert os.path.basename(gt) in err and 'cannot be decoded' in err
    assert not os.path.exists(os.path.join(tmp_path, 'o1', 'source.lmdb'))
    assert not [n for n in os.listdir(tmp_path / 'o1') if n.startswith('_partial')]
    open(gt, 'wb').write(b'garbage')
    assert prepare.main(_sidd_args(src, str(tmp_path / 'o2'))) == 1
    assert os.path.basename(gt) in capsys.readouterr().err
    open(gt, 'wb').write(content)
    noisy = gt.replace('GT_SRGB', 'NOISY_SRGB')
    os.remove(noisy)
    assert prepare.main(_sidd_args(src, str(tmp_path / 'o3'))) == 1
    assert 'no noisy partner' in capsys.readouterr().err
    cv2.imwrite(noisy, np.zeros((10, 10, 3), np.uint8))
    assert prepare.main(_sidd_args(src, str(tmp_path / 'o4'))) == 1
    assert f'{noisy} is 10x10' in capsys.readouterr().err
    cv2.imwrite(noisy, cv2.imread(gt))
    assert prepare.main(_sidd_args(src, str(tmp_path / 'o5'))[:-6] + ['--crop', '64']) == 1
    assert 'smaller than --crop 64' in capsys.readouterr().err
    assert prepare.main(_sidd_args(src, str(tmp_path / 'o6'), '--paired', '999')) == 1
    assert '--paired 999' in capsys.readouterr().err
    assert prepare.main(['sidd', '--src', str(tmp_path / 'none'), '--out', str(tmp_path / 'o7')]) == 1
    assert 'does not exist' in capsys.readouterr().err
    os.makedirs(tmp_path / 'emptysidd' / 'Data')
    assert prepare.main(['sidd', '--src', str(tmp_path / 'emptysidd'), '--out', str(tmp_path / 'o8')]) == 1
    assert 'no *GT_SRGB*.PNG' in capsys.readouterr().err


def test_folders_whole_and_cropped(tmp_path, capsys):
    from helpers import write_pairs
    gt, lq = write_pairs(str(tmp_path / 'pairs'), num=3, size=32)
    src, _ = write_pairs(str(tmp_path / 'clean'), num=2, size=32, seed=1)
    _, tgt = write_pairs(str(tmp_path / 'noisy'), num=4, size=32, seed=2)
    whole = str(tmp_path / 'whole')
    assert prepare.main(['folders', '--paired-gt', gt, '--paired-lq', lq, '--target', tgt, '--out', whole]) == 0
    assert sorted(os.listdir(whole)) == ['paired_gt.lmdb', 'paired_lq.lmdb', 'split.json', 'target.lmdb']
    pg = _read_lmdb(os.path.join(whole, 'paired_gt.lmdb'))
    assert sorted(pg) == ['000', '001', '002'] and np.array_equal(pg['001'], cv2.imread(os.path.join(gt, '001.png')))
    assert len(_read_lmdb(os.path.join(whole, 'target.lmdb'))) == 4
    crops = str(tmp_path / 'crops')
    assert prepare.main(['folders', '--source', src, '--target', tgt, '--out', crops, '--crop', '8',
                         '--crops-per-image', '5', '--workers', '2']) == 0
    source = _read_lmdb(os.path.join(crops, 'source.lmdb'))
    assert len(source) == 10 and {v.shape for v in source.values()} == {(8, 8, 3)}
    record = json.load(open(os.path.join(crops, 'split.json')))
    path, top, left, size = record['domains']['source']['001_c003']
    assert np.array_equal(source['001_c003'], cv2.imread(path)[top:top + size, left:left + size])
    assert len(_read_lmdb(os.path.join(crops, 'target.lmdb'))) == 20
    os.rename(os.path.join(lq, '002.png'), os.path.join(lq, 'zzz.png'))
    assert prepare.main(['folders', '--paired-gt', gt, '--paired-lq', lq, '--out', str(tmp_path / 'x')]) == 1
    assert '002' in capsys.readouterr().err
    assert prepare.main(['folders', '--source', str(tmp_path / 'missing'), '--out', str(tmp_path / 'x')]) == 1
    assert '--source' in capsys.readouterr().err


def test_sidd_val_from_mat(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 200, (2, 3, 16, 16, 3), dtype=np.uint8)
    src = tmp_path / 'val_src'
    src.mkdir()
    savemat(str(src / 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': gt})
    savemat(str(src / 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': gt + 7})
    out = str(tmp_path / 'val')
    assert prepare.main(['sidd-val', '--src', str(src), '--out', out, '--workers', '2']) == 0
    got_gt, got_lq = _read_lmdb(os.path.join(out, 'gt.lmdb')), _read_lmdb(os.path.join(out, 'lq.lmdb'))
    assert sorted(got_gt) == sorted(got_lq) == [f'{i:02d}_{b:02d}' for i in range(2) for b in range(3)]
    assert np.array_equal(got_gt['01_02'][..., ::-1], gt[1, 2])  # stored BGR, as BasicSR reads it
    assert np.array_equal(got_lq['00_01'][..., ::-1], gt[0, 1] + 7)
    savemat(str(src / 'ValidationNoisyBlocksSrgb.mat'), {'wrong_name': gt})
    assert prepare.main(['sidd-val', '--src', str(src), '--out', str(tmp_path / 'v2')]) == 1


def test_cli_prepare_verb(tmp_path):
    proc = run_basicsr(['prepare', 'sidd-val', '--src', str(tmp_path / 'nothing'), '--out', str(tmp_path / 'v')],
                       cwd=str(tmp_path), check=False)
    assert proc.returncode == 1 and 'ValidationGtBlocksSrgb.mat is missing' in proc.stderr
