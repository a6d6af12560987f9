"""SeNMVAEModel: per-domain loss terms, KL annealing, robust steps, checkpoints and a real `basicsr train` run."""
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from basicsr.utils.registry import MODEL_REGISTRY

from helpers import REPO_ROOT, folder_to_lmdb, run_basicsr, write_pairs
from senm_plugin.domains import PAIRED, SOURCE, TARGET
from senm_plugin.checkpoint import NonFiniteWeightsError
from senm_plugin.models.senmvae_model import TrainingDivergedError

TINY_YML = os.path.join(REPO_ROOT, 'tests', 'data', 'tiny_senm.yml')


pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_opt(tmp_path, **train):
    """The tiny option file as BasicSR would parse it for an in-process model (no datasets)."""
    with open(TINY_YML) as f:
        opt = yaml.safe_load(f)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'),
                       visualization=str(tmp_path / 'vis'))
    opt['train'].update(train)
    return opt


def make_model(tmp_path, **train):
    torch.manual_seed(0)
    return MODEL_REGISTRY.get('SeNMVAEModel')(tiny_opt(tmp_path, **train))


def batch(domains, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(len(domains), 3, size, size, generator=g)
    lq = (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    return {'gt': gt, 'lq': lq, 'domain': torch.tensor(domains)}


def params_of(net):
    return [p.detach().clone() for p in net.parameters()]


def test_kl_annealing_schedule(tmp_path):
    model = make_model(tmp_path, kl_zn_weight=0.01, kl_anneal_iters=10)
    assert [model.kl_zn_weight(i) for i in (0, 1, 5, 10, 50)] == pytest.approx([0, 0.001, 0.005, 0.01, 0.01])
    model.train_opt['kl_anneal_iters'] = 0
    assert model.kl_zn_weight(1) == 0.01


@pytest.mark.parametrize('domains, present', [
    ([SOURCE, SOURCE], {'l_rec_x'}),
    ([TARGET, TARGET], {'l_rec_y', 'l_kl_zn', 'l_percep', 'l_g_gan'}),
    ([PAIRED, SOURCE, TARGET], {'l_rec_x', 'l_rec_y', 'l_kl_zn', 'l_kl_z', 'l_level', 'l_percep', 'l_g_gan'}),
])
def test_loss_terms_follow_domains(tmp_path, domains, present):
    model = make_model(tmp_path)
    model.feed_data(batch(domains))
    terms, _ = model.compute_losses(current_iter=2)
    assert set(terms) == present
    model.optimize_parameters(2)
    assert model.log_dict['skipped_g_large_grad'] == 0 and model.log_dict['l_total'] > 0


def test_target_levels_come_from_the_estimator(tmp_path):
    model = make_model(tmp_path)
    with torch.no_grad():  # the zero-initialised head outputs would block every gradient to the level input
        for p in model.net_g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.feed_data(batch([TARGET, TARGET]))
    terms, _ = model.compute_losses(current_iter=4)
    sum(terms.values()).backward()
    # no level loss on target samples, yet their KL/reconstruction reach net_le through its sigma_hat (reference)
    assert 'l_level' not in terms
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net_le.parameters())


def test_unknown_train_option(tmp_path):
    with pytest.raises(ValueError, match=r"unknown train options \['kl_weight'\]"):
        make_model(tmp_path, kl_weight=1.0)


def test_cpu_training_retains_the_heap_unless_disabled(tmp_path, monkeypatch):
    from senm_plugin import heap
    calls = []
    monkeypatch.setattr(heap, '_LIBC', object())  # whatever the C library, record instead of calling mallopt
    monkeypatch.setattr(heap, '_retain', lambda libc: calls.append(libc))
    monkeypatch.setattr(heap, '_permanent', False)
    make_model(tmp_path, retain_heap=False)
    assert calls == [] and heap._permanent is False
    make_model(tmp_path)
    assert len(calls) == 1 and heap._permanent is True


def test_paired_only_mode(tmp_path):
    model = make_model(tmp_path, paired_only=True)
    model.feed_data(batch([SOURCE, TARGET]))
    assert model.domain.tolist() == [PAIRED, PAIRED]
    del model.opt['train']['paired_only']
    model.feed_data({'gt': torch.rand(1, 3, 32, 32), 'lq': torch.rand(1, 3, 32, 32)})  # PairedImageDataset batch
    assert model.domain.tolist() == [PAIRED]


def test_bad_steps_are_skipped_and_counted(tmp_path):
    model = make_model(tmp_path, grad_skip_norm=1e-12)
    before = params_of(model.net_g)
    model.feed_data(batch([PAIRED, TARGET]))
    model.optimize_parameters(3)
    assert model.log_dict['skipped_g_large_grad'] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(model.net_g)))

    model = make_model(tmp_path)
    before, before_d = params_of(model.net_g), params_of(model.net_d)
    data = batch([PAIRED, TARGET])
    data['lq'][0, 0, 0, 0] = float('nan')
    model.feed_data(data)
    model.optimize_parameters(3)
    assert model.log_dict['skipped_g_nonfinite_loss'] == 1 and model.log_dict['skipped_d_nonfinite'] == 1
    assert all(torch.equal(a, b) for a, b in zip(before + before_d, params_of(model.net_g) + params_of(model.net_d)))


def test_a_run_of_skipped_steps_stops_training_naming_the_term(tmp_path, monkeypatch):
    model = make_model(tmp_path, max_skipped_steps=3)
    compute = model.compute_losses

    def faulty(current_iter, **kwargs):  # injected fault: the KL(z) term overflows from iteration 5 on
        terms, out = compute(current_iter, **kwargs)
        if current_iter >= 5:
            terms['l_kl_z'] = terms['l_kl_z'] * float('inf')
        return terms, out

    monkeypatch.setattr(model, 'compute_losses', faulty)
    model.feed_data(batch([PAIRED, SOURCE, TARGET]))
    for it in range(1, 7):
        model.optimize_parameters(it)  # 5 and 6 skipped, the run is not yet 3 long
    assert model.log_dict['skipped_g_nonfinite_loss'] == 2
    with pytest.raises(TrainingDivergedError, match=r'3 generator steps in a row.*iterations 5 to 7.*l_kl_z = inf'):
        model.optimize_parameters(7)
    # a good step in between resets the run
    model = make_model(tmp_path, max_skipped_steps=2, grad_skip_norm=1e-12)
    model.feed_data(batch([PAIRED, TARGET]))
    model.optimize_parameters(1)
    model.train_opt['grad_skip_norm'] = 1e12
    model.optimize_parameters(2)
    assert model.skip_run == []
    model.train_opt['grad_skip_norm'] = 1e-12
    model.optimize_parameters(3)
    with pytest.raises(TrainingDivergedError, match=r'gradient norm .* >= grad_skip_norm'):
        model.optimize_parameters(4)


def test_non_finite_weights_stop_training_and_are_never_saved(tmp_path):
    model = make_model(tmp_path)
    model.feed_data(batch([PAIRED, SOURCE, TARGET]))
    model.optimize_parameters(1)
    model.save(epoch=0, current_iter=1)
    good = (tmp_path / 'models' / 'net_g_1.pth').read_bytes()
    # injected fault: an optimizer step that writes a NaN into one weight
    step = model.optimizer_g.step

    def poisoned_step(*args, **kwargs):
        step(*args, **kwargs)
        with torch.no_grad():
            next(model.net_g.parameters()).view(-1)[0] = float('nan')

    model.optimizer_g.step = poisoned_step
    with pytest.raises(TrainingDivergedError, match=r'iteration 2: .*net_g\.\S+ non-finite'):
        model.optimize_parameters(2)
    with pytest.raises(NonFiniteWeightsError, match='refusing to save net_g_2.pth: 1 non-finite'):
        model.save(epoch=0, current_iter=2)
    assert not (tmp_path / 'models' / 'net_g_2.pth').exists()
    assert (tmp_path / 'models' / 'net_g_1.pth').read_bytes() == good
    assert not [p for p in (tmp_path / 'models').iterdir() if p.name.endswith('.tmp')]


def test_basicsr_train_stops_a_diverged_run_with_one_line(tmp_path):
    paired = write_pairs(str(tmp_path / 'paired'), num=2, size=32, seed=0)
    with open(TINY_YML) as f:
        opt = yaml.safe_load(f)
    opt['datasets']['train'].update(dataroot_paired_gt=paired[0], dataroot_paired_lq=paired[1],
                                    domain_frequency=[1, 0, 0], dataset_enlarge_ratio=20)
    del opt['val'], opt['datasets']['val']
    opt['train'].update(total_iter=30, max_skipped_steps=3)
    opt['train']['optim_g']['lr'] = 1e30  # injected fault: the first step throws every weight to ~1e30
    opt['logger']['save_checkpoint_freq'] = 1000
    yml = tmp_path / 'diverge.yml'
    yml.write_text(yaml.safe_dump(opt))
    proc = run_basicsr(['train', '-opt', str(yml)], cwd=tmp_path, check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    assert 'basicsr train: error: SeNMVAEModel: 3 generator steps in a row were skipped' in proc.stderr
    assert not list((tmp_path / 'experiments' / 'tiny_senm' / 'models').glob('net_g_*.pth'))


def test_checkpoint_round_trip(tmp_path):
    model = make_model(tmp_path)
    model.feed_data(batch([PAIRED, SOURCE, TARGET]))
    model.optimize_parameters(1)
    model.save(epoch=0, current_iter=1)
    for label in ('net_g', 'net_le', 'net_d'):
        assert os.path.isfile(tmp_path / 'models' / f'{label}_1.pth')
    # a bare state dict (as the reference saves) loads as well
    torch.save(model.net_le.state_dict(), tmp_path / 'bare_le.pth')
    opt = tiny_opt(tmp_path)
    opt['path'].update(pretrain_network_g=str(tmp_path / 'models' / 'net_g_1.pth'),
                       pretrain_network_d=str(tmp_path / 'models' / 'net_d_1.pth'),
                       pretrain_network_le=str(tmp_path / 'bare_le.pth'))
    torch.manual_seed(1)
    loaded = MODEL_REGISTRY.get('SeNMVAEModel')(opt)
    for a, b in ((model.net_g, loaded.net_g), (model.net_le, loaded.net_le), (model.net_d, loaded.net_d)):
        for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
            assert k == k2 and torch.equal(v, v2), k
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.net_g.translate(x, 0.1, deterministic=True),
                                   loaded.net_g.translate(x, 0.1, deterministic=True))


def test_basicsr_train_validation_and_resume_after_kill(tmp_path):
    paired = write_pairs(str(tmp_path / 'paired'), num=3, size=40, seed=0)
    unpaired = write_pairs(str(tmp_path / 'unpaired'), num=4, size=40, seed=1)
    val = write_pairs(str(tmp_path / 'val'), num=2, size=32, seed=2)
    roots = {'dataroot_paired_gt': paired[0], 'dataroot_paired_lq': paired[1], 'dataroot_source': unpaired[0],
             'dataroot_target': unpaired[1]}
    with open(TINY_YML) as f:
        opt = yaml.safe_load(f)
    for key, folder in roots.items():
        opt['datasets']['train'][key] = folder_to_lmdb(folder, str(tmp_path / f'{key[9:]}.lmdb'))
    opt['datasets']['train']['io_backend'] = {'type': 'lmdb'}
    opt['datasets']['val'].update(dataroot_gt=val[0], dataroot_lq=val[1])
    opt['train'].update(total_iter=40)
    opt['val']['val_freq'] = 2
    opt['logger']['save_checkpoint_freq'] = 2
    yml = tmp_path / 'tiny.yml'
    yml.write_text(yaml.safe_dump(opt))
    exp = tmp_path / 'experiments' / 'tiny_senm'

    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'senm_plugin.cli', 'train', '-opt', str(yml)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600  # generous: a loaded machine (parallel workers, other jobs) is slow, not wrong
    while not (exp / 'training_states' / '4.state').exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, 'no checkpoint after 600 s'
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (exp / 'models' / 'net_g_40.pth').exists()
    states = sorted(int(p.name.split('.')[0]) for p in (exp / 'training_states').glob('*.state'))
    assert (exp / 'visualization' / '000' / '000_2.png').exists()  # validation grids

    total = states[-1] + 4
    run_basicsr(['train', '-opt', str(yml), '--auto_resume', '--force_yml', f'train:total_iter={total}'],
                cwd=tmp_path, timeout=300)
    logs = sorted(exp.glob('train_tiny_senm_*.log'))
    text = logs[-1].read_text()
    assert 'Resuming training from epoch' in text and f'iter: {states[-1]}' in text
    for label in ('net_g', 'net_le', 'net_d'):
        assert (exp / 'models' / f'{label}_{total}.pth').exists()
    assert 'kld' in text and 'psnr_denoise' in text


def test_bf16_training_step_is_close_to_float32_and_keeps_float32_weights(tmp_path):
    data = batch([PAIRED, SOURCE, TARGET])
    losses = {}
    for mode in ('none', 'bf16'):
        model = make_model(tmp_path / mode, amp=mode)
        model.feed_data(data)
        torch.manual_seed(1)  # the same latent draws in both precisions
        terms, out = model.compute_losses(current_iter=5, deterministic=True)
        assert all(v.dtype == torch.float32 for v in terms.values()) and out['y_hat'].dtype == torch.float32
        losses[mode] = {k: v.item() for k, v in terms.items()}
        model.optimize_parameters(5)
        assert math.isfinite(model.log_dict['l_total']) and model.log_dict['skipped_g_nonfinite_loss'] == 0
        assert all(p.dtype == torch.float32 for p in model.net_g.parameters())
        model.save(epoch=0, current_iter=5)
        saved = torch.load(tmp_path / mode / 'models' / 'net_g_5.pth', map_location='cpu')['params']
        assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}
    for name in ('l_rec_x', 'l_rec_y', 'l_level'):  # bf16 keeps ~3 significant digits
        assert losses['bf16'][name] == pytest.approx(losses['none'][name], rel=0.05), name
    assert losses['bf16']['l_rec_y'] != losses['none']['l_rec_y']  # the forward did run in bfloat16


def test_amp_modes_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"train.amp must be one of \['bf16', 'fp16', 'none'\], got 'fp8'"):
        make_model(tmp_path, amp='fp8')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
            make_model(tmp_path, amp='fp16')
