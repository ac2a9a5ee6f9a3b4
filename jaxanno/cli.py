"""The ``jaxanno`` command (also ``python -m jaxanno``): ``run``, ``label``, ``report``, ``list``, ``reproduce``.

``jaxanno run`` is ``python launch.py``: flags and config files are parsed here, the config
is prepared (`experiment.prepare`: presets, data source, validation, data), the data and
workdir are announced, and `runner.run_launch` runs it; ``--dry_run`` and ``--list`` stop
before anything compiles (see `overview`). ``label`` and ``report`` are the ``main`` of
`label` and `report`. Every command runs through `errors.run_main`: a bad setting, file or
flag is one line on stderr and exit status 2.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import re
import sys
from collections.abc import Sequence

from absl import flags, logging
from ml_collections import config_dict, config_flags

from jaxanno import compile_cache, config, errors, types
from jaxanno.data import amt

RUN_HELP = """Simulate online annotation runs: many seeds and sweep values in one compiled program.

Examples:
  {prog}                                     # Vertebrate, Online DS, 4 seeds
  {prog} --experiment=imagenet_100_classes --method=efficient_annotation \\
      --simulation=amt_structured_noise --num_seeds=8 --workdir=runs/in100
  {prog} --config.sweep.risk_threshold='(0.05,0.1,0.2)' --workdir=runs/sweep
  {prog} --config=configs/test.py            # tiny, seconds
  {prog} --config.data.features=my.npz --config.experiment=''   # your own features
  {prog} --dry_run                           # resolved config and sizes; nothing runs
  {prog} --list                              # presets, config keys, sweepable fields

--experiment, --method, --simulation, --sampler and --num_seeds are short for the config
fields experiment, method, simulation, sampler.algo and run.num_seeds (giving both a flag
and a different --config.<field> is an error). A preset fills only the fields that neither
the config file nor --config.* set. The data source follows --config.data.features: an
.npz, a .npy with --config.data.labels, or a .npy with --config.data.image_list (the
reference release); none: synthetic stand-in features.

Without --workdir, results go to runs/<experiment>-<method>-<simulation>-<config hash>
(printed at start), so the same command resumes there and different configs never share
a folder. Rerunning a command resumes it; --fresh starts over.

Multi-host: every process runs the same command; JAX's distributed runtime joins them from
--coordinator_address/--num_processes/--process_id or from the cluster's environment
(SLURM, TPU pods). Lanes are spread over all devices; process 0 writes the results.
"""

# Short flags for config fields: flag -> config path.
SHORT_FLAGS = {
    "experiment": "experiment",
    "method": "method",
    "simulation": "simulation",
    "sampler": "sampler.algo",
    "num_seeds": "run.num_seeds",
}
_CONFIG_ARG = re.compile(r"^--?config(=|$)")
_OVERRIDE_ARG = re.compile(r"^--?(?:no)?config\.([^=]+)")


def load_config_file(value: str) -> config_dict.ConfigDict:
    """The locked ConfigDict of ``--config=FILE[:ARG]`` (``get_config(ARG)`` of a Python file).

    Raises:
      errors.UserError: a missing, unloadable or malformed file, named with what to do.
    """
    path, _, arg = value.partition(":")
    if not path:
        raise errors.UsageError("--config: empty; give a config file, e.g. --config=configs/test.py")
    if not os.path.isfile(path):
        raise errors.UserError(
            f"--config: {path}: no such file; give a Python file with a get_config() function, "
            "e.g. --config=configs/test.py (relative paths start from the current folder)"
        )
    name = "jaxanno_config_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise errors.UserError(f"--config: {path}: not a Python file; give a .py file with a get_config() function")
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        get_config = getattr(module, "get_config", None)
        if get_config is None:
            raise errors.UserError(f"--config: {path}: has no get_config() function; define one returning the config")
        cfg = get_config(arg) if arg else get_config()
    except errors.UserError:
        raise
    except Exception as err:  # the user's code: any failure is reported as theirs, traceback with --verbose
        raise errors.UserError(
            f"--config: {path}: failed to load ({type(err).__name__}: {err}); fix the file "
            "(--verbose shows the traceback)"
        ) from err
    if not isinstance(cfg, config_dict.ConfigDict):
        raise errors.UserError(
            f"--config: {path}: get_config() returned {type(cfg).__name__}; return a ConfigDict, "
            "e.g. start from jaxanno.config.default_config()"
        )
    cfg.lock()  # a misspelt key is an error, not a new field
    return cfg


def split_config_arg(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the ``--config`` file value or None, argv without it); the last ``--config`` wins."""
    value, rest, i = None, [argv[0]], 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if _CONFIG_ARG.match(arg):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            else:
                raise errors.UsageError("--config: no file given; e.g. --config=configs/test.py")
        else:
            rest.append(arg)
        i += 1
    return value, rest


def check_override_keys(argv: Sequence[str]) -> None:
    """Every ``--config.<key>`` names a config field (else the closest one is suggested)."""
    for arg in argv[1:]:
        if arg == "--":
            return
        match = _OVERRIDE_ARG.match(arg)
        if match and match.group(1) not in config.PATHS:
            key = match.group(1)
            try:
                config.check_key(key)
            except config.ConfigError as err:
                hint = "" if "did you mean" in str(err) else "; `jaxanno list` shows every key"
                raise config.ConfigError(f"--config.{key}: {err}{hint}") from None


def _method_help() -> str:
    return "Method preset, one of: " + ", ".join(config.METHODS) + " (`--list` shows the fields each sets)."


def define_run_flags(fv: flags.FlagValues, argv: Sequence[str], cfg: config_dict.ConfigDict, source: str) -> None:
    """The flags of ``jaxanno run`` / ``launch.py`` on `fv`; `cfg` is the base config, from `source`."""
    config_flags.DEFINE_config_dict(
        "config",
        cfg,
        "Config file: a .py with get_config(); FILE:ARG calls get_config(ARG).",
        flag_values=fv,
        sys_argv=list(argv),
    )
    fv["config"].default_as_str = repr(source)  # not the whole config in --help
    define = dict(flag_values=fv)
    flags.DEFINE_string(
        "workdir",
        None,
        "Output folder; a rerun resumes there (default: runs/<experiment>-<method>-<simulation>-<config hash>, "
        "printed at start).",
        **define,
    )
    names = ", ".join(amt.experiments())
    flags.DEFINE_string("experiment", None, f"Experiment preset, one of: {names}; '' for your own data.", **define)
    flags.DEFINE_string("method", None, _method_help(), **define)
    flags.DEFINE_string("simulation", None, "Simulation preset: " + ", ".join(config.SIMULATIONS) + ".", **define)
    flags.DEFINE_string("sampler", None, "HIT sampler: " + ", ".join(types.SAMPLERS) + ".", **define)
    flags.DEFINE_integer(
        "num_seeds",
        None,
        "Simulation seeds, each a lane of the one compiled program: on a CPU the lanes run one at a time, on "
        "GPUs/TPUs they are vmapped together (run.lane_batch).",
        **define,
    )
    flags.DEFINE_bool("fresh", False, "Start over: remove this workdir's earlier results and checkpoint.", **define)
    flags.DEFINE_bool("dry_run", False, "Print the resolved config and the problem sizes, then exit.", **define)
    flags.DEFINE_bool(
        "list", False, "Print experiments, methods, simulations, config keys, sweepable fields.", **define
    )
    flags.DEFINE_bool("quiet", False, "No progress lines.", **define)
    flags.DEFINE_bool("report", True, "Write plots and tables under WORKDIR/report at the end.", **define)
    flags.DEFINE_bool("verbose", False, errors.VERBOSE_HELP, **define)
    flags.DEFINE_enum(
        "distributed",
        "auto",
        ["auto", "on", "off"],
        "Join a multi-host run: auto = when a cluster is detected.",
        **define,
    )
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host runs).", **define)
    flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.", **define)
    flags.DEFINE_integer("process_id", None, "This process's rank in a multi-host run.", **define)
    flags.DEFINE_string("compilation_cache", None, compile_cache.help_text(), **define)


def compose_config(fv: flags.FlagValues) -> config_dict.ConfigDict:
    """The config with ``--config.*`` applied and the short flags set as the fields they stand for."""
    cfg = fv.config
    overrides = config_flags.get_override_values(fv["config"])
    for flag, path in SHORT_FLAGS.items():
        value = fv[flag].value
        if value is None:
            continue
        if path in overrides and overrides[path] != value:
            raise errors.UsageError(
                f"--{flag}={value} conflicts with --config.{path}={overrides[path]}; give only one of them"
            )
        config.set_field(cfg, path, value)
    for name in config.PARAM_PATHS:
        values = cfg.sweep[name]
        bad = [v for v in values if isinstance(v, (bool, str)) or not isinstance(v, (int, float))]
        if isinstance(values, (tuple, list)) and bad:
            where = f"--config.sweep.{name}" if f"sweep.{name}" in overrides else f"sweep.{name}"
            raise config.ConfigError(
                f"{where}: found {bad[0]!r} ({type(bad[0]).__name__}); expected numbers, "
                f"e.g. --config.sweep.{name}='(0.05,0.1)'"
            )
    return cfg


def config_hash(resolved: config_dict.ConfigDict) -> str:
    """8 hex digits identifying a resolved config (every field)."""
    text = json.dumps(resolved.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_workdir(resolved: config_dict.ConfigDict) -> str:
    """runs/<experiment>-<method>-<simulation>-<config hash> for a resolved config."""
    name = f"{resolved.experiment or 'custom'}-{resolved.method}-{resolved.simulation}-{config_hash(resolved)}"
    return os.path.join("runs", name)


def check_workdir(path: str) -> None:
    """A workdir that can be created or written: not empty, not a file, not read-only (nothing is written).

    Raises:
      errors.UserError: naming the folder and what to do.
    """
    if not path.strip():
        raise errors.UsageError(
            "--workdir: empty; give an output folder, or leave the flag out for the default under runs/"
        )
    p = pathlib.Path(path)
    if p.exists() and not p.is_dir():
        raise errors.UserError(f"--workdir: {path} is a file, not a folder; give a folder (new, or an earlier run's)")
    existing = next(q for q in (p, *p.absolute().parents) if q.exists())
    if not existing.is_dir():
        raise errors.UserError(
            f"--workdir: {existing} is a file, so {path} cannot be created under it; give another folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise errors.UserError(
            f"--workdir: {existing} is not writable (read-only or no permission), so {path} cannot be written; "
            "give a folder you can write to"
        )


def _help_requested(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help", "--helpshort", "--helpfull", "-?") for a in argv[1:])


def _parse_run_flags(argv: Sequence[str], default_config_file: str | None) -> flags.FlagValues | None:
    """Parsed run flags, or None after printing --help."""
    value, rest = split_config_arg(argv)
    value = value if value is not None else default_config_file
    cfg = load_config_file(value) if value is not None else config.default_config()
    source = value or "the schema defaults, as configs/default.py"
    check_override_keys(rest)  # before the flags exist: defining them applies the overrides
    fv = flags.FlagValues()
    define_run_flags(fv, rest, cfg, source)
    if _help_requested(rest):
        print(RUN_HELP.format(prog=argv[0]) + "\nFlags:\n" + fv.get_help(include_special_flags=False))
        return None
    extra = fv(rest)[1:]
    if extra:
        raise errors.UsageError(f"unexpected argument(s) {extra}; every setting is a flag (see --help)")
    return fv


def run(argv: Sequence[str], default_config_file: str | None = None) -> int:
    """``jaxanno run`` / ``launch.py``: parse, prepare, print what runs where, then run (or stop early).

    Args:
      argv: the command line, argv[0] being the program as the user typed it.
      default_config_file: the config file used without ``--config`` (None: the schema defaults).
    """
    argv = list(argv)
    return errors.run_main(lambda: _run(argv, default_config_file), errors.wants_verbose(argv))


def _run(argv: list[str], default_config_file: str | None) -> int:
    logging.set_verbosity(logging.WARNING)
    fv = _parse_run_flags(argv, default_config_file)
    if fv is None:
        return 0
    if fv.list:
        from jaxanno import overview

        print(overview.catalog())
        return 0
    if fv.workdir is not None:
        check_workdir(fv.workdir)
    from jaxanno import distributed, experiment, overview, runner  # after parsing: keeps --help fast

    compile_cache.configure(fv.compilation_cache)
    distributed.initialize(fv.coordinator_address, fv.num_processes, fv.process_id, fv.distributed)
    cfg = compose_config(fv)
    problem = experiment.prepare(cfg)
    workdir = fv.workdir if fv.workdir is not None else default_workdir(problem.cfg)
    check_workdir(workdir)
    say = distributed.is_main() and not fv.quiet
    if say:
        print(overview.data_line(problem), file=sys.stderr)
        default = "" if fv.workdir is not None else " (default; --workdir=DIR to choose)"
        print(f"workdir: {workdir}{default}", file=sys.stderr, flush=True)
    if fv.dry_run:
        if distributed.is_main():
            print(overview.dry_run(problem, cfg))
        return 0
    del problem  # run_launch prepares its own (stand-ins load from a cache; files are read again)
    return runner.run_launch(cfg, workdir, quiet=fv.quiet, report=fv.report, fresh=fv.fresh)


def list_command(argv: Sequence[str]) -> int:
    """``jaxanno list``: every preset, config key and sweepable field."""

    def body() -> int:
        if _help_requested(argv):
            print("usage: jaxanno list\n\nPrints the experiments, methods, simulations, samplers, config keys with "
                  "their defaults, and the sweepable fields.")  # fmt: skip
            return 0
        if len(argv) > 1:
            raise errors.UsageError(f"jaxanno list takes no arguments, found {list(argv[1:])}")
        from jaxanno import overview

        print(overview.catalog())
        return 0

    return errors.run_main(body, errors.wants_verbose(argv))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("jaxanno")
    except Exception:  # not installed (run from a checkout)
        return "unknown (not installed)"


HELP = """usage: jaxanno COMMAND [flags]    (also: python -m jaxanno COMMAND [flags])

commands:
  run [flags]          simulate annotation runs (the flags of python launch.py)
  label [flags]        aggregate a real project's labels, choose the next batch of HITs
  report WORKDIR...    figures and x@target tables over finished runs
  list                 experiments, methods, simulations, config keys, sweepable fields
  reproduce [flags]    run the paper's experiment grid figure by figure, write REPRODUCTION.md

jaxanno COMMAND --help shows a command's flags; jaxanno --version its version. A bad
setting, file or flag stops a command with one line, "error: <setting or file>: <found>;
<what to do>", and exit status 2 (--verbose adds the traceback).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``jaxanno COMMAND ...``; returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    prog, command, rest = "jaxanno", (argv[1] if len(argv) > 1 else None), argv[2:]
    if command == "run":
        return run([f"{prog} run", *rest])
    if command == "label":
        from jaxanno import label

        return label.main([f"{prog} label", *rest])
    if command == "report":
        from jaxanno import report

        return report.main(rest, prog=f"{prog} report")
    if command == "list":
        return list_command([f"{prog} list", *rest])
    if command == "reproduce":
        from jaxanno.reproduce import command as reproduce

        return reproduce.main(rest, prog=f"{prog} reproduce")

    def other() -> int:
        if command in ("-h", "--help", "help"):
            print(HELP, end="")
            return 0
        if command == "--version":
            print(f"jaxanno {_version()}")
            return 0
        if command is None:
            print(HELP, end="", file=sys.stderr)
            return errors.EXIT_USAGE
        raise errors.UsageError(
            f"{command}: unknown command; expected run, label, report, list or reproduce (see jaxanno --help)"
        )

    return errors.run_main(other)


if __name__ == "__main__":
    sys.exit(main())
