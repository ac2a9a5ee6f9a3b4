"""Default launch: Vertebrate (imagenet_split_1), real-worker structured noise, Online DS.

An optional comma-separated list of preset names picks experiment, method and simulation:
  --config=configs/default.py:imagenet_100_classes,efficient_annotation,amt_uniform_noise
"""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), presets)
