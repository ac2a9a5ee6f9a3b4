"""``python -m jaxanno COMMAND ...``: the ``jaxanno`` command (see `jaxanno.cli`)."""

import sys

from jaxanno import cli

sys.exit(cli.main(["jaxanno", *sys.argv[1:]]))
