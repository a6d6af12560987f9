"""Checks of a training option file before ``basicsr train`` reads any data or builds any network: registered class
names (with close-match suggestions), value types and ranges, paths that exist, devices that exist. Each problem is
one line; the run does not start while there is one."""
import difflib
import os

import yaml


def _suggest(name, choices):
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f'; did you mean {close[0]}?' if close else f'; registered: {", ".join(sorted(choices)[:12])}'


def _registered(kind, value, registry, where, problems):
    # BasicSR's Registry.get also finds names registered with its suffix (SRVGGNetCompact_basicsr)
    if not isinstance(value, str) or (value not in registry and f'{value}_basicsr' not in registry):
        problems.append(f'{where}: {kind} {value!r} is not registered{_suggest(value, _names(registry))}')


def _names(registry):
    return sorted({name[:-len('_basicsr')] if name.endswith('_basicsr') else name for name, _ in registry})


def _number(value, where, problems, integer=False, positive=True):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        hint = '; write 1e-3 as !!float 1e-3 in YAML' if isinstance(value, str) and not integer else ''
        problems.append(f'{where}: expected {"an integer" if integer else "a number"}, got {value!r} '
                        f'({type(value).__name__}){hint}')
    elif positive and value <= 0:
        problems.append(f'{where}: must be > 0, got {value}')


def _check_datasets(opt, problems):
    from basicsr.utils.registry import DATASET_REGISTRY
    for phase, data in (opt.get('datasets') or {}).items():
        if not isinstance(data, dict):
            problems.append(f'datasets.{phase}: expected a mapping, got {data!r}')
            continue
        _registered('dataset type', data.get('type'), DATASET_REGISTRY, f'datasets.{phase}.type', problems)
        for key, value in data.items():
            if (key.startswith('dataroot') or key.startswith('meta_info')) and isinstance(value, str) \
                    and not os.path.exists(value):
                problems.append(f'datasets.{phase}.{key}: {value} does not exist')
        for key in ('batch_size_per_gpu', 'gt_size'):
            if key in data:
                _number(data[key], f'datasets.{phase}.{key}', problems, integer=True)
        if isinstance(data.get('gt_size'), int) and not isinstance(data['gt_size'], bool) and data['gt_size'] > 0:
            _check_patch_fits(phase, data, opt.get('scale') or 1, problems)


def _smallest_image(root, limit=2000):
    """(h, w, name) of the smallest image of a folder or LMDB (its first ``limit`` files, by header), or None."""
    from senm_plugin.data.image_io import image_hw, list_images
    from senm_plugin.data.lmdb_io import is_lmdb, read_meta_info
    try:
        if is_lmdb(root):
            sizes = [(shape[0], shape[1], key) for key, shape in read_meta_info(root)]
        else:
            sizes = [(*image_hw(os.path.join(root, n)), n) for n in list_images(root, root)[:limit]]
    except (OSError, ValueError):
        return None  # unreadable data is the dataset's to report, with its own message
    return min(sizes, key=lambda s: min(s[0], s[1])) if sizes else None


def _check_patch_fits(phase, data, scale, problems):
    """gt_size (and gt_size / scale on low-quality roots) must fit in every image the patches are cut from."""
    for key, root in data.items():
        if not key.startswith('dataroot') or not isinstance(root, str) or not os.path.isdir(root):
            continue
        need = data['gt_size'] if 'gt' in key else data['gt_size'] // max(int(scale), 1)
        small = _smallest_image(root)
        if small and min(small[0], small[1]) < need:
            problems.append(f'datasets.{phase}.gt_size: {data["gt_size"]} does not fit {small[2]} in {key} '
                            f'({small[0]}x{small[1]}); lower gt_size or remove the image')


def _check_train(opt, problems):
    train = opt.get('train')
    if not isinstance(train, dict):
        problems.append('train: the section is missing or not a mapping')
        return
    _number(train.get('total_iter'), 'train.total_iter', problems, integer=True)
    for key, value in train.items():
        if key.startswith('optim_') and isinstance(value, dict):
            _number(value.get('lr'), f'train.{key}.lr', problems)
    if opt.get('model_type') == 'SeNMVAEModel':
        from senm_plugin.models.senmvae_model import DEFAULT_TRAIN, OTHER_TRAIN_KEYS
        known = set(DEFAULT_TRAIN) | set(OTHER_TRAIN_KEYS)
        for key in sorted(set(train) - known):
            problems.append(f'train.{key}: not a SeNMVAEModel option{_suggest(key, known)}')


def _check_device(opt, problems):
    num_gpu = opt.get('num_gpu', 'auto')
    if num_gpu == 'auto':
        return
    if isinstance(num_gpu, bool) or not isinstance(num_gpu, int) or num_gpu < 0:
        problems.append(f'num_gpu: expected 0, a number of GPUs or auto, got {num_gpu!r}')
        return
    import torch
    if num_gpu > torch.cuda.device_count():
        problems.append(f'num_gpu: {num_gpu} but this machine has {torch.cuda.device_count()} CUDA device(s); use 0 '
                        '(CPU) or auto')


def check_option_file(path, overridden=()):
    """Problems of the training option file ``path`` (empty when it can start); keys in ``overridden`` (set with
    ``--force_yml``) are not checked."""
    import senm_plugin  # noqa: F401  (registers the plugin's classes)
    from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
    if not os.path.isfile(path):
        return [f'option file {path} not found']
    try:
        with open(path) as f:
            opt = yaml.safe_load(f)
    except yaml.YAMLError as err:
        return [f'not valid YAML: {" ".join(str(err).split())}']
    if not isinstance(opt, dict):
        return [f'expected a mapping of options, got {type(opt).__name__} (empty file?)']
    problems = []
    for key in ('name', 'model_type'):
        if key not in opt:
            problems.append(f'{key}: missing')
    if 'model_type' in opt:
        _registered('model_type', opt['model_type'], MODEL_REGISTRY, 'model_type', problems)
    for key, value in opt.items():
        if key.startswith('network_') and isinstance(value, dict):
            _registered('network type', value.get('type'), ARCH_REGISTRY, f'{key}.type', problems)
    _check_datasets(opt, problems)
    _check_train(opt, problems)
    _check_device(opt, problems)
    return [p for p in problems if not any(p.startswith(o) for o in overridden)]


def forced_keys(argv):
    """Dotted keys (``train.total_iter``) that ``--force_yml k:k=v`` arguments in ``argv`` set."""
    keys, it = [], iter(argv)
    for arg in it:
        if arg == '--force_yml':
            for item in it:
                if item.startswith('-'):
                    break
                keys.append(item.split('=')[0].replace(':', '.'))
    return keys
