"""Experiment imagenet_split_2: Insect + Fungus (13 classes), settings from the paper."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "imagenet_split_2," + presets)
