"""Improved Lean: temperature calibration, global early stop, prototypes validate."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "improved_lean," + presets)
