"""Simulated workers with the real workers' accuracies, errors spread uniformly."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "amt_uniform_noise," + presets)
