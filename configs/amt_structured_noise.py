"""Simulated workers from real Mechanical Turk confusions (structured noise)."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "amt_structured_noise," + presets)
