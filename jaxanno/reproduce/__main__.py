"""``python -m jaxanno.reproduce``: see `jaxanno.reproduce.command`."""

import sys

from jaxanno.reproduce import command

if __name__ == "__main__":
    sys.exit(command.main())
