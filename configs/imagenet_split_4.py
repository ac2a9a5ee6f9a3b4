"""Experiment imagenet_split_4: Commodity (16 classes), settings from the paper."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "imagenet_split_4," + presets)
