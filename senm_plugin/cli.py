"""The ``basicsr`` command: BasicSR's train/test pipelines and the plugin's tools, with every plugin loaded first.

Plugins loaded before any verb runs: ``senm_plugin``, every installed package that declares an entry point in the
group ``basicsr.plugins``, and modules named with ``--import MODULE`` (repeatable, anywhere on the command line).
"""
import importlib
import os
import sys
import textwrap

ENTRY_POINT_GROUP = 'basicsr.plugins'


def _entry_points(group):
    from importlib import metadata
    eps = metadata.entry_points()
    if hasattr(eps, 'select'):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # Python < 3.10


def load_plugins(extra_modules=()):
    """Import senm_plugin, every ``basicsr.plugins`` entry point and ``extra_modules``; returns the loaded names."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # so `--import my_project.archs` works from a project folder
    loaded = ['senm_plugin']
    importlib.import_module('senm_plugin')
    for ep in _entry_points(ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as err:
            raise RuntimeError(f'BasicSR plugin "{ep.name}" ({ep.value}, group {ENTRY_POINT_GROUP}) failed to load: '
                               f'{type(err).__name__}: {err}') from err
        loaded.append(ep.value)
    for name in extra_modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise SystemExit(f'basicsr: --import {name}: {err}') from err
        loaded.append(name)
    return loaded


def launcher_argv(argv):
    """``argv`` with ``--local-rank`` (what ``torch.distributed.launch`` passes since torch 2.0) spelt as BasicSR's
    ``--local_rank``, which is all BasicSR 1.4.2 accepts; both ``--local-rank N`` and ``--local-rank=N``."""
    return ['--local_rank' + arg[len('--local-rank'):] if arg == '--local-rank' or arg.startswith('--local-rank=')
            else arg for arg in argv]


def _run_basicsr_pipeline(pipeline_name, prog, argv):
    """Run BasicSR's own train or test pipeline with ``argv`` as its command line, rooted at the current folder."""
    module = importlib.import_module(f'basicsr.{pipeline_name}')
    old_argv = sys.argv
    sys.argv = [prog] + launcher_argv(argv)
    try:
        getattr(module, f'{pipeline_name}_pipeline')(os.getcwd())
    finally:
        sys.argv = old_argv
    return 0


def _train(argv):
    from .checkpoint import CheckpointError
    from .models.senmvae_model import TrainingDivergedError
    from .option_check import check_option_file, forced_keys
    if '-opt' in argv[:-1]:
        path = argv[argv.index('-opt') + 1]
        problems = check_option_file(path, forced_keys(argv))
        for problem in problems:  # before any data is read or network built
            print(f'basicsr train: error: {path}: {problem}', file=sys.stderr)
        if problems:
            return 2
    try:
        return _run_basicsr_pipeline('train', 'basicsr train', argv)
    except (TrainingDivergedError, CheckpointError) as err:
        # a diverged run is an outcome to report, not a bug to trace (--debug still shows the traceback)
        if '--debug' in argv:
            raise
        print(f'basicsr train: error: {err}', file=sys.stderr)
        return 1


def _test(argv):
    return _run_basicsr_pipeline('test', 'basicsr test', argv)


def _lazy(module, function):
    """A verb handler that imports its module only when that verb runs."""

    def run(argv):
        return getattr(importlib.import_module(module), function)(argv)

    return run


# verb -> (one-line help, handler taking the remaining argv)
VERBS = {
    'train': ('train with BasicSR\'s pipeline: -opt X.yml [--launcher none|pytorch|slurm] [--auto_resume] '
              '[--debug] [--force_yml k=v ...]', _train),
    'test': ('test with BasicSR\'s pipeline: -opt X.yml', _test),
    'prepare': ('build tri-domain LMDBs: prepare sidd|sidd-val|folders ... (see --help)',
                _lazy('senm_plugin.tools.prepare', 'main')),
    'demo': ('the main job on embedded data, on CPU in minutes (see --help)', _lazy('senm_plugin.tools.demo', 'main')),
    'generate': ('synthetic clean/noisy pairs from clean images with a trained SeNM-VAE (see --help)',
                 _lazy('senm_plugin.tools.generate', 'main')),
    'evaluate': ('score a noise model against real pairs: evaluate noise ... (see --help)',
                 _lazy('senm_plugin.tools.evaluate', 'main')),
    'export': ('export ScaoedNet or SeNM-VAE translate: export onnx --model M --arch A --out F.onnx (see --help)',
               _lazy('senm_plugin.tools.export', 'main')),
}


def _usage():
    lines = ['usage: basicsr [--import MODULE ...] VERB [options]', '', 'verbs:']
    for verb, (text, _) in VERBS.items():
        lines.append(textwrap.fill(text, 100, initial_indent=f'  {verb:<9}', subsequent_indent=' ' * 11))
    lines += [
        '', 'options:', '  --import MODULE  import MODULE first so its registry entries are usable (repeatable)',
        '  -h, --help       show this message; `basicsr VERB --help` shows a verb\'s options', '',
        f'Installed packages declaring an entry point in the group "{ENTRY_POINT_GROUP}" are loaded too.'
    ]
    return '\n'.join(lines)


def _pop_imports(argv):
    """Remove every ``--import MODULE`` / ``--import=MODULE`` from argv; returns (modules, rest)."""
    modules, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == '--import':
            if i + 1 >= len(argv):
                raise SystemExit('basicsr: --import needs a module name')
            modules.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith('--import='):
            modules.append(arg.split('=', 1)[1])
        else:
            rest.append(arg)
        i += 1
    return modules, rest


def main(argv=None):
    """Entry point of the ``basicsr`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    modules, argv = _pop_imports(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(_usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(_usage(), file=sys.stderr)
        print(f'\nbasicsr: unknown verb "{verb}"; choose one of {", ".join(VERBS)}', file=sys.stderr)
        return 2
    load_plugins(modules)
    return VERBS[verb][1](rest) or 0


if __name__ == '__main__':
    sys.exit(main())
