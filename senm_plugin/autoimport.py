"""BasicSR-style auto-import: every module named ``*<suffix>.py`` in a sub-package is imported."""
import importlib
import os
from os import path as osp


def import_modules(package, init_file, suffix):
    """Import ``package.<name>`` for each ``<name><suffix>.py`` beside ``init_file``; returns the modules."""
    folder = osp.dirname(osp.abspath(init_file))
    names = sorted(name[:-3] for name in os.listdir(folder) if name.endswith(f'{suffix}.py'))
    return [importlib.import_module(f'{package}.{name}') for name in names]
