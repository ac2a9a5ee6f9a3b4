"""Reference-style entry point: ``python launch.py [flags]`` is ``jaxanno run [flags]``.

Simulates online annotation runs, many seeds and sweep values in one compiled program. Without
``--config`` it reads ``configs/default.py`` next to this file, so editing that file changes the
default launch. ``python launch.py --help`` lists the flags, ``--list`` the presets, config keys
and sweepable fields, and ``--dry_run`` shows what a command would run without running it.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # config files import the package from the repository
    sys.path.insert(0, _HERE)

from jaxanno import cli  # noqa: E402  (after the path fix above)

if __name__ == "__main__":
    sys.exit(
        cli.run(["python launch.py", *sys.argv[1:]], default_config_file=os.path.join(_HERE, "configs", "default.py"))
    )
