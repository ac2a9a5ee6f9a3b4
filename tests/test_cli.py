"""The command lines: one-line errors, data-source inference, default workdirs, --dry_run, --list, help.

Most checks call the front ends in-process (`cli.run`, `cli.main`, `label.main`) and stop before
anything compiles; a few start real processes to check the entry points themselves.
"""

from __future__ import annotations

import configparser
import importlib
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxanno import cli, config, errors, experiment, label, outputs, runner
from jaxanno.data import amt

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_CONFIG = str(ROOT / "configs" / "test.py")
# The tiny config with its own classes on synthetic workers: needs no real-crowd data.
OWN_DATA = ["--config.experiment=", "--config.wnids=", "--config.worker.type=uniform",
            "--config.worker.prior.type=predefined_homegeneous"]  # fmt: skip


def _run(capsys, *args, config_file=TEST_CONFIG):
    """(exit code, stdout, stderr lines) of ``jaxanno run`` in this process."""
    argv = ["jaxanno run", *([f"--config={config_file}"] if config_file else []), *args]
    code = cli.run(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _one_error_line(code, lines):
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


BAD_RUN_INPUTS = [
    (["--config.online.bogus=3"], "error: --config.online.bogus: unknown config key 'online.bogus'; did you mean"),
    (["--config.bogus=3"], "error: --config.bogus: unknown config key 'bogus'; `jaxanno list` shows every key"),
    (["--config.sweep.bogus=(1,2)"], "error: --config.sweep.bogus: unknown config key 'sweep.bogus'"),
    (["--config.run.seed=-1"], "error: setting run.seed=-1: expected an integer in [0, 4294967295] (seeds are uint32)"),
    (
        ["--config.run.seed=4294967295"],
        "error: setting run.seed=4294967295: expected run.seed + run.num_seeds - 1 <= 4294967295 (seeds are uint32)",
    ),
    (["--config.sweep.budget=abc"], "error: --config.sweep.budget: found 'abc' (str); expected numbers"),
    (["--config.sweep.risk_threshold=(a,b)"], "error: --config.sweep.risk_threshold: found '(a,b)' (str)"),
    (["--config.online.budget=abc"], "error: --config.online.budget: found 'abc'; expected an integer"),
    (["--num_seeds=many"], "error: --num_seeds: found 'many'; expected an integer"),
    (["--method=lean", "--config.method=ds_model"], "error: --method=lean conflicts with --config.method=ds_model"),
    (["--method=bogus"], "error: setting method='bogus': unknown; allowed:"),
    (["--bogus_flag"], "error: --bogus_flag: unknown flag"),
    (["stray"], "error: unexpected argument(s) ['stray']"),
    (["--workdir="], "error: --workdir: empty; give an output folder"),
    (["--config.data.source=standin", "--config.data.features=x.npz"], "error: setting data.source='standin'"),
    (["--config.data.labels=l.txt"], "error: setting data.labels='l.txt': found no data.features"),
    (["--config.data.standin_geometry=bent"], "error: setting data.standin_geometry='bent': expected one of"),
    (
        ["--config.data.standin_geometry=lookalike"],
        "error: data: data.standin_geometry='lookalike': no calibration for experiment 'imagenet_split_1'",
    ),
]


@pytest.mark.parametrize("args, expected", BAD_RUN_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_run_input_is_one_line_with_exit_2_and_writes_nothing(args, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default workdir would land here
    workdir = [] if any(a.startswith("--workdir") for a in args) else [f"--workdir={tmp_path / 'never'}"]
    line = _one_error_line(*_run(capsys, *args, *workdir)[::2])
    assert line.startswith(expected), line
    assert list(tmp_path.iterdir()) == []


def test_config_file_problems_are_one_line(capsys, tmp_path):
    line = _one_error_line(*_run(capsys, config_file=str(tmp_path / "missing.py"))[::2])
    assert line.startswith(f"error: --config: {tmp_path / 'missing.py'}: no such file; give a Python file")
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config():\n    raise RuntimeError('boom')\n")
    line = _one_error_line(*_run(capsys, config_file=str(broken))[::2])
    assert line == (
        f"error: --config: {broken}: failed to load (RuntimeError: boom); fix the file (--verbose shows the traceback)"
    )
    plain = tmp_path / "plain.py"
    plain.write_text("X = 1\n")
    assert "has no get_config() function" in _one_error_line(*_run(capsys, config_file=str(plain))[::2])


def test_verbose_adds_the_traceback_before_the_line(capsys, tmp_path):
    code, _, lines = _run(capsys, "--verbose", "--config.run.seed=-1", f"--workdir={tmp_path / 'w'}")
    assert code == 2 and lines[0] == "Traceback (most recent call last):"
    assert lines[-1].startswith("error: setting run.seed=-1")


def _read_only_folder(tmp_path) -> pathlib.Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root ignores permissions: use a folder of the kernel's instead
        folder = pathlib.Path("/proc/1")
        if not folder.is_dir() or os.access(folder, os.W_OK):
            pytest.skip("no read-only folder available")
    return folder


def test_workdir_that_is_a_file_or_read_only_is_refused(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    line = _one_error_line(*_run(capsys, f"--workdir={a_file}")[::2])
    assert line == f"error: --workdir: {a_file} is a file, not a folder; give a folder (new, or an earlier run's)"
    line = _one_error_line(*_run(capsys, f"--workdir={a_file / 'sub'}")[::2])
    assert line.startswith(f"error: --workdir: {a_file} is a file, so {a_file / 'sub'} cannot be created")
    read_only = _read_only_folder(tmp_path)
    line = _one_error_line(*_run(capsys, f"--workdir={read_only / 'run'}")[::2])
    assert line.startswith(f"error: --workdir: {read_only} is not writable (read-only or no permission)")


def test_no_experiment_and_no_class_list_says_what_to_set(capsys, tmp_path):
    line = _one_error_line(*_run(capsys, "--config.experiment=", f"--workdir={tmp_path}", config_file=None)[::2])
    assert line.startswith("error: settings experiment='' and wnids: neither is set")
    assert "set wnids=" in line and "choose an experiment" in line and "data.features=FILE.npz" in line


def _cfg(**fields):
    cfg = config.default_config()
    for path, value in fields.items():
        config.set_field(cfg, path.replace("__", "."), value)
    return cfg


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """An .npz, a .npy with a labels file, an .npz saved under a .npy name, and a text file."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(90, 8)).astype(np.float32), np.arange(90) % 3
    np.savez(folder / "my.npz", features=feats, labels=labels)
    np.save(folder / "f.npy", feats)
    np.savetxt(folder / "l.txt", labels, fmt="%d")
    with open(folder / "zip.npy", "wb") as f:
        np.savez(f, features=feats, labels=labels)
    (folder / "notes.txt").write_text("not an array\n")
    return {name: str(folder / name) for name in ("my.npz", "f.npy", "l.txt", "zip.npy", "notes.txt")}


def test_data_source_is_inferred_from_the_features_file(data_files):
    f = data_files
    assert experiment.data_source(_cfg()) == "standin"
    assert experiment.data_source(_cfg(data__features=f["my.npz"])) == "npz"
    assert experiment.data_source(_cfg(data__features=f["f.npy"], data__labels=f["l.txt"])) == "npy"
    assert experiment.data_source(_cfg(data__features=f["f.npy"], data__image_list="list.txt")) == "reference"
    assert experiment.data_source(_cfg(data__features=f["zip.npy"])) == "npz", "the content decides, not the name"
    assert experiment.data_source(_cfg(data__features="later.npz")) == "npz", "a missing file: by its suffix"
    assert experiment.data_source(_cfg(data__source="npz", data__features=f["my.npz"])) == "npz"
    assert experiment.data_spec(_cfg(data__features=f["my.npz"])).source == "npz"


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(data__source="standin", data__features="my.npz"), r"data.source='standin': contradicts"),
        (dict(data__source="npz", data__features="f.npy"), r"data.source='npz': contradicts .*\(a .npy array\)"),
        (dict(data__source="npy", data__features="my.npz"), r"data.source='npy': contradicts .*an .npz archive"),
        (dict(data__features="f.npy"), r"a .npy array needs its labels; set data.labels=FILE"),
        (dict(data__features="f.npy", data__labels="l.txt", data__image_list="x"), r"both set"),
        (dict(data__features="notes.txt"), r"cannot tell its format"),
        (dict(data__image_list="list.txt"), r"data.image_list='list.txt': found no data.features"),
        (dict(experiment="", wnids=None), r"experiment='' and wnids: neither is set"),
    ],
)
def test_data_source_contradictions_are_config_errors(fields, message, data_files):
    for key in ("data__features", "data__labels"):
        if key in fields and fields[key] in data_files:
            fields[key] = data_files[fields[key]]
    with pytest.raises(config.ConfigError, match=message):
        experiment.data_source(_cfg(**fields))


def test_dry_run_names_the_lookalike_geometry_and_its_calibration(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dog = " ".join(amt.experiment_wnids("imagenet_split_0"))
    args = ("--dry_run", "--experiment=imagenet_split_0", f"--config.wnids={dog}", "--config.data.feature_dim=128")
    code, _, lines = _run(capsys, *args, "--config.data.standin_geometry=lookalike", "--config.n_data_per_class=5")
    assert code == 0
    assert lines[0].startswith(
        "data: stand-in features (synthetic, not ImageNet; calibrated to the paper's learner on imagenet_split_0, "
        "look-alike geometry): 95 items"
    )


def test_dry_run_prints_data_workdir_config_and_sizes_without_compiling(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with outputs.count_compiles() as compiles:
        code, out, lines = _run(capsys, "--dry_run", "--method=lean")
    assert code == 0 and sum(compiles.values()) == 0
    assert lines[0].startswith("data: stand-in features (synthetic, not ImageNet; uncalibrated")
    assert lines[0].endswith("60 items + 12 prototypes, 3 classes, 8 dims")
    assert re.fullmatch(
        r"workdir: runs/imagenet_split_1-lean-amt_structured_noise-[0-9a-f]{8} \(default; --workdir=DIR to choose\)",
        lines[1],
    )
    assert "dry run: nothing compiled or written" in out
    assert re.search(r"^  method +'lean' +\(set\)$", out, re.M)
    assert re.search(r"^  learner.calibrate +'cv_3' +\(preset\)$", out, re.M)
    assert re.search(r"^  n_data_per_class +20 +\(set\)$", out, re.M)
    for size in ("items 60, prototypes 12, classes 3", "workers 6", "lanes 1 grid point(s) x 2 seed(s) = 2",
                 "steps at most", "memory (estimate) state"):  # fmt: skip
        assert size in out
    assert list(tmp_path.iterdir()) == [], "a dry run writes nothing"


def test_launch_names_the_features_file_it_reads(capsys, tmp_path, data_files):
    code, _, lines = _run(capsys, "--dry_run", *OWN_DATA, f"--config.data.features={data_files['my.npz']}",
                          f"--workdir={tmp_path / 'w'}")  # fmt: skip
    assert code == 0
    assert lines[:2] == [f"data: {data_files['my.npz']} (npz: 60 items + 12 prototypes, 3 classes, 8 dims)",
                         f"workdir: {tmp_path / 'w'}"]  # fmt: skip


def test_default_workdirs_name_every_preset_and_differ_between_configs():
    spec = importlib.util.spec_from_file_location("tiny_config", TEST_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    default = cli.default_workdir(config.resolve(config.default_config()))
    tiny = cli.default_workdir(config.resolve(module.get_config()))
    assert re.fullmatch(r"runs/imagenet_split_1-ds_model-amt_structured_noise-[0-9a-f]{8}", default)
    assert tiny != default and tiny.rsplit("-", 1)[0] == default.rsplit("-", 1)[0]
    assert cli.default_workdir(config.resolve(config.default_config())) == default, "the same command resumes"
    custom = config.resolve(_cfg(experiment="", wnids="n02138441 n02326432", method="lean"))
    assert cli.default_workdir(custom).startswith("runs/custom-lean-amt_structured_noise-")


@pytest.mark.parametrize("extra, fresh", [([], False), (["--fresh"], True)])
def test_run_hands_the_launch_to_the_runner(extra, fresh, capsys, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "run_launch", lambda cfg, workdir, **kw: calls.append((cfg, workdir, kw)) or 0)
    code, _, lines = _run(capsys, *extra, "--quiet", "--noreport", "--num_seeds=3", f"--workdir={tmp_path / 'w'}")
    assert code == 0 and lines == [], "--quiet: nothing printed"
    [(cfg, workdir, kw)] = calls
    assert workdir == str(tmp_path / "w") and cfg.run.num_seeds == 3
    assert kw.get("fresh") == fresh and kw["quiet"] is True and kw["report"] is False


def test_list_shows_presets_keys_and_sweepable_fields(capsys):
    assert cli.main(["jaxanno", "list"]) == 0
    listing = capsys.readouterr().out
    names = [*amt.experiments(), *config.METHODS, *config.SIMULATIONS, *config.SCHEMA, *config.PARAM_PATHS]
    missing = [name for name in names if not re.search(rf"^  {re.escape(name)} ", listing, re.M)]
    assert not missing
    assert _run(capsys, "--list")[1] == listing, "launch --list prints the same"


def test_run_help_lists_every_method_and_experiment(capsys):
    code, out, _ = _run(capsys, "--help", config_file=None)
    assert code == 0
    flat = " ".join(out.split())
    assert all(name in flat for name in [*config.METHODS, *amt.experiments(), *config.SIMULATIONS])
    assert "on a CPU the lanes run one at a time, on GPUs/TPUs they are vmapped together" in flat
    assert "--method=efficient_annotation \\\n      --simulation=amt_structured_noise" in out, "continuation kept"
    assert "…" not in out


def test_command_dispatch_and_its_errors(capsys):
    assert cli.main(["jaxanno", "--help"]) == 0
    assert "commands:" in capsys.readouterr().out
    assert cli.main(["jaxanno"]) == 2
    assert "usage: jaxanno COMMAND" in capsys.readouterr().err
    assert cli.main(["jaxanno", "launch"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: launch: unknown command; expected run, label, report, list or reproduce (see jaxanno --help)"
    )
    assert cli.main(["jaxanno", "list", "extra"]) == 2
    assert cli.main(["jaxanno", "report", "/nonexistent/run"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: /nonexistent/run: not a directory"


def test_label_errors_are_one_line_and_name_the_flag(capsys, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("task,worker,label\n1,a,x\n1,a,y\n2,b,x\n")
    out = tmp_path / "out"
    assert cli.main(["jaxanno", "label", f"--labels={labels}", f"--out={out}"]) == 2
    line = _one_error_line(2, capsys.readouterr().err.strip().splitlines())
    assert line.endswith("Choose a policy: --duplicates=keep_last, keep_first or keep_all") and not out.exists()
    assert label.main(["label", f"--labels={labels}"]) == 2
    assert _one_error_line(2, capsys.readouterr().err.strip().splitlines()).startswith("error: --out: not given")
    assert label.main(["label", f"--labels={labels}", f"--out={out}", "--hits=abc"]) == 2
    assert capsys.readouterr().err.strip() == "error: --hits: found 'abc'; expected an integer (see --help)"


def test_parquet_without_pyarrow_names_the_extra(capsys, tmp_path, monkeypatch):
    for module in label.PARQUET_MODULES:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import pyarrow` fail
    table = tmp_path / "labels.parquet"
    table.write_bytes(b"PAR1")
    assert label.main(["label", f"--labels={table}", f"--out={tmp_path / 'out'}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {table}: reading Parquet needs pyarrow, which is not installed; install it with "
        "pip install 'jaxanno[parquet]' (or pip install pyarrow), or give the table as CSV"
    )


def test_error_helpers():
    assert errors.flag_form("Choose: duplicates='keep_last', 'keep_first' or 'keep_all'", ["duplicates"]) == (
        "Choose: --duplicates=keep_last, keep_first or keep_all"
    )
    assert errors.flag_form("no_duplicates='x'", ["duplicates"]) == "no_duplicates='x'", "whole names only"
    err = PermissionError(13, "Permission denied", "/x/y")
    assert errors.one_line(err) == "/x/y: Permission denied; check the path, its permissions and free disk space"
    assert errors.one_line(ValueError("two\nlines")) == "two lines (--verbose shows where)"
    assert errors.wants_verbose(["p", "--verbose"]) and not errors.wants_verbose(["p", "--verbose", "--noverbose"])
    assert errors.run_main(lambda: (_ for _ in ()).throw(KeyboardInterrupt)) == errors.EXIT_INTERRUPTED


def test_console_script_and_parquet_extra_are_declared():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in setup["options.entry_points"]["console_scripts"].split("\n") if line)
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name
    assert scripts["jaxanno"] == "jaxanno.cli:main"
    assert "pyarrow" in setup["options.extras_require"]["parquet"]


def _process(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_entry_points_as_processes(tmp_path):
    proc = _process("launch.py", "--config.online.bogus=3", f"--workdir={tmp_path / 'w'}")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --config.online.bogus: unknown config key 'online.bogus'; did you mean 'online.budget'?"
    ]
    proc = _process("-m", "jaxanno.cli", "--help")
    assert proc.returncode == 0 and "commands:" in proc.stdout
    proc = _process("-m", "jaxanno", "run", f"--config={TEST_CONFIG}", "--dry_run", f"--workdir={tmp_path / 'w'}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("data: stand-in features") and "dry run: nothing compiled" in proc.stdout
    assert not (tmp_path / "w").exists()


def test_parquet_without_pyarrow_is_one_clear_error_from_the_python_api_too(tmp_path, monkeypatch):
    for module in label.PARQUET_MODULES:
        monkeypatch.setitem(sys.modules, module, None)
    table = tmp_path / "labels.parquet"
    table.write_bytes(b"PAR1")
    with pytest.raises(ValueError, match=r"reading Parquet needs pyarrow.*jaxanno\[parquet\]"):
        label.load_labels(str(table))
