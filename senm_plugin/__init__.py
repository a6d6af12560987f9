"""senm_plugin: SeNM-VAE noise modelling and the ScaoedNet denoiser as a BasicSR plugin.

Importing this package makes BasicSR importable on current torch/torchvision (see ``compat``) and
registers every architecture, dataset, loss, metric and model of the plugin in BasicSR's registries.
"""
# flake8: noqa
from . import compat  # must come first: it lets `import basicsr` succeed on torchvision >= 0.17

compat.apply()

from . import archs, data, losses, metrics, models  # noqa: E402  (registration side effects)
from .version import __version__
