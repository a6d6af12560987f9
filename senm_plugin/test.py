"""``python -m senm_plugin.test -opt X.yml``: BasicSR testing with every plugin loaded."""
import sys

from senm_plugin.cli import main

if __name__ == '__main__':
    sys.exit(main(['test'] + sys.argv[1:]))
