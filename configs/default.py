"""Default launch: Vertebrate (imagenet_split_1), real-worker structured noise, Online DS.

Every field and its default is defined once, in `jaxanno.config.SCHEMA`; this file returns
that schema unchanged. Presets are fields like any other: copy this file and set
``cfg.experiment``, ``cfg.method`` or ``cfg.simulation`` (or pass ``--experiment=...``,
``--method=...``, ``--simulation=...``, ``--config.<field>=...`` to launch.py).
"""

from jaxanno import config


def get_config():
    return config.default_config()
