"""The paper's method with MixMatch instead of pseudo-labelling."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "efficient_annotation_mixmatch," + presets)
