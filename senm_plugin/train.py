"""``python -m senm_plugin.train -opt X.yml``: BasicSR training with every plugin loaded (for ``torchrun -m``)."""
import sys

from senm_plugin.cli import main

if __name__ == '__main__':
    sys.exit(main(['train'] + sys.argv[1:]))
