"""Faults and bad input: each ends in one clear message, and no input or earlier output changes."""
import os
import stat

import numpy as np
import pytest
import torch

from helpers import write_pairs
from senm_plugin.checkpoint import atomic_save, safe_load
from senm_plugin.tools import prepare
from senm_plugin.tools.evaluate import evaluate_noise


def test_checkpoints_get_the_umask_mode_and_killed_saves_are_cleaned(tmp_path):
    path = tmp_path / 'net_g_4.pth'
    stale = tmp_path / '.net_g_4.pth.abc123.tmp'  # what a kill during the save leaves
    stale.write_bytes(b'')
    other = tmp_path / '.net_g_8.pth.def456.tmp'  # another file's temp: not ours to remove
    other.write_bytes(b'')
    old = os.umask(0o022)
    try:
        atomic_save({'params': {'w': torch.ones(2)}}, str(path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # as BasicSR's torch.save writes it, not mkstemp's 0600
    assert not stale.exists() and other.exists()
    assert torch.equal(safe_load(str(path))['params']['w'], torch.ones(2))


def test_a_pipe_in_the_label_does_not_break_the_report_table(tmp_path):
    rng = np.random.default_rng(0)
    clean = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    noisy = [np.clip(x + rng.normal(0, 10, x.shape), 0, 255).astype(np.uint8) for x in clean]
    evaluate_noise(clean, noisy, noisy, str(tmp_path / 'r'), label='ours | v2', verbose=False,
                   fid_weights=str(tmp_path / 'none.pth'))
    lines = (tmp_path / 'r' / 'report.md').read_text().splitlines()
    row = [line for line in lines if 'ours' in line and line.startswith('|')][0]
    header = [line for line in lines if line.startswith('|') and 'KLD' in line][0]
    assert row.startswith('| ours \\| v2 |')
    assert row.replace('\\|', '').count('|') == header.count('|')  # as many cells as the header


def test_prepare_refuses_one_folder_as_both_sides_of_the_pairs(tmp_path, capsys):
    gt_dir, _ = write_pairs(str(tmp_path / 'pairs'), num=2)
    before = sorted(os.listdir(gt_dir))
    code = prepare.main(['folders', '--paired-gt', gt_dir, '--paired-lq', gt_dir + os.sep, '--out',
                         str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert code != 0 and 'are the same folder' in err and 'Traceback' not in err
    assert sorted(os.listdir(gt_dir)) == before and not os.path.exists(tmp_path / 'out')


def test_auto_resume_falls_back_past_a_truncated_network_file(tmp_path):
    from helpers import run_basicsr
    from test_foundation import tiny_option, write_yaml
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    path = write_yaml(tmp_path / 'train.yml', tiny_option('fb', gt_dir, lq_dir, total_iter=4, save_freq=2))
    run_basicsr(['train', '-opt', path], cwd=str(tmp_path))
    exp = tmp_path / 'experiments' / 'fb'
    broken = exp / 'models' / 'net_g_4.pth'
    broken.write_bytes(broken.read_bytes()[:100])  # killed while saving; 4.state itself is intact
    proc = run_basicsr(['train', '-opt', path, '--auto_resume', '--force_yml', 'train:total_iter=6'],
                       cwd=str(tmp_path))
    assert 'skipped 1 incomplete checkpoint(s) (4.state); resuming from iteration 2' in proc.stderr
    log = sorted(exp.glob('train_fb_*.log'))[-1].read_text()
    assert 'Resuming training from epoch' in log and 'iter: 2.' in log and str(exp / 'models' / 'net_g_2.pth') in log
    assert (exp / 'models' / 'net_g_6.pth').is_file()
    # with no complete checkpoint left, one line names them, and no traceback
    for name in ('net_g_2.pth', 'net_g_4.pth', 'net_g_6.pth'):  # 4 was saved again by the resumed run
        (exp / 'models' / name).write_bytes(b'')
    failed = run_basicsr(['train', '-opt', path, '--auto_resume', '--force_yml', 'train:total_iter=8'],
                         cwd=str(tmp_path), check=False)
    assert failed.returncode == 1 and 'Traceback' not in failed.stderr
    assert 'no complete checkpoint' in failed.stderr and '6.state' in failed.stderr


def _edit_image(path):
    """Replace an image's pixels (and move its modification time on, as any edit would)."""
    import cv2
    img = cv2.imread(path)
    cv2.imwrite(path, 255 - img)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_an_edited_input_is_not_kept_as_finished(tmp_path, capsys):
    import json
    from helpers import TINY_LEVEL_OPT, TINY_SENMVAE_OPT, save_tiny_senmvae
    from senm_plugin.errors import GenerateError
    from senm_plugin.tools.generate import run_generate
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'pairs'), num=3, size=24)
    args = ['folders', '--paired-gt', gt_dir, '--paired-lq', lq_dir, '--out', str(tmp_path / 'lmdb'), '--workers', '1']
    assert prepare.main(args) == 0
    capsys.readouterr()
    assert prepare.main(args) == 0 and 'finished and verified, kept' in capsys.readouterr().out
    _edit_image(os.path.join(gt_dir, '001.png'))
    assert prepare.main(args) != 0
    assert 'prepared with other settings or inputs' in capsys.readouterr().err
    assert prepare.main(args + ['--overwrite']) == 0

    model, _, _ = save_tiny_senmvae(str(tmp_path / 'models'))
    cfg = {'model': model, 'input': gt_dir, 'out': str(tmp_path / 'gen'), 'network_g': json.dumps(TINY_SENMVAE_OPT),
           'network_le': TINY_LEVEL_OPT, 'format': 'png', 'device': 'cpu', 'levels': 'fixed:0.05'}
    run_generate(cfg, progress=False)
    _edit_image(os.path.join(gt_dir, '002.png'))
    with pytest.raises(GenerateError, match='holds a generation made with other settings'):
        run_generate(cfg, progress=False)


def test_lmdb_faults_are_found_when_the_dataset_is_built_and_by_prepare_verify(tmp_path, capsys):
    import lmdb
    from senm_plugin.data.lmdb_io import close_shared_envs
    from senm_plugin.data.tri_domain_dataset import TriDomainDataset
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'pairs'), num=3, size=24)
    out = tmp_path / 'lmdb'
    assert prepare.main(['folders', '--paired-gt', gt_dir, '--paired-lq', lq_dir, '--out', str(out)]) == 0
    assert prepare.main(['--verify', str(out)]) == 0
    assert capsys.readouterr().out.count('ok: ') == 2
    opt = {'phase': 'train', 'gt_size': 16, 'use_hflip': False, 'use_rot': False, 'io_backend': {'type': 'lmdb'},
           'dataroot_paired_gt': str(out / 'paired_gt.lmdb'), 'dataroot_paired_lq': str(out / 'paired_lq.lmdb')}
    assert len(TriDomainDataset(opt)) > 0
    close_shared_envs()  # the faults below are made by a writer
    env = lmdb.open(str(out / 'paired_lq.lmdb'), map_size=2**26)
    with env.begin(write=True) as txn:
        txn.delete(b'001')  # meta_info.txt still lists it
    env.close()
    with pytest.raises(ValueError, match=r"dataroot_paired_lq: 1 of the 3 keys .*paired_lq.lmdb.*\['001'\]"):
        TriDomainDataset(opt)
    close_shared_envs()
    env = lmdb.open(str(out / 'paired_gt.lmdb'), map_size=2**26)
    with env.begin(write=True) as txn:
        txn.put(b'001', b'not a png')  # a middle key: only the whole check finds it
    env.close()
    assert prepare.main(['verify', str(out / 'paired_gt.lmdb')]) == 1
    assert 'key 001: the value does not decode as an image' in capsys.readouterr().err


def test_a_broken_option_file_stops_train_before_any_work(tmp_path):
    from helpers import run_basicsr
    from test_foundation import tiny_option, write_yaml
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    opt = tiny_option('broken', gt_dir, lq_dir)
    opt['model_type'] = 'SRModle'
    opt['network_g']['type'] = 'SRVGGNetCompakt'
    opt['train']['total_iter'] = 'eight'
    opt['train']['optim_g']['lr'] = '1e-3'
    opt['datasets']['val']['dataroot_lq'] = str(tmp_path / 'missing')
    opt['num_gpu'] = 99
    proc = run_basicsr(['train', '-opt', write_yaml(tmp_path / 'b.yml', opt)], cwd=str(tmp_path), check=False)
    err = proc.stderr
    assert proc.returncode == 2 and 'Traceback' not in err
    for expected in ("model_type 'SRModle' is not registered; did you mean SRModel?",
                     "network_g.type: network type 'SRVGGNetCompakt' is not registered; did you mean SRVGGNetCompact?",
                     "train.total_iter: expected an integer, got 'eight'",
                     "train.optim_g.lr: expected a number, got '1e-3' (str); write 1e-3 as !!float 1e-3",
                     f"datasets.val.dataroot_lq: {tmp_path / 'missing'} does not exist",
                     'num_gpu: 99 but this machine has'):
        assert expected in err, (expected, err)
    assert err.count('basicsr train: error:') == 6
    assert not (tmp_path / 'experiments').exists()  # nothing started
    # --force_yml may fix a key; then only the rest is reported
    opt = tiny_option('forced', gt_dir, lq_dir)
    opt['train']['total_iter'] = 'eight'
    proc = run_basicsr(['train', '-opt', write_yaml(tmp_path / 'f.yml', opt), '--force_yml', 'train:total_iter=2'],
                       cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (tmp_path / 'empty.yml').write_text('')
    (tmp_path / 'bad.yml').write_text('name: [unclosed\n')
    for name, message in (('empty.yml', 'expected a mapping of options'), ('bad.yml', 'not valid YAML')):
        proc = run_basicsr(['train', '-opt', str(tmp_path / name)], cwd=str(tmp_path), check=False)
        assert proc.returncode == 2 and message in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.parametrize('verb', ['generate', 'evaluate'])
@pytest.mark.parametrize('kind', ['file', 'read-only'])
def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch, verb, kind):
    from helpers import save_tiny_senmvae
    from senm_plugin.tools import evaluate, generate
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'pairs'), num=2)
    if kind == 'file':
        out = tmp_path / 'out.txt'
        out.write_text('keep me')
        expected = 'is a file, not a folder'
    else:
        parent = tmp_path / 'ro'
        parent.mkdir(mode=0o555)
        out = parent / 'out'
        real_access = os.access  # root may write anywhere: answer as the kernel would for an ordinary user
        monkeypatch.setattr(os, 'access', lambda p, mode: False if str(p) == str(parent) else real_access(p, mode))
        expected = 'no permission to write'
    if verb == 'generate':
        model, _, _ = save_tiny_senmvae(str(tmp_path / 'models'))
        code = generate.main(['--model', model, '--input', gt_dir, '--out', str(out), '--levels', 'fixed:0.05'])
    else:
        code = evaluate.main(['noise', '--clean', gt_dir, '--real', lq_dir, '--generated', lq_dir, '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 1 and expected in err and 'Traceback' not in err
    if kind == 'file':
        assert out.read_text() == 'keep me'


def test_a_second_generate_into_the_same_out_stops_at_once(tmp_path):
    import fcntl
    import json
    from helpers import TINY_LEVEL_OPT, TINY_SENMVAE_OPT, save_tiny_senmvae
    from senm_plugin.errors import GenerateError
    from senm_plugin.tools.generate import run_generate
    from senm_plugin.tools.generate_output import LOCK
    gt_dir, _ = write_pairs(str(tmp_path / 'pairs'), num=2, size=24)
    model, _, _ = save_tiny_senmvae(str(tmp_path / 'models'))
    cfg = {'model': model, 'input': gt_dir, 'out': str(tmp_path / 'gen'), 'network_g': json.dumps(TINY_SENMVAE_OPT),
           'network_le': TINY_LEVEL_OPT, 'format': 'png', 'device': 'cpu', 'levels': 'fixed:0.05'}
    os.makedirs(tmp_path / 'gen')
    with open(tmp_path / 'gen' / LOCK, 'w') as held:  # a first run holding the folder
        held.write('pid 12345')
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(GenerateError, match=r'being written by another basicsr generate \(pid 12345\)'):
            run_generate(cfg, progress=False)
        assert os.listdir(tmp_path / 'gen') == [LOCK]  # nothing of the first run's touched
    manifest = run_generate(cfg, progress=False)  # the lock released (or left by a killed run): it goes on
    assert manifest['complete'] and not (tmp_path / 'gen' / LOCK).exists()


def test_train_from_a_checkpoint_of_another_architecture_says_so_briefly(tmp_path):
    from helpers import run_basicsr
    from test_foundation import tiny_option, write_yaml
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    other = tmp_path / 'other.pth'
    torch.save({'params': {f'encoder.{k:02d}.weight': torch.zeros(4, 3, 3, 3) for k in range(40)}}, str(other))
    opt = tiny_option('other', gt_dir, lq_dir, total_iter=2)
    opt['path']['pretrain_network_g'] = str(other)
    proc = run_basicsr(['train', '-opt', write_yaml(tmp_path / 'o.yml', opt)], cwd=str(tmp_path), check=False)
    err = proc.stderr
    assert proc.returncode == 1 and 'Traceback' not in err
    assert f'Checkpoint {other} does not match SRVGGNetCompact' in err and '40 unexpected keys' in err
    # the first few keys, not all of them (BasicSR would log every key and torch print every mismatch)
    assert 'encoder.04.weight' in err and 'encoder.39.weight' not in err and 'missing keys' in err
