"""Checkpoint files: atomic writing and safe, explicit loading of network weights and training states.

Network weights are read and written as ``.pth`` (torch pickles, loaded with ``weights_only``) or ``.safetensors``,
chosen by the file's extension. A BasicSR file ``{'params': sd, 'params_ema': sd}`` is stored in safetensors as the
flat keys ``params/<name>``, ``params_ema/<name>`` with ``format: basicsr`` in the header; a bare state dict as it is.
Training states (optimizer and scheduler states) stay ``.state`` torch files.
"""
import os
import pickle
import zipfile

import torch

from senm_plugin.fileutil import atomic_write, remove_stale_temps


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, not a state dict, or with the wrong keys."""


class NonFiniteWeightsError(CheckpointError):
    """Weights with NaN or infinity, which are never written to a checkpoint."""


SAFETENSORS_EXT = '.safetensors'


def is_safetensors(path):
    return str(path).endswith(SAFETENSORS_EXT)


def to_safetensors(obj):
    """(flat tensors, header metadata) of a bare state dict or a BasicSR ``{param_key: state dict}`` file."""
    if not isinstance(obj, dict):
        raise CheckpointError(f'safetensors holds state dicts only, not a {type(obj).__name__}')
    if all(torch.is_tensor(v) for v in obj.values()):
        return {k: v.detach().contiguous().clone() for k, v in obj.items()}, {'format': 'state_dict'}
    flat = {}
    for key, state in obj.items():
        if not (isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values())):
            raise CheckpointError(f'safetensors holds state dicts only; entry {key!r} is not one')
        flat.update({f'{key}/{k}': v.detach().contiguous().clone() for k, v in state.items()})
    return flat, {'format': 'basicsr', 'param_keys': ','.join(obj)}


def from_safetensors(flat, metadata):
    """Inverse of ``to_safetensors``."""
    if (metadata or {}).get('format') != 'basicsr':
        return flat
    out = {key: {} for key in metadata['param_keys'].split(',')}
    for name, tensor in flat.items():
        key, _, rest = name.partition('/')
        out[key][rest] = tensor
    return out


def atomic_save(obj, path):
    """``torch.save`` (or safetensors, by extension) through ``fileutil.atomic_write``, synced to disk.

    A process killed while saving leaves at most a stray ``.tmp`` file, never a truncated ``path``; the next save of
    the same file removes it.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temps(folder, prefix=f'.{os.path.basename(path)}.')  # never a whole file, never read

    def write(f):
        if is_safetensors(path):
            from safetensors.torch import save
            flat, metadata = to_safetensors(obj)
            f.write(save(flat, metadata=metadata))
        else:
            torch.save(obj, f)

    atomic_write(path, write, sync=True)


def safe_load(path, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` (or safetensors by extension) and an error that names the file when
    it is unusable."""
    if not os.path.isfile(path):
        raise CheckpointError(f'Checkpoint not found: {path}')
    try:
        if is_safetensors(path):
            from safetensors import SafetensorError, safe_open
            try:
                with safe_open(path, framework='pt', device=str(torch.device(map_location))) as f:
                    return from_safetensors({k: f.get_tensor(k) for k in f.keys()}, f.metadata())
            except SafetensorError as err:
                raise ValueError(str(err)) from err
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as err:
        raise CheckpointError(f'Cannot read checkpoint {path} ({os.path.getsize(path)} bytes): it is truncated, '
                              f'corrupt (a run killed while saving it, an interrupted download), or holds objects '
                              f'other than tensors and plain containers. '
                              f'Cause: {type(err).__name__}: {err}') from err


def extract_state_dict(loaded, param_key='params', path='<checkpoint>'):
    """The network state dict inside a loaded checkpoint.

    Accepts BasicSR files (``{'params': ..., 'params_ema': ...}``) and bare state dicts as the reference
    repositories save them. Falls back from ``params_ema`` to ``params``; strips DDP's ``module.`` prefix.
    """
    if not isinstance(loaded, dict):
        raise CheckpointError(f'{path} holds a {type(loaded).__name__}, expected a state dict or {{"params": ...}}.')
    if param_key is not None and param_key in loaded and isinstance(loaded[param_key], dict):
        state = loaded[param_key]
    elif 'params' in loaded and isinstance(loaded['params'], dict):
        state = loaded['params']
    elif all(torch.is_tensor(v) for v in loaded.values()):
        state = loaded  # a bare state dict
    else:
        raise CheckpointError(f'{path} has no "{param_key}" entry and is not a bare state dict; '
                              f'top-level keys: {sorted(loaded)[:10]}')
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}


def check_state_matches(net, state, path):
    """Raise a short CheckpointError (counts and the first few keys) when ``state`` does not fit ``net`` strictly."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        lines = [f'Checkpoint {path} does not match {type(net).__name__}:']
        if missing:
            lines.append(f'  {len(missing)} missing keys, e.g. {missing[:5]}')
        if unexpected:
            lines.append(f'  {len(unexpected)} unexpected keys, e.g. {unexpected[:5]}')
        if wrong_shape:
            lines.append(f'  {len(wrong_shape)} keys of another shape, e.g.')
        for k in wrong_shape[:5]:
            lines.append(f'  {k}: checkpoint {tuple(state[k].shape)}, network {tuple(own[k].shape)}')
        lines.append('Check the network options (e.g. num_feat, num_blocks) against the ones the checkpoint was '
                     'trained with, or load with strict_load: false.')
        raise CheckpointError('\n'.join(lines))
    return wrong_shape


def load_network_weights(net, path, param_key='params', strict=True):
    """Load a checkpoint file into ``net`` with a clear error listing missing, unexpected and mis-shaped keys."""
    state = extract_state_dict(safe_load(path), param_key, path)
    if strict:
        check_state_matches(net, state, path)
    else:
        own = net.state_dict()
        state = {k: v for k, v in state.items() if k not in own or own[k].shape == v.shape}
    net.load_state_dict(state, strict=strict)
    return net
