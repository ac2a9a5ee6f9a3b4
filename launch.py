"""Command line of jaxanno: simulate online annotation runs, many seeds in one program.

Examples:
  python launch.py                                  # Vertebrate, Online DS, 4 seeds
  python launch.py --experiment=imagenet_100_classes --method=efficient_annotation \
      --simulation=amt_structured_noise --num_seeds=8 --workdir=runs/in100
  python launch.py --config.sweep.risk_threshold='(0.05,0.1,0.2)' --workdir=runs/sweep
  python launch.py --config=configs/test.py         # tiny, seconds

--experiment, --method, --simulation, --sampler and --num_seeds are short for the config
fields experiment, method, simulation, sampler.algo and run.num_seeds (giving both a flag
and a different --config.<field> is an error). A preset fills only the fields that neither
the config file nor --config.* set.

Multi-host: every process runs the same command; JAX's distributed runtime joins them from
--coordinator_address/--num_processes/--process_id or from the cluster's environment
(SLURM, TPU pods). Lanes are spread over all devices; process 0 writes the results.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # config files import the package from the repository
    sys.path.insert(0, _HERE)

from jaxanno import compile_cache  # noqa: E402  (after the path fix above)

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_HERE, "configs", "default.py"), "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default: runs/<experiment>-<method>).")
_EXPERIMENT = flags.DEFINE_string("experiment", None, "Experiment preset, e.g. imagenet_split_1.")
_METHOD = flags.DEFINE_string("method", None, "ds_model, lean, improved_lean, efficient_annotation, ...")
_SIMULATION = flags.DEFINE_string("simulation", None, "amt_structured_noise or amt_uniform_noise.")
_SAMPLER = flags.DEFINE_string("sampler", None, "random or greedy_task_assignment.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", None, "Simulation seeds, run in parallel (vmap).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress line.")
_REPORT = flags.DEFINE_bool("report", True, "Write plots and tables under WORKDIR/report at the end.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "Join a multi-host run: auto = when a cluster environment is detected.",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's rank in a multi-host run.")
_COMPILATION_CACHE = flags.DEFINE_string("compilation_cache", None, compile_cache.help_text())


def _parse_flags(argv):
    """absl's parser, with an unknown --config.<key> reported in one line."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError):
        from jaxanno import config

        for arg in argv[1:]:
            path = arg.removeprefix("--config.").split("=", 1)[0]
            if arg.startswith("--config.") and path not in config.PATHS:
                try:
                    config.check_key(path)
                except config.ConfigError as err:
                    print(f"error: --config.{path}: {err}", file=sys.stderr)
                    sys.exit(2)
        raise


def _compose_config():
    """The config file with the short flags set as the fields they stand for."""
    from jaxanno import config

    cfg = _CONFIG.value
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    sugar = {
        "experiment": _EXPERIMENT.value,
        "method": _METHOD.value,
        "simulation": _SIMULATION.value,
        "sampler.algo": _SAMPLER.value,
        "run.num_seeds": _NUM_SEEDS.value,
    }
    for path, value in sugar.items():
        if value is None:
            continue
        if path in overrides and overrides[path] != value:
            raise app.UsageError(f"--{path.split('.')[-1]}={value} conflicts with --config.{path}={overrides[path]}")
        config.set_field(cfg, path, value)
    return cfg


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxanno import distributed, runner  # after flag parsing: keeps --help fast

    compile_cache.configure(_COMPILATION_CACHE.value)
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _DISTRIBUTED.value)
    cfg = _compose_config()
    workdir = _WORKDIR.value or os.path.join("runs", f"{cfg.experiment or 'custom'}-{cfg.method}")
    code = runner.run_launch(cfg, workdir, quiet=_QUIET.value, report=_REPORT.value)
    sys.exit(code)


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main, flags_parser=_parse_flags)
