"""Imports every `*_arch.py` module of this folder so its entries register in BasicSR's registries."""
from senm_plugin.autoimport import import_modules

_modules = import_modules(__name__, __file__, '_arch')
