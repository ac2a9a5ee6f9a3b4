"""Lean: MLP learner, hard EM criterion, 3-fold cross-validated calibration."""

from jaxanno import config


def get_config(presets: str = ""):
    return config.apply_preset_names(config.default_config(), "lean," + presets)
