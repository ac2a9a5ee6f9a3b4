"""Online Dawid-Skene without a learner (the paper's 'Online DS')."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "ds_model," + presets)
