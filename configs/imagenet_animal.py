"""Experiment imagenet_animal: Dog + Vertebrate (37 classes), settings from the paper."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "imagenet_animal," + presets)
