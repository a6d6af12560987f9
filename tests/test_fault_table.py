"""Bad input to every verb, one case per row: each ends with its exit code and one message naming the file or option
at fault, prints no traceback, and leaves every input and earlier output byte for byte as it was."""
import hashlib
import json
import os

import cv2
import numpy as np
import pytest
import torch
import yaml

from helpers import TINY_LEVEL_OPT, TINY_SENMVAE_OPT, save_tiny_senmvae, write_pairs
from senm_plugin import cli


def _tree_digest(root):
    """sha256 of every file under ``root`` with its relative path and mode (a changed, added or removed file shows)."""
    digest = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                digest[os.path.relpath(path, root)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mode)
    return digest


@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    """A workspace of inputs and earlier outputs the cases point at (built once; the cases must not change it)."""
    root = tmp_path_factory.mktemp('faults')
    p = {'root': str(root)}
    p['gt'], p['lq'] = write_pairs(str(root / 'pairs'), num=3, size=32)
    p['model'], p['le'], _ = save_tiny_senmvae(str(root / 'models'))
    p['net'] = json.dumps(TINY_SENMVAE_OPT)
    p['le_net'] = json.dumps(TINY_LEVEL_OPT)
    assert cli.main(['prepare', 'folders', '--paired-gt', p['gt'], '--paired-lq', p['lq'], '--source', p['gt'],
                     '--target', p['lq'], '--out', str(root / 'lmdb'), '--workers', '1']) == 0
    p['lmdb'] = str(root / 'lmdb')
    # an LMDB whose meta_info lists a key it does not hold
    broken = root / 'broken.lmdb'
    os.makedirs(broken)
    for name in os.listdir(root / 'lmdb' / 'source.lmdb'):
        with open(root / 'lmdb' / 'source.lmdb' / name, 'rb') as f, open(broken / name, 'wb') as g:
            g.write(f.read())
    with open(broken / 'meta_info.txt', 'a') as f:
        f.write('not_there.png (32,32,3) 1\n')
    p['broken_lmdb'] = str(broken)
    # an earlier generate output (must survive every failed run pointed at it)
    assert cli.main(['generate', '--model', p['model'], '--network-opt', p['net'], '--level-network-opt', p['le_net'],
                     '--input', p['gt'], '--out', str(root / 'gen'), '--levels', 'fixed:0.05', '--format', 'png',
                     '--device', 'cpu']) == 0
    p['gen'] = str(root / 'gen')
    # odd inputs
    for name, files in {'clash': ('a.png', 'a.jpg'), 'corrupt': ('ok.png', 'bad.png'), 'small': ('s.png', )}.items():
        os.makedirs(root / name)
        for f in files:
            side = 8 if name == 'small' else 32
            cv2.imwrite(str(root / name / f), np.full((side, side, 3), 128, np.uint8))
        p[name] = str(root / name)
    (root / 'corrupt' / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n not an image')
    os.makedirs(root / 'empty')
    p['empty'] = str(root / 'empty')
    (root / 'notes.txt').write_text('not a folder')
    p['file'] = str(root / 'notes.txt')
    (root / 'truncated.pth').write_bytes(open(p['model'], 'rb').read()[:300])
    p['truncated'] = str(root / 'truncated.pth')
    torch.save({'params': {'conv.weight': torch.zeros(4, 3, 3, 3)}}, str(root / 'other_arch.pth'))
    p['other'] = str(root / 'other_arch.pth')
    p['train_yml'] = _train_yml(root, p)
    p['digest'] = _tree_digest(str(root))
    return p


def _train_option(p, **change):
    opt = {
        'name': 'fault', 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': {'name': 't', 'type': 'PairedImageDataset', 'dataroot_gt': p['gt'],
                               'dataroot_lq': p['lq'], 'io_backend': {'type': 'disk'}, 'gt_size': 16,
                               'batch_size_per_gpu': 2, 'num_worker_per_gpu': 0, 'dataset_enlarge_ratio': 1}},
        'network_g': {'type': 'SRVGGNetCompact', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_conv': 2,
                      'upscale': 1, 'act_type': 'prelu'},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': 2, 'warmup_iter': -1,
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [4], 'gamma': 0.5},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 100, 'use_tb_logger': False}
    }
    for dotted, value in change.items():
        *path, last = dotted.split('__')
        node = opt
        for key in path:
            node = node[key]
        node[last] = value
    return opt


def _train_yml(root, p):
    """Broken option files, one per train case, written into the workspace (so they are hashed too)."""
    os.makedirs(root / 'opt')
    cases = {
        'model_type': {'model_type': 'SRModle'},
        'network': {'network_g__type': 'SRVGGNetCompakt'},
        'total_iter': {'train__total_iter': 'eight'},
        'lr': {'train__optim_g__lr': '1e-3'},
        'dataroot': {'datasets__train__dataroot_lq': str(root / 'missing')},
        'num_gpu': {'num_gpu': 99},
        'gt_size': {'datasets__train__gt_size': 64},
        'batch': {'datasets__train__batch_size_per_gpu': 0},
        'dataset_type': {'datasets__train__type': 'PairedImageDatset'},
    }
    paths = {}
    for name, change in cases.items():
        paths[name] = str(root / 'opt' / f'{name}.yml')
        with open(paths[name], 'w') as f:
            yaml.safe_dump(_train_option(p, **change), f)
    senm = _train_option(p, model_type='SeNMVAEModel')
    senm['train']['kl_annealing'] = 100
    paths['senm_key'] = str(root / 'opt' / 'senm_key.yml')
    with open(paths['senm_key'], 'w') as f:
        yaml.safe_dump(senm, f)
    (root / 'opt' / 'empty.yml').write_text('')
    (root / 'opt' / 'bad.yml').write_text('name: [unclosed\n')
    paths['empty'], paths['bad'] = str(root / 'opt' / 'empty.yml'), str(root / 'opt' / 'bad.yml')
    return paths


G = ['generate', '--model', '{model}', '--network-opt', '{net}', '--level-network-opt', '{le_net}', '--device', 'cpu']
E = ['evaluate', 'noise', '--clean', '{gt}', '--real', '{lq}']
EM = E + ['--model', '{model}', '--network-opt', '{net}', '--level-network-opt', '{le_net}', '--device', 'cpu']

# id, argv ({key} from the workspace, {out} a fresh folder), exit code, fragments the message must hold
CASES = [
    # prepare
    ('prepare-no-domain', ['prepare', 'folders', '--out', '{out}'], 1, ['--paired-gt']),
    ('prepare-missing-folder', ['prepare', 'folders', '--source', '{root}/nowhere', '--out', '{out}'], 1,
     ['--source', 'nowhere']),
    ('prepare-empty-folder', ['prepare', 'folders', '--source', '{empty}', '--out', '{out}'], 1, ['{empty}']),
    ('prepare-lq-without-gt', ['prepare', 'folders', '--paired-lq', '{lq}', '--out', '{out}'], 1, ['--paired-gt']),
    ('prepare-same-folder', ['prepare', 'folders', '--paired-gt', '{gt}', '--paired-lq', '{gt}', '--out', '{out}'],
     1, ['same folder']),
    ('prepare-crop-too-big', ['prepare', 'folders', '--source', '{gt}', '--crop', '64', '--out', '{out}'], 1,
     ['--crop 64']),
    ('prepare-corrupt-image', ['prepare', 'folders', '--source', '{corrupt}', '--out', '{out}'], 1, ['bad.png']),
    ('prepare-key-clash', ['prepare', 'folders', '--source', '{clash}', '--out', '{out}'], 1,
     ['a.jpg', 'a.png', 'same LMDB key']),
    ('prepare-compress-level', ['prepare', 'folders', '--source', '{gt}', '--compress-level', '12', '--out', '{out}'],
     2, ['--compress-level']),
    ('prepare-out-is-file', ['prepare', 'folders', '--source', '{gt}', '--out', '{file}'], 1, ['{file}']),
    ('prepare-verify-not-lmdb', ['prepare', 'verify', '{gt}'], 1, ['{gt}']),
    ('prepare-verify-missing-key', ['prepare', 'verify', '{broken_lmdb}'], 1, ['not_there']),
    ('prepare-sidd-missing-src', ['prepare', 'sidd', '--src', '{root}/nowhere', '--out', '{out}'], 1, ['nowhere']),
    # generate
    ('generate-missing-model', ['generate', '--model', '{root}/none.pth', '--input', '{gt}', '--out', '{out}'], 1,
     ['none.pth']),
    ('generate-truncated-model', G[:1] + ['--model', '{truncated}'] + G[3:] + ['--input', '{gt}', '--out', '{out}'],
     1, ['truncated.pth']),
    ('generate-other-architecture', G[:1] + ['--model', '{other}'] + G[3:] + ['--input', '{gt}', '--out', '{out}'],
     1, ['other_arch.pth', 'missing keys']),
    ('generate-missing-input', G + ['--input', '{root}/nowhere', '--out', '{out}'], 1, ['--input', 'nowhere']),
    ('generate-empty-input', G + ['--input', '{empty}', '--out', '{out}'], 1, ['--input', '{empty}']),
    ('generate-corrupt-input', G + ['--input', '{corrupt}', '--out', '{out}', '--levels', 'fixed:0.05'], 1,
     ['bad.png']),
    ('generate-key-clash', G + ['--input', '{clash}', '--out', '{out}'], 1, ['a.jpg', 'a.png', 'same LMDB key']),
    ('generate-level-too-big', G + ['--input', '{gt}', '--out', '{out}', '--levels', 'fixed:25'], 1,
     ['--levels fixed:25']),
    ('generate-level-spec', G + ['--input', '{gt}', '--out', '{out}', '--levels', 'loud'], 1, ['--levels']),
    ('generate-estimate-missing', G + ['--input', '{gt}', '--out', '{out}', '--levels', 'estimate:{root}/nowhere'],
     1, ['nowhere']),
    ('generate-temperature', G + ['--input', '{gt}', '--out', '{out}', '--temperature', '-2'], 1, ['--temperature']),
    ('generate-batch-size', G + ['--input', '{gt}', '--out', '{out}', '--batch-size', '-1'], 1, ['--batch-size']),
    ('generate-level-nan', G + ['--input', '{gt}', '--out', '{out}', '--levels', 'fixed:nan'], 1,
     ['--levels fixed:nan']),
    ('generate-compress-level', G + ['--input', '{gt}', '--out', '{out}', '--compress-level', '99'], 1,
     ['--compress-level']),
    ('generate-out-is-input', G + ['--input', '{gt}', '--out', '{gt}', '--overwrite', '--format', 'png'], 1,
     ['--out']),
    ('generate-overwrite-parent-of-input',
     G + ['--input', '{gt}', '--out', '{root}/pairs', '--overwrite', '--format', 'png'], 1, ['--out']),
    ('generate-out-is-file', G + ['--input', '{gt}', '--out', '{file}', '--levels', 'fixed:0.05'], 1, ['{file}']),
    ('generate-other-settings', G + ['--input', '{gt}', '--out', '{gen}', '--levels', 'fixed:0.1', '--format', 'png'],
     1, ['--overwrite']),
    ('generate-format', G + ['--input', '{gt}', '--out', '{out}', '--format', 'tiff'], 2, ['--format']),
    # evaluate
    ('evaluate-missing-clean', ['evaluate', 'noise', '--clean', '{root}/nowhere', '--real', '{lq}', '--generated',
                                '{lq}', '--out', '{out}'], 1, ['nowhere']),
    ('evaluate-names-differ', E + ['--generated', '{small}', '--out', '{out}'], 1, ['--generated']),
    ('evaluate-max-images', E + ['--generated', '{lq}', '--out', '{out}', '--max-images', '-2'], 1, ['--max-images']),
    ('evaluate-batch-size', EM + ['--out', '{out}', '--batch-size', '-1'], 1, ['--batch-size']),
    ('evaluate-temperature', EM + ['--out', '{out}', '--temperature', '-2'], 1, ['--temperature']),
    ('evaluate-no-level-model', EM + ['--out', '{out}', '--levels', 'estimate:{lq}', '--level-model',
                                      '{root}/none.pth'], 1, ['--levels estimate:', 'none.pth', 'not found']),
    ('evaluate-other-architecture', E + ['--model', '{other}', '--network-opt', '{net}', '--device', 'cpu', '--out',
                                         '{out}'], 1, ['other_arch.pth', 'missing keys']),
    ('evaluate-out-is-file', E + ['--generated', '{lq}', '--out', '{file}'], 1, ['{file}']),
    ('evaluate-no-source', E + ['--out', '{out}'], 2, ['--model', '--generated']),
    # train (the option file is checked before any data is read or network built)
    ('train-missing-option-file', ['train', '-opt', '{root}/none.yml'], 2, ['none.yml', 'not found']),
    ('train-empty-yaml', ['train', '-opt', '{opt_empty}'], 2, ['empty.yml', 'expected a mapping']),
    ('train-malformed-yaml', ['train', '-opt', '{opt_bad}'], 2, ['bad.yml', 'not valid YAML']),
    ('train-model-type', ['train', '-opt', '{opt_model_type}'], 2, ['model_type', 'did you mean SRModel?']),
    ('train-network-type', ['train', '-opt', '{opt_network}'], 2, ['network_g.type', 'SRVGGNetCompact?']),
    ('train-dataset-type', ['train', '-opt', '{opt_dataset_type}'], 2, ['datasets.train.type', 'PairedImageDataset?']),
    ('train-total-iter', ['train', '-opt', '{opt_total_iter}'], 2, ['train.total_iter', "'eight'"]),
    ('train-lr-string', ['train', '-opt', '{opt_lr}'], 2, ['train.optim_g.lr', '!!float']),
    ('train-missing-dataroot', ['train', '-opt', '{opt_dataroot}'], 2, ['datasets.train.dataroot_lq', 'missing']),
    ('train-num-gpu', ['train', '-opt', '{opt_num_gpu}'], 2, ['num_gpu: 99']),
    ('train-gt-size', ['train', '-opt', '{opt_gt_size}'], 2, ['datasets.train.gt_size: 64', '32x32']),
    ('train-batch-size', ['train', '-opt', '{opt_batch}'], 2, ['datasets.train.batch_size_per_gpu', '> 0']),
    ('train-senm-key', ['train', '-opt', '{opt_senm_key}'], 2, ['train.kl_annealing', 'not a SeNMVAEModel option']),
    # export
    ('export-missing-model', ['export', 'onnx', '--model', '{root}/none.pth', '--arch', 'ScaoedNet', '--out',
                              '{out}/m.onnx'], 1, ['none.pth']),
    ('export-other-architecture', ['export', 'onnx', '--model', '{other}', '--arch', 'SeNMVAE-translate',
                                   '--network-opt', '{net}', '--out', '{out}/m.onnx'], 1, ['other_arch.pth']),
    ('export-unknown-arch', ['export', 'onnx', '--model', '{model}', '--arch', 'UNet', '--out', '{out}/m.onnx'], 2,
     ['--arch']),
    # the command line itself
    ('unknown-verb', ['trian'], 2, ['unknown verb', 'trian']),
]


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_clear_message_and_changes_nothing(ws, case, tmp_path, capsys):
    name, argv, code, fragments = case
    keys = {**{k: v for k, v in ws.items() if isinstance(v, str)},
            **{f'opt_{k}': v for k, v in ws['train_yml'].items()}, 'out': str(tmp_path / 'out')}
    argv = [a.format(**keys) for a in argv]
    try:
        got = cli.main(argv)
    except SystemExit as err:  # argparse's usage errors
        got = err.code
    out, err = capsys.readouterr()
    text = out + err
    assert got == code, (name, got, text[-2000:])
    assert 'Traceback' not in text
    for fragment in fragments:
        assert fragment.format(**keys) in text, (name, fragment, text[-2000:])
    assert _tree_digest(ws['root']) == ws['digest'], f'{name} changed an input or an earlier output'
    if name.startswith('train'):
        assert not os.path.exists('experiments/fault')  # nothing started
