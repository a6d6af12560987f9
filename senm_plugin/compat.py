"""The one place that adapts BasicSR 1.4.2 to current torch / torchvision and to CPU-only machines.

Every adaptation names the breakage it fixes, is idempotent, and leaves an already-fixed BasicSR working:
the shim for the removed torchvision module is only installed when that module is missing, and the replaced
BasicSR functions keep their signatures and behaviour on GPUs.

``apply()`` must run before the first ``import basicsr``; ``import senm_plugin`` does that.
"""
import collections
import os
import sys
import types

import torch

_APPLIED = False


def _shim_functional_tensor():
    """BasicSR 1.4.2 ``basicsr/data/degradations.py`` imports ``torchvision.transforms.functional_tensor``,
    which torchvision 0.17 removed; provide the one function it uses from its new home."""
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401
    except ImportError:
        from torchvision.transforms import functional
        shim = types.ModuleType('torchvision.transforms.functional_tensor')
        shim.rgb_to_grayscale = functional.rgb_to_grayscale
        sys.modules['torchvision.transforms.functional_tensor'] = shim


def _default_device():
    return torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() else torch.device('cpu')


def pytorch_backend(backend='nccl'):
    """The process-group backend of a torchrun launch on this machine; selects this rank's GPU when it gets one."""
    num_gpus = torch.cuda.device_count()
    local_ranks = int(os.environ.get('LOCAL_WORLD_SIZE', os.environ.get('WORLD_SIZE', 1)))
    if num_gpus == 0 or num_gpus < local_ranks:
        return 'gloo'
    torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ['RANK'])) % num_gpus)
    return f'cpu:gloo,cuda:{backend}' if backend == 'nccl' else backend


def _patch_dist_util():
    """``basicsr/utils/dist_util.py`` always uses nccl and calls ``torch.cuda.set_device(rank % 0)`` on a CPU-only
    machine (ZeroDivisionError). Use nccl with a device per rank on GPUs and gloo on CPUs, as torchrun users expect;
    with fewer GPUs than local ranks (two ranks on one GPU: NCCL refuses a GPU shared by ranks) gloo as well, and
    with a GPU per rank gloo for CPU tensors beside nccl (a ``num_gpu: 0`` run on a GPU machine keeps its model on
    the CPU, and BasicSR starts the process group before it reads num_gpu)."""
    from basicsr.utils import dist_util, options
    import torch.distributed as dist

    def _init_dist_pytorch(backend, **kwargs):
        dist.init_process_group(backend=pytorch_backend(backend), **kwargs)

    original_slurm = dist_util._init_dist_slurm

    def _init_dist_slurm(backend, port=None):
        if torch.cuda.device_count() > 0:
            return original_slurm(backend, port)
        # Same environment set-up as BasicSR's, without the CUDA device selection.
        import subprocess
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_PORT'] = str(port) if port is not None else os.environ.get('MASTER_PORT', '29500')
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        dist.init_process_group(backend='gloo')

    def init_dist(launcher, backend='nccl', **kwargs):
        import torch.multiprocessing as mp
        if mp.get_start_method(allow_none=True) is None:
            mp.set_start_method('spawn')
        if launcher == 'pytorch':
            _init_dist_pytorch(backend, **kwargs)
        elif launcher == 'slurm':
            _init_dist_slurm(backend, **kwargs)
        else:
            raise ValueError(f'Invalid launcher type: {launcher}')

    dist_util._init_dist_pytorch = _init_dist_pytorch
    dist_util._init_dist_slurm = _init_dist_slurm
    dist_util.init_dist = init_dist
    options.init_dist = init_dist  # options.py imported the name before we replaced it


def _patch_resume():
    """``basicsr/train.py`` ``load_resume_state`` maps storages with ``.cuda()`` (fails on CPU) and, on torch >= 2.6,
    ``torch.load``'s ``weights_only`` default rejects the ``collections.Counter`` that BasicSR's MultiStep schedulers
    keep in their state. Load resume states with ``weights_only=True`` onto the run's device and allow Counter."""
    import basicsr.train as basicsr_train
    from basicsr.utils import check_resume, scandir
    from .checkpoint import SAFETENSORS_EXT, safe_load

    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals([collections.Counter])

    def load_resume_state(opt):
        resume_state_path = None
        device = _default_device() if opt.get('num_gpu', 0) != 0 else torch.device('cpu')
        if opt['auto_resume']:
            state_dir = opt['path'].get('training_states') or os.path.join('experiments', opt['name'],
                                                                           'training_states')
            if os.path.isdir(state_dir):
                states = [
                    int(v[:-len('.state')]) for v in scandir(state_dir, suffix='.state', recursive=False)
                    if v[:-len('.state')].isdigit()
                ]
                resume_state_path = _newest_complete_state(opt, state_dir, sorted(states, reverse=True))
                if resume_state_path is not None:
                    opt['path']['resume_state'] = resume_state_path
        elif opt['path'].get('resume_state'):
            resume_state_path = opt['path']['resume_state']
        if resume_state_path is None:
            return None
        resume_state = safe_load(resume_state_path, map_location=device)
        check_resume(opt, resume_state['iter'])
        for key, path in list(opt['path'].items()):  # BasicSR names .pth files; a run may have saved safetensors
            if key.startswith('pretrain_network_') and isinstance(path, str) and path.endswith('.pth') \
                    and not os.path.isfile(path) and os.path.isfile(path[:-len('.pth')] + SAFETENSORS_EXT):
                opt['path'][key] = path[:-len('.pth')] + SAFETENSORS_EXT
        return resume_state

    basicsr_train.load_resume_state = load_resume_state


def _newest_complete_state(opt, state_dir, iters):
    """The newest ``<iter>.state`` of ``iters`` (newest first) that reads and whose network files (``.pth`` or
    ``.safetensors``) all read too; older ones are taken, with a warning, when the newest are incomplete (a run
    killed while saving, a file lost)."""
    import logging
    from .checkpoint import SAFETENSORS_EXT, CheckpointError, safe_load
    ignored = opt['path'].get('ignore_resume_networks') or []
    labels = [k.replace('network_', '') for k in opt if k.startswith('network_') and k not in ignored]
    skipped = []
    for it in iters:
        state_path = os.path.join(state_dir, f'{it}.state')
        try:
            safe_load(state_path)
            for label in labels:
                path = os.path.join(opt['path']['models'], f'net_{label}_{it}.pth')
                if not os.path.isfile(path) and os.path.isfile(path[:-len('.pth')] + SAFETENSORS_EXT):
                    path = path[:-len('.pth')] + SAFETENSORS_EXT
                safe_load(path)
        except CheckpointError as err:
            skipped.append(f'{it}.state ({str(err).splitlines()[0][:200]})')
            continue
        if skipped:
            logging.getLogger('basicsr').warning(
                f'--auto_resume: skipped incomplete checkpoints {"; ".join(skipped)}; resuming from {it}.state')
            print(f'basicsr train: --auto_resume skipped {len(skipped)} incomplete checkpoint(s) '
                  f'({", ".join(s.split()[0] for s in skipped)}); resuming from iteration {it}', file=sys.stderr)
        return state_path
    if skipped:
        raise CheckpointError(f'--auto_resume: no complete checkpoint in {state_dir}: {"; ".join(skipped)}')
    return None


def _patch_base_model():
    """``basicsr/models/base_model.py``: DDP is wrapped with CUDA ``device_ids`` (fails on CPU); networks are loaded
    without ``weights_only`` and bare state dicts (as reference repos ship) raise KeyError."""
    import logging
    from basicsr.models.base_model import BaseModel
    from torch.nn.parallel import DataParallel, DistributedDataParallel
    from .checkpoint import check_state_matches, extract_state_dict, safe_load

    def model_to_device(self, net):
        net = net.to(self.device)
        if self.opt['dist']:
            find_unused = self.opt.get('find_unused_parameters', False)
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net

    def load_network(self, net, load_path, strict=True, param_key='params'):
        net = self.get_bare_model(net)
        state = extract_state_dict(safe_load(load_path), param_key, load_path)
        logging.getLogger('basicsr').info(f'Loading {type(net).__name__} model from {load_path}, '
                                          f'with param key: [{param_key}].')
        if strict:  # a short error naming the first mismatches, not BasicSR's key-by-key log and torch's dump
            check_state_matches(net, state, load_path)
        else:
            self._print_different_keys_loading(net, state, strict)
        net.load_state_dict(state, strict=strict)

    BaseModel.model_to_device = model_to_device
    BaseModel.load_network = load_network


def _patch_base_model_saving():
    """``basicsr/models/base_model.py``: networks and training states are written in place (a kill while saving
    leaves a truncated file that ``--auto_resume`` then picks), and non-finite weights are saved like any others."""
    from basicsr.models.base_model import BaseModel
    from .checkpoint import NonFiniteWeightsError, atomic_save

    def save_network(self, net, net_label, current_iter, param_key='params'):
        from basicsr.utils.dist_util import get_dist_info
        if get_dist_info()[0] != 0:
            return
        label = 'latest' if current_iter == -1 else current_iter
        file_name = f'{net_label}_{label}{_weights_ext(self.opt)}'
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        assert len(nets) == len(keys), 'The lengths of net and param_key should be the same.'
        save_dict = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state.items()}
            bad = [k for k, v in save_dict[key].items() if v.is_floating_point() and not torch.isfinite(v).all()]
            if bad:
                raise NonFiniteWeightsError(
                    f'refusing to save {file_name}: {len(bad)} non-finite tensors ({", ".join(bad[:3])}'
                    f'{", ..." if len(bad) > 3 else ""}); the earlier checkpoints are kept as they were')
        atomic_save(save_dict, os.path.join(self.opt['path']['models'], file_name))

    def save_training_state(self, epoch, current_iter):
        from basicsr.utils.dist_util import get_dist_info
        if current_iter == -1 or get_dist_info()[0] != 0:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers]
        }
        atomic_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    BaseModel.save_network = save_network
    BaseModel.save_training_state = save_training_state


def _weights_ext(opt):
    """File extension of saved network weights: ``logger.save_format`` pth (default) or safetensors."""
    fmt = (opt.get('logger') or {}).get('save_format', 'pth')
    if fmt not in ('pth', 'safetensors'):
        raise ValueError(f'logger.save_format must be pth or safetensors, got {fmt!r}')
    return '.' + fmt


def _patch_lmdb_backend():
    """``basicsr/utils/file_client.py`` ``LmdbBackend`` opens one environment per dataset; py-lmdb >= 1.5 refuses to
    open the same environment twice in one process ("already open in this process"), e.g. when training and
    validation read the same LMDB. Share one read-only environment per path and process; name a missing LMDB."""
    from basicsr.utils.file_client import LmdbBackend

    def __init__(self, db_paths, client_keys='default', readonly=True, lock=False, readahead=False, **kwargs):
        from senm_plugin.data.lmdb_io import shared_env
        client_keys = [client_keys] if isinstance(client_keys, str) else list(client_keys)
        self.db_paths = [str(v) for v in (db_paths if isinstance(db_paths, list) else [db_paths])]
        assert len(client_keys) == len(self.db_paths), ('client_keys and db_paths should have the same length, '
                                                        f'but received {len(client_keys)} and {len(self.db_paths)}.')
        self._client = {}
        for client, path in zip(client_keys, self.db_paths):
            if not os.path.isfile(os.path.join(path, 'data.mdb')):
                raise FileNotFoundError(f'LMDB not found: {path} (no data.mdb). Create it with `basicsr prepare` '
                                        f'(see datasets/README.md) or fix the dataroot option.')
            self._client[client] = shared_env(path, readonly, lock, readahead, **kwargs)

    LmdbBackend.__init__ = __init__


def apply():
    """Install every adaptation; safe to call more than once."""
    global _APPLIED
    if _APPLIED:
        return
    _shim_functional_tensor()
    _patch_dist_util()
    _patch_resume()
    _patch_base_model()
    _patch_base_model_saving()
    _patch_lmdb_backend()
    _APPLIED = True
