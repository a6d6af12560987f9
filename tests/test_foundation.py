"""The plugin as a BasicSR user meets it: import, registries, the `basicsr` command, training, resume, DDP."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import yaml

from helpers import REPO_ROOT, folder_to_lmdb, run_basicsr, write_pairs
from senm_plugin.checkpoint import CheckpointError, atomic_save, extract_state_dict, safe_load


def tiny_option(name, gt_dir, lq_dir, backend='disk', total_iter=8, save_freq=4, network=None):
    """A BasicSR SRModel option dict that trains a tiny BasicSR network on CPU in about a second."""
    network = network or dict(
        type='SRVGGNetCompact', num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=1, act_type='prelu')
    data = dict(dataroot_gt=gt_dir, dataroot_lq=lq_dir, io_backend=dict(type=backend))
    return dict(
        name=name,
        model_type='SRModel',
        scale=1,
        num_gpu=0,
        manual_seed=0,
        datasets=dict(
            train=dict(
                name='tiny_train',
                type='PairedImageDataset',
                gt_size=16,
                use_hflip=True,
                use_rot=True,
                num_worker_per_gpu=0,
                batch_size_per_gpu=2,
                dataset_enlarge_ratio=50,
                **data),
            val=dict(name='tiny_val', type='PairedImageDataset', **data)),
        network_g=network,
        path=dict(pretrain_network_g=None, strict_load_g=True, resume_state=None),
        train=dict(
            optim_g=dict(type='Adam', lr=1e-3),
            scheduler=dict(type='MultiStepLR', milestones=[4, 8, 12], gamma=0.5),
            total_iter=total_iter,
            warmup_iter=-1,
            pixel_opt=dict(type='L1Loss', loss_weight=1.0, reduction='mean')),
        val=dict(val_freq=save_freq, save_img=False, metrics=dict(psnr=dict(type='calculate_psnr', crop_border=0))),
        logger=dict(print_freq=1, save_checkpoint_freq=save_freq, use_tb_logger=True))


def write_yaml(path, opt):
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f)
    return str(path)


def expected_lr(it, base=1e-3, milestones=(4, 8, 12), gamma=0.5):
    """Learning rate BasicSR logs at iteration ``it`` (it updates the scheduler before step ``it``)."""
    return base * gamma**sum(it - 1 >= m for m in milestones)


def logged_lrs(log_text):
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r'iter:\s+(\d+), lr:\(([0-9.e+-]+),\)', log_text)}


def test_import_in_fresh_interpreter_registers_and_keeps_basicsr_importable():
    code = textwrap.dedent("""
        import senm_plugin
        import basicsr
        from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY
        import basicsr.data.degradations  # the module that fails on torchvision >= 0.17 without the compat shim
        print('OK', basicsr.__version__, senm_plugin.__version__, 'EDSR' in ARCH_REGISTRY)
    """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith('OK') and out.stdout.strip().endswith('True')


PLUGIN_NAMES = {
    'ARCH_REGISTRY': ['ScaoedNet', 'SeNMVAE', 'NoiseLevelNet', 'PatchGANDiscriminator'],
    'DATASET_REGISTRY': ['TriDomainDataset', 'MixedPairDataset'],
    'MODEL_REGISTRY': ['ScaoedNetModel', 'SeNMVAEModel'],
    'LOSS_REGISTRY': ['LPIPSLoss', 'RelativisticGANLoss'],
    'METRIC_REGISTRY': ['calculate_noise_kld', 'calculate_noise_akld'],
}


def test_plugin_names_are_in_basicsr_registries():
    from basicsr.utils import registry
    for registry_name, names in PLUGIN_NAMES.items():
        reg = getattr(registry, registry_name)
        for name in names:
            assert name in reg, f'{name} missing from {registry_name}'
            assert reg.get(name).__module__.startswith('senm_plugin.'), name


def test_help_lists_the_verbs(tmp_path):
    out = run_basicsr(['--help'], cwd=str(tmp_path)).stdout
    for verb in ('train', 'test', 'prepare', 'generate', 'evaluate', 'demo'):
        assert re.search(rf'^\s+{verb}\s', out, re.M), out
    bad = run_basicsr(['frobnicate'], cwd=str(tmp_path), check=False)
    assert bad.returncode == 2 and 'unknown verb "frobnicate"' in bad.stderr


def test_launcher_argv_accepts_both_local_rank_spellings():
    from senm_plugin.cli import launcher_argv
    assert launcher_argv(['-opt', 'x.yml', '--local-rank=3']) == ['-opt', 'x.yml', '--local_rank=3']
    assert launcher_argv(['--local-rank', '1', '--auto_resume']) == ['--local_rank', '1', '--auto_resume']
    assert launcher_argv(['--local_rank', '2', '--local-ranks']) == ['--local_rank', '2', '--local-ranks']


@pytest.mark.parametrize('backend, rank_flag', [('disk', ['--local-rank=0']), ('lmdb', ['--local_rank', '0'])])
def test_train_saves_checkpoints_validates_and_test_reloads(tmp_path, backend, rank_flag):
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    if backend == 'lmdb':
        gt_dir = folder_to_lmdb(gt_dir, str(tmp_path / 'data' / 'gt.lmdb'))
        lq_dir = folder_to_lmdb(lq_dir, str(tmp_path / 'data' / 'lq.lmdb'))
    opt = write_yaml(tmp_path / 'train.yml', tiny_option('tiny', gt_dir, lq_dir, backend))
    run_basicsr(['train', '-opt', opt] + rank_flag, cwd=str(tmp_path))  # torch.distributed.launch's spellings
    exp = tmp_path / 'experiments' / 'tiny'
    assert sorted(os.listdir(exp / 'models')) == ['net_g_4.pth', 'net_g_8.pth', 'net_g_latest.pth']
    assert sorted(os.listdir(exp / 'training_states')) == ['4.state', '8.state']
    assert (tmp_path / 'tb_logger' / 'tiny').is_dir()
    log = next(p for p in exp.iterdir() if p.name.startswith('train_')).read_text()
    assert re.search(r'# psnr: \d+\.\d+', log), 'validation did not report PSNR'
    state = safe_load(str(exp / 'training_states' / '8.state'))
    assert state['iter'] == 8 and len(state['optimizers']) == 1

    test_opt = tiny_option('tiny_test', gt_dir, lq_dir, backend)
    test_opt['datasets'] = dict(test_1=test_opt['datasets']['val'])
    test_opt['path'] = dict(pretrain_network_g=str(exp / 'models' / 'net_g_latest.pth'), strict_load_g=True)
    run_basicsr(['test', '-opt', write_yaml(tmp_path / 'test.yml', test_opt)], cwd=str(tmp_path))
    test_log = next((tmp_path / 'results' / 'tiny_test').glob('test_*.log')).read_text()
    assert 'Loading SRVGGNetCompact model from' in test_log and re.search(r'# psnr: \d+\.\d+', test_log)


def test_killed_run_resumes_with_right_iteration_and_lr(tmp_path):
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    opt = write_yaml(tmp_path / 'train.yml', tiny_option('killme', gt_dir, lq_dir, total_iter=100000, save_freq=3))
    states = tmp_path / 'experiments' / 'killme' / 'training_states'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, '-m', 'senm_plugin.cli', 'train', '-opt', opt],
                            cwd=str(tmp_path),
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (states / '6.state').exists():
            assert proc.poll() is None, 'training stopped before it could be killed'
            assert time.time() < deadline, 'no checkpoint within 300 s'
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = sorted(int(p.name.split('.')[0]) for p in states.glob('*.state'))
    last = saved[-1]
    assert last >= 6
    for p in states.iterdir():  # the atomic writer leaves complete files only
        if p.suffix == '.state':
            assert safe_load(str(p))['iter'] == int(p.stem)

    run_basicsr(['train', '-opt', opt, '--auto_resume', '--force_yml', f'train:total_iter={last + 4}'],
                cwd=str(tmp_path))
    logs = sorted((tmp_path / 'experiments' / 'killme').glob('train_killme_*.log'))
    resumed = logs[-1].read_text()
    assert f'Resuming training from epoch: 0, iter: {last}.' in resumed
    lrs = logged_lrs(resumed)
    assert sorted(lrs) == list(range(last + 1, last + 5))
    for it, lr in lrs.items():
        assert lr == pytest.approx(expected_lr(it)), (it, lr)


def _make_plugin_package(site):
    """An installed-looking package ``tinyplug`` declaring a ``basicsr.plugins`` entry point."""
    pkg = site / 'tinyplug'
    pkg.mkdir(parents=True)
    (pkg / '__init__.py').write_text(
        textwrap.dedent("""
        from torch import nn
        from basicsr.utils.registry import ARCH_REGISTRY

        @ARCH_REGISTRY.register()
        class TinyPluginNet(nn.Module):
            def __init__(self, num_feat=4):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, num_feat, 3, 1, 1), nn.ReLU(), nn.Conv2d(num_feat, 3, 3, 1, 1))

            def forward(self, x):
                return x + self.body(x)
    """))
    dist = site / 'tinyplug-0.1.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n')
    (dist / 'entry_points.txt').write_text('[basicsr.plugins]\ntinyplug = tinyplug\n')


def test_entry_point_plugin_and_import_flag_are_loaded(tmp_path):
    _make_plugin_package(tmp_path / 'site')
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    opt = tiny_option('plug', gt_dir, lq_dir, total_iter=2, save_freq=2, network=dict(type='TinyPluginNet'))
    path = write_yaml(tmp_path / 'plug.yml', opt)
    run_basicsr(['train', '-opt', path], cwd=str(tmp_path), env_extra={'PYTHONPATH': str(tmp_path / 'site')})
    assert (tmp_path / 'experiments' / 'plug' / 'models' / 'net_g_2.pth').exists()

    # Without the entry point the name is unknown; `--import` brings it in from the current folder.
    (tmp_path / 'site' / 'tinyplug').rename(tmp_path / 'tinyplug')
    opt['name'] = 'plug_import'
    path = write_yaml(tmp_path / 'plug_import.yml', opt)
    failed = run_basicsr(['train', '-opt', path], cwd=str(tmp_path / 'data'), check=False)
    assert failed.returncode != 0 and 'TinyPluginNet' in failed.stderr
    run_basicsr(['--import', 'tinyplug', 'train', '-opt', path], cwd=str(tmp_path))
    assert (tmp_path / 'experiments' / 'plug_import' / 'models' / 'net_g_2.pth').exists()


def test_torchrun_two_processes_on_cpu(tmp_path):
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    opt = write_yaml(tmp_path / 'ddp.yml', tiny_option('ddp', gt_dir, lq_dir, total_iter=4, save_freq=4))
    port = 29500 + os.getpid() % 1000
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}', '-m',
        'senm_plugin.train', '-opt', opt, '--launcher', 'pytorch'
    ]
    proc = subprocess.run(
        cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES=''))  # on CPU where a GPU exists too
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'ddp'
    assert (exp / 'models' / 'net_g_4.pth').exists() and (exp / 'training_states' / '4.state').exists()
    log = next(exp.glob('train_ddp_*.log')).read_text()
    assert 'World size (gpu number): 2' in log
    weights = extract_state_dict(safe_load(str(exp / 'models' / 'net_g_4.pth')))
    assert not any(k.startswith('module.') for k in weights)


def test_truncated_checkpoint_gives_clear_error_and_atomic_writer_leaves_none(tmp_path):
    path = str(tmp_path / 'net.pth')
    atomic_save({'params': {'w': torch.ones(64, 64)}}, path)
    assert os.listdir(tmp_path) == ['net.pth']
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'net\.pth .*truncated'):
        safe_load(path)

    class Unpicklable:

        def __reduce__(self):
            raise RuntimeError('boom while saving')

    good = str(tmp_path / 'good.pth')
    atomic_save({'w': torch.zeros(2)}, good)
    with pytest.raises(RuntimeError, match='boom'):
        atomic_save({'w': torch.ones(2), 'x': Unpicklable()}, good)
    assert torch.equal(safe_load(good)['w'], torch.zeros(2)), 'a failed save must keep the previous file'
    assert sorted(os.listdir(tmp_path)) == ['good.pth', 'net.pth'], 'no temporary file may be left behind'


def test_bare_and_basicsr_state_dicts_both_load():
    net = torch.nn.Conv2d(3, 3, 3)
    bare = net.state_dict()
    assert extract_state_dict(bare).keys() == bare.keys()
    wrapped = {'params_ema': {f'module.{k}': v for k, v in bare.items()}, 'params': bare}
    assert list(extract_state_dict(wrapped, 'params_ema')) == list(bare)
    with pytest.raises(CheckpointError, match='not a bare state dict'):
        extract_state_dict({'net': 3, 'epoch': 1})


def test_every_option_file_names_registered_classes_that_build():
    import glob
    import yaml
    from basicsr.archs import build_network
    from basicsr.utils.registry import MODEL_REGISTRY
    files = sorted(glob.glob(os.path.join(REPO_ROOT, 'options', '*', '*.yml')) +
                   glob.glob(os.path.join(REPO_ROOT, 'tests', 'data', '*.yml')))
    assert any(f.endswith('senm_cpu.yml') for f in files)
    for path in files:
        with open(path) as f:
            opt = yaml.safe_load(f)
        if 'model_type' in opt:
            assert opt['model_type'] in MODEL_REGISTRY, path
        for key in [k for k in opt if k.startswith('network_')]:
            if isinstance(opt[key], str):  # generate's network_g may name another option file
                assert os.path.isfile(os.path.join(REPO_ROOT, opt[key])), (path, key)
                continue
            net = build_network(dict(opt[key]))
            assert sum(p.numel() for p in net.parameters()) > 0, (path, key)


def test_torchrun_backend_fits_the_gpus_there_are(monkeypatch):
    import torch
    from senm_plugin.compat import pytorch_backend
    chosen = []
    monkeypatch.setattr(torch.cuda, 'set_device', chosen.append)
    monkeypatch.setenv('RANK', '1')
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    for gpus, expected in ((0, 'gloo'), (1, 'gloo'), (2, 'cpu:gloo,cuda:nccl'), (4, 'cpu:gloo,cuda:nccl')):
        monkeypatch.setattr(torch.cuda, 'device_count', lambda gpus=gpus: gpus)
        assert pytorch_backend('nccl') == expected, gpus
    assert chosen == [1, 1]  # a GPU per rank only where there is one for each; two ranks never share one
