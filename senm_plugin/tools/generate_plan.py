"""What a ``basicsr generate`` run will do before it writes anything: its settings (with the temperature fitted for
``--temperature auto``), the level of every image, and the fingerprint that decides whether an output folder holds
the same generation."""
import hashlib
import json
from os import path as osp

from senm_plugin.fileutil import content_stamp, file_sha256
from senm_plugin.noise.calibration import calibrate_temperature
from senm_plugin.noise.levels import parse_levels, plan_levels, real_levels
from senm_plugin.noise.model import find_level_model, network_options


def plan(cfg, shard, net, images, device):
    """The settings of a generation (temperature fitted for ``auto``) and the level of every image; the main rank
    does what reads files or fits, the others receive it."""
    seed = int(cfg['seed'])
    calibration = None
    if cfg['temperature'] == 'auto':
        cfg['temperature'], calibration = shard.share(
            calibrate_temperature(net, cfg['calibrate'], cfg['residual'], seed, device) if shard.main else None)
    settings = {
        'model': osp.abspath(cfg['model']),
        'model_sha256': file_sha256(cfg['model']),
        'network_g': network_options(cfg['network_g'], 'network_g', '--network-opt'),
        'input': osp.abspath(cfg['input']),
        'levels': cfg['levels'],
        'temperature': float(cfg['temperature']),
        'normalize': bool(cfg['normalize']),
        'residual': cfg['residual'] or False,
        'seed': seed,
        'format': cfg['format'],
        'compress_level': int(cfg['compress_level']),
        'rng_device': device.type,  # CPU and CUDA random streams differ
    }
    if calibration is not None:
        settings['calibration'] = calibration
    mode, arg = parse_levels(cfg['levels'])
    estimates = None
    if mode == 'estimate':
        def find():
            return find_level_model(cfg['level_model'], cfg['model'], cfg['levels'])

        if cfg['level_estimator'] == 'network':
            find()  # on every rank: a missing network stops them all alike
        estimates, facts = shard.share(
            real_levels(arg, cfg['level_estimator'], find, cfg['calibrate'], cfg['network_le'], cfg['network_g'],
                        cfg['batch_size'], device, cfg['param_key']) if shard.main else None)
        settings.update(facts, level_pick=cfg['level_pick'])
        settings['estimates'] = {'source': osp.abspath(arg), 'count': len(estimates),
                                 'mean': float(estimates.mean()), 'min': float(estimates.min()),
                                 'max': float(estimates.max())}
    return settings, plan_levels(mode, arg, len(images), seed, estimates, cfg['level_pick'])


def fingerprint(settings, images):
    """What identifies a generation: its settings (checkpoints by content, not path: a moved one still resumes),
    the image names and a stamp of the input files."""
    identity = {k: v for k, v in settings.items() if k not in ('model', 'level_model')}
    content = content_stamp(images.files if images.files is not None else
                            [osp.join(images.path, n) for n in ('data.mdb', 'meta_info.txt')])
    return hashlib.sha256(json.dumps([identity, images.names, content], sort_keys=True).encode()).hexdigest()[:16]
