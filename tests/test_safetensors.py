"""Network weights as .safetensors: round trips of BasicSR and bare state dicts, training that saves them
(``logger.save_format``), resuming from them, and generate reading them."""
import os

import pytest
import torch

from helpers import TINY_SENMVAE_OPT, run_basicsr, save_tiny_senmvae, write_pairs
from senm_plugin.checkpoint import CheckpointError, atomic_save, load_network_weights, safe_load
from test_foundation import tiny_option, write_yaml


def _state(seed):
    g = torch.Generator().manual_seed(seed)
    return {'conv.weight': torch.randn(4, 3, 3, 3, generator=g), 'conv.bias': torch.randn(4, generator=g),
            'count': torch.tensor([3], dtype=torch.long)}


def _equal(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trips_of_basicsr_and_bare_state_dicts(tmp_path):
    basicsr_file = {'params': _state(0), 'params_ema': _state(1)}
    atomic_save(basicsr_file, str(tmp_path / 'net.safetensors'))
    loaded = safe_load(str(tmp_path / 'net.safetensors'))
    assert set(loaded) == {'params', 'params_ema'}
    assert _equal(loaded['params'], basicsr_file['params']) and _equal(loaded['params_ema'], basicsr_file['params_ema'])
    atomic_save(_state(2), str(tmp_path / 'bare.safetensors'))
    assert _equal(safe_load(str(tmp_path / 'bare.safetensors')), _state(2))
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]
    # a .pth and a .safetensors of the same weights load into a network alike
    net = torch.nn.Conv2d(3, 4, 3)
    atomic_save({'params': net.state_dict()}, str(tmp_path / 'conv.pth'))
    atomic_save({'params': net.state_dict()}, str(tmp_path / 'conv.safetensors'))
    for name in ('conv.pth', 'conv.safetensors'):
        other = load_network_weights(torch.nn.Conv2d(3, 4, 3), str(tmp_path / name))
        assert _equal(other.state_dict(), net.state_dict()), name
    with pytest.raises(CheckpointError, match='safetensors holds state dicts only'):
        atomic_save({'params': _state(0), 'iter': 5}, str(tmp_path / 'bad.safetensors'))


def test_a_truncated_safetensors_file_is_named(tmp_path):
    path = tmp_path / 'net.safetensors'
    atomic_save(_state(0), str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'Cannot read checkpoint .*net.safetensors'):
        safe_load(str(path))


def test_training_saves_safetensors_and_resumes_from_them(tmp_path):
    gt_dir, lq_dir = write_pairs(str(tmp_path / 'data'))
    opt = tiny_option('st', gt_dir, lq_dir, total_iter=4, save_freq=2)
    opt['logger']['save_format'] = 'safetensors'
    path = write_yaml(tmp_path / 'train.yml', opt)
    run_basicsr(['train', '-opt', path], cwd=str(tmp_path))
    models = tmp_path / 'experiments' / 'st' / 'models'
    assert sorted(os.listdir(models)) == ['net_g_2.safetensors', 'net_g_4.safetensors', 'net_g_latest.safetensors']
    run_basicsr(['train', '-opt', path, '--auto_resume', '--force_yml', 'train:total_iter=6'], cwd=str(tmp_path))
    logs = sorted((tmp_path / 'experiments' / 'st').glob('train_st_*.log'))
    resumed = logs[-1].read_text()
    assert 'from ' + str(models / 'net_g_4.safetensors') in resumed and 'Resuming training from epoch' in resumed
    assert os.path.isfile(models / 'net_g_6.safetensors')
    opt['logger']['save_format'] = 'npz'
    bad = run_basicsr(['train', '-opt', write_yaml(tmp_path / 'bad.yml', dict(opt, name='bad'))], cwd=str(tmp_path),
                      check=False)
    assert bad.returncode != 0 and 'logger.save_format must be pth or safetensors' in bad.stderr


def test_generate_reads_safetensors_checkpoints(tmp_path):
    from senm_plugin.noise.model import level_model_beside, load_level_net, load_senmvae
    model, level_model, _ = save_tiny_senmvae(str(tmp_path / 'pth'))
    for src in (model, level_model):
        name = os.path.basename(src).replace('.pth', '.safetensors')
        atomic_save(safe_load(src), str(tmp_path / name))
    net = load_senmvae(str(tmp_path / 'net_g_10.safetensors'), dict(TINY_SENMVAE_OPT, type='SeNMVAE'))
    ref = load_senmvae(model, dict(TINY_SENMVAE_OPT, type='SeNMVAE'))
    assert _equal(net.state_dict(), ref.state_dict())
    beside = level_model_beside(str(tmp_path / 'net_g_10.safetensors'))
    assert beside.endswith('net_le_10.safetensors')
    load_level_net(beside, {'type': 'NoiseLevelNet', 'num_in_ch': 3, 'num_feat': 4})
