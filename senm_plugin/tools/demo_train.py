"""Training and scoring the demo's networks: its option templates (the repository's ``options/``, else the copy a
wheel ships as ``senm_plugin.options``), ``basicsr train`` runs and the denoisers' PSNR/SSIM on the test pairs."""
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import yaml

REPO_OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'options')


def template_path(name):
    """The demo's option template ``name``: the repository's ``options/`` (a source checkout or editable install,
    where users edit it), else the copy a wheel ships as ``senm_plugin.options``."""
    path = os.path.join(REPO_OPTIONS, *name.split('/'))
    if os.path.isfile(path):
        return path
    try:
        from importlib.resources import files
        packaged = files('senm_plugin.options').joinpath(*name.split('/'))
        if packaged.is_file():
            return str(packaged)
    except ModuleNotFoundError:
        pass
    raise FileNotFoundError(f'Demo option file {name} found neither in {REPO_OPTIONS} nor in the installed package '
                            '(senm_plugin/options); reinstall the plugin (pip install -e . from its repository)')


def load_template(name):
    """The demo's option template ``name`` (a path under ``options/``) as a dict."""
    with open(template_path(name)) as f:
        return yaml.safe_load(f)


def write_run(opt, out, iters, seed):
    """Set ``opt``'s iterations, seed and schedule, write it under ``out/options`` and clear its experiment folder;
    returns (option file, experiment folder)."""
    opt['manual_seed'] = seed
    opt['train']['total_iter'] = iters
    opt['logger']['save_checkpoint_freq'] = iters
    opt['logger']['print_freq'] = max(1, min(opt['logger'].get('print_freq', 20), iters // 5 or 1))
    opt['val']['val_freq'] = iters
    scheduler = opt['train'].get('scheduler', {})
    if scheduler.get('type') == 'CosineAnnealingRestartLR':
        scheduler['periods'] = [iters]
    elif scheduler.get('type') == 'MultiStepLR':
        scheduler['milestones'] = [max(1, (3 * iters) // 4)]
    exp_root = os.path.join(os.getcwd(), 'experiments', opt['name'])
    if os.path.isdir(exp_root):  # a re-run starts afresh rather than archiving old demo runs forever
        shutil.rmtree(exp_root)
    opt_path = os.path.join(out, 'options', f'{opt["name"]}.yml')
    os.makedirs(os.path.dirname(opt_path), exist_ok=True)
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return opt_path, exp_root


def train_command(opt_path):
    """The ``basicsr train`` command line of an option file, as a subprocess: BasicSR sets up its root logger once per
    process, so a second run in the same process would log to the first's file."""
    return [sys.executable, '-m', 'senm_plugin.cli', 'train', '-opt', opt_path]


def run_train(opt, out, iters, seed):
    """Run ``basicsr train`` on ``opt`` (iterations and seed set here) in a fresh experiment; returns its folder."""
    opt_path, exp_root = write_run(opt, out, iters, seed)
    print(f'$ basicsr train -opt {opt_path}', flush=True)
    subprocess.run(train_command(opt_path), check=True)
    return exp_root


def cpu_cores():
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


def run_trains(opts, out, iters, seed, jobs=1):
    """``run_train`` on each option dict of ``opts``, ``jobs`` runs at a time; returns their experiment folders.

    Small networks use several cores poorly: two runs of one thread each finish sooner than two runs one after the
    other with two threads each. Parallel runs split the cores between them and log to ``out/logs/NAME.log``.
    """
    if jobs <= 1 or len(opts) <= 1:
        return [run_train(opt, out, iters, seed) for opt in opts]
    threads = str(max(1, cpu_cores() // jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    os.makedirs(os.path.join(out, 'logs'), exist_ok=True)
    pending = [(opt['name'], *write_run(opt, out, iters, seed)) for opt in opts]
    roots, running = [root for _, _, root in pending], []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name, opt_path, _ = pending.pop(0)
                log = os.path.join(out, 'logs', f'{name}.log')
                print(f'$ basicsr train -opt {opt_path}  (log: {log}, {threads} thread(s))', flush=True)
                with open(log, 'w') as f:
                    proc = subprocess.Popen(train_command(opt_path), stdout=f, stderr=subprocess.STDOUT, env=env)
                running.append((name, log, proc, time.time()))
            time.sleep(0.5)
            for run in [r for r in running if r[2].poll() is not None]:
                running.remove(run)
                name, log, proc, start = run
                if proc.returncode:
                    with open(log) as f:
                        tail = ''.join(f.readlines()[-20:])
                    raise RuntimeError(f'basicsr train of {name} failed (exit {proc.returncode}); the end of {log}:\n'
                                       f'{tail}')
                print(f'    {name}: done in {time.time() - start:.0f} s', flush=True)
    finally:
        for _, _, proc, _ in running:
            proc.kill()
    return roots


def evaluate_denoiser(net_path, network_opt, test_gt, test_lq):
    """PSNR/SSIM of the noisy inputs and of a trained denoiser's outputs on the test pairs (BasicSR metrics)."""
    import torch
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import img2tensor, tensor2img
    from senm_plugin.checkpoint import load_network_weights
    net = load_network_weights(build_network(dict(network_opt)), net_path).eval()
    scores = {'noisy_psnr': [], 'noisy_ssim': [], 'psnr': [], 'ssim': []}
    for name in sorted(os.listdir(test_gt)):
        gt = cv2.imread(os.path.join(test_gt, name))
        lq = cv2.imread(os.path.join(test_lq, name))
        with torch.inference_mode():
            out = tensor2img(net(img2tensor(lq.astype(np.float32) / 255.0).unsqueeze(0)))
        scores['noisy_psnr'].append(calculate_psnr(lq, gt, crop_border=0))
        scores['noisy_ssim'].append(calculate_ssim(lq, gt, crop_border=0))
        scores['psnr'].append(calculate_psnr(out, gt, crop_border=0))
        scores['ssim'].append(calculate_ssim(out, gt, crop_border=0))
    return {k: float(np.mean(v)) for k, v in scores.items()}
