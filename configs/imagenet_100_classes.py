"""Experiment imagenet_100_classes: ImageNet100 (100 classes), settings from the paper."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "imagenet_100_classes," + presets)
