"""Command line for real annotation projects: aggregate worker labels, choose the next batch.

    python -m jaxanno.label --labels=labels.csv --out=DIR \\
        [--features=feats.npy --tasks=tasks.txt | --features=feats.npz] [--gold=gold.csv] \\
        [--classes=classes.txt] [--hits=5 --hit_size=40 --assignment=random|greedy] \\
        [--max_per_worker=2000 --max_per_task=N --risk_thres=0.1] [--model=pooled|ds|reference] \\
        [--evaluate=truth.csv]

Inputs (every key is read as text, so "7" in a CSV matches "7" in a class list; byte-order
marks and surrounding whitespace are removed, and blank, "NaN" and "<NA>" cells are missing,
which is an error):
  labels    CSV or Parquet with columns task, worker, label (any number of labels per task).
  features  .npy (T, D) with --tasks (one task per line, row order), or .npz holding
            arrays ``tasks`` (T,) and ``features`` (T, D). Tasks with features but no label
            become unlabelled items; every labelled task needs a feature row.
  gold      CSV with columns task, label: clamped in EM; with features, the learner's
            validation prototypes. Never sent out again.
  classes   one class per line (default: the labels seen, numeric order when all are
            integers, else text order).
  evaluate  CSV with columns task, label: only scored against (accuracy printed).

Model (--model): 'pooled' (default) is Dawid-Skene with every worker shrunk toward the
crowd's pooled confusion (`crowd.DawidSkene.pooled`), so one label or two disagreeing ones
do not make a task confident; 'ds' is crowd-kit's model, 'reference' the paper's.

Outputs, written to DIR only after every input has been read and checked, each file via a
temporary name and a rename: tasks.csv, workers.csv, worker_confusion.csv, next_batch.csv
(formats in docs/labelling.md). `run` is the same thing as a function, for scripts and tests.

Compilation: a run fits once and chooses one batch, so on small tables compiling dominates.
The batch program compiles in a background thread while EM compiles, and small programs
compile with XLA's back-end optimisation off (`quick_compile`); both come from the persistent
compilation cache on the next run (`compile_cache`).
"""

from __future__ import annotations

import importlib
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from absl import flags

from jaxanno import compile_cache, crowd, errors, quick_compile

MODELS = ("pooled", "ds", "reference")
OUTPUT_FILES = crowd.OUTPUT_FILES
_PARQUET = (".parquet", ".pq")
BOM = "\ufeff"  # a byte-order mark: dropped from every key the readers see
MISSING_TEXT = ("", "nan", "<na>")  # cells read as missing (compared in lower case, after stripping)


def clean_text(values: pd.Series) -> pd.Series:
    """Keys as the readers keep them: byte-order marks removed, surrounding whitespace
    stripped, and blank cells and the strings 'NaN' / '<NA>' (any case) missing (NaN)."""
    text = values.astype(str).str.replace(BOM, "", regex=False).str.strip()
    return text.where(~text.str.lower().isin(MISSING_TEXT), np.nan)


def _parquet_text(values: pd.Series) -> pd.Series:
    """A Parquet column as the text a CSV of the same table would hold ('4', not '4.0')."""
    missing = values.isna().to_numpy()
    if values.dtype.kind == "f" and np.all(missing | (values.fillna(0) % 1 == 0).to_numpy()):
        values = values.astype("Int64")  # integral floats (a column with gaps) print as integers
    return values.astype(str).where(~missing, "")


def _read_table(path: str, columns: Sequence[str], what: str) -> pd.DataFrame:
    """A CSV or Parquet file as text columns (`clean_text`); errors name the file and what was expected."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such file (expected the {what})")
    check_parquet([path])  # the Python API reaches here without the command's check
    try:
        if p.suffix.lower() in _PARQUET:
            frame = pd.read_parquet(p)
        else:
            frame = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        header = ",".join(columns)
        raise ValueError(f"{path}: empty file; expected a header line {header} and at least one row") from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        kind = "Parquet" if p.suffix.lower() in _PARQUET else "CSV"
        raise ValueError(f"{path}: cannot read as {kind}: {err}") from None
    frame.columns = [str(c).replace(BOM, "").strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected columns {', '.join(columns)}; found {list(frame.columns)}"
        )
    if len(frame) == 0:
        raise ValueError(f"{path}: empty file; expected at least one row after the header")
    out = frame[list(columns)].copy()
    for col in columns:  # Parquet keeps its dtypes: keys become text as in a CSV
        out[col] = clean_text(_parquet_text(out[col]) if p.suffix.lower() in _PARQUET else out[col])
    return out


def load_labels(path: str) -> pd.DataFrame:
    """The label table (task, worker, label as text)."""
    return _read_table(path, crowd.COLUMNS, "worker labels")


def load_gold(path: str) -> pd.Series:
    """Gold labels as a Series task -> label (text)."""
    frame = _read_table(path, ("task", "label"), "gold labels")
    return frame.set_index("task")["label"]


def _read_lines(path: str, what: str) -> list[str]:
    p = pathlib.Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such file (expected the {what})")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    lines = [line.replace(BOM, "").strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"{path}: empty file; expected the {what}, one per line")
    return lines


def load_classes(path: str) -> list[str]:
    """The class list, one class per line (blank lines ignored)."""
    return _read_lines(path, "class list")


def load_features(path: str, tasks_path: str | None = None) -> tuple:
    """(task list, (T, D) array) from .npy + a task list file, or from .npz (tasks, features)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such file (expected task features)")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: cannot read as .npy/.npz: {err}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        missing = [k for k in ("tasks", "features") if k not in loaded.files]
        if missing:
            raise ValueError(
                f"{path}: missing array(s) {missing}; expected arrays tasks and features, found {loaded.files}"
            )
        try:
            tasks, values = [str(t).replace(BOM, "").strip() for t in loaded["tasks"]], loaded["features"]
        except ValueError as err:  # object arrays would need pickle, which is never enabled
            raise ValueError(
                f"{path}: cannot read arrays tasks / features ({err}); save tasks as a string "
                "or integer array, e.g. np.asarray(tasks, dtype=str)"
            ) from None
        if tasks_path:
            raise ValueError(f"{tasks_path}: not used with an .npz feature file (its 'tasks' array lists the tasks)")
    else:
        if not tasks_path:
            raise ValueError(f"{path}: a .npy feature file needs --tasks (one task per line, in row order)")
        tasks, values = _read_lines(tasks_path, "task list"), loaded
        if values.ndim == 2 and len(tasks) != values.shape[0]:
            raise ValueError(
                f"{tasks_path}: expected one task per feature row of {path} ({values.shape[0]}), "
                f"found {len(tasks)} task(s)"
            )
    return tasks, values


def _class_order(labels: pd.Series) -> list[str]:
    """Distinct labels, in numeric order when every one is an integer, else text order."""
    unique = pd.unique(labels)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def build_model(model: str = "pooled", **options: Any) -> crowd.DawidSkene:
    """'pooled' (default): classic Dawid-Skene with workers shrunk toward the crowd
    (`DawidSkene.pooled`); 'ds': crowd-kit's Dawid-Skene; 'reference': the paper's online model."""
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, found {model!r}")
    build = {"pooled": crowd.DawidSkene.pooled, "reference": crowd.DawidSkene.reference}.get(model, crowd.DawidSkene)
    return build(**options)


def write_outputs(out: os.PathLike, frames: dict[str, pd.DataFrame]) -> None:
    """Write every frame to a temporary file first, then rename them all into place."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    temps = {}
    try:
        for name, frame in frames.items():
            tmp = out / f".{name}.tmp{os.getpid()}"
            frame.to_csv(tmp, index=False)
            temps[name] = tmp
    except BaseException:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise
    for name, tmp in temps.items():
        os.replace(tmp, out / name)


def read_inputs(
    labels: Any,
    features: str | None = None,
    tasks: str | None = None,
    gold: str | None = None,
    classes: str | None = None,
    duplicates: str = "error",
) -> crowd.Problem:
    """Every input file read and checked against the others (`crowd.prepare`); see `run`."""
    name = labels if isinstance(labels, (str, os.PathLike)) else "labels"
    frame = load_labels(str(labels)) if isinstance(labels, (str, os.PathLike)) else labels
    class_list = load_classes(classes) if classes else None
    if class_list is None and isinstance(labels, (str, os.PathLike)):
        class_list = _class_order(crowd.check_frame(frame, str(name)).label)
    feats = load_features(features, tasks) if features else None
    gold_labels = load_gold(gold) if gold else None
    sources = {"data": str(name), "features": str(features), "gold": str(gold)}
    return crowd.prepare(frame, gold_labels, feats, class_list, duplicates, sources)


def run(
    labels: Any,
    out: os.PathLike | None = None,
    features: str | None = None,
    tasks: str | None = None,
    gold: str | None = None,
    classes: str | None = None,
    hits: int = 5,
    hit_size: int = 40,
    assignment: str = "random",
    max_per_worker: int | None = 2000,
    max_per_task: int | None = None,
    risk_thres: float = 0.1,
    model: str = "pooled",
    duplicates: str = "error",
    seed: int = 0,
    quiet: bool = False,
    evaluate: str | None = None,
    **model_options: Any,
) -> dict[str, Any]:
    """Read, check, fit, choose the next batch, write; the command line's body.

    Args:
      labels: a CSV / Parquet path or a DataFrame (task, worker, label).
      out: output directory (None: write nothing, just return the frames).
      features, tasks, gold, classes: optional file paths (see the module doc).
      evaluate: optional CSV (task, label) of true labels to score the result against
        (not used by the fit); the summary gets an 'evaluation' entry.
      model_options: passed to `crowd.DawidSkene` (e.g. n_iter, worker_prior, learner).
    Returns:
      {'summary': dict, 'model': the fitted DawidSkene, 'frames': {file name: DataFrame}}.
    Raises:
      ValueError: any malformed input or setting (settings before any file is read), or a
        posterior that is not finite; always before anything is written.
    """
    crowd.check_range("", "risk_thres", risk_thres, crowd.DAWID_SKENE_RANGES["risk_threshold"])
    crowd.check_batch_options(hits, hit_size, assignment, max_per_worker, max_per_task, hits_name="hits")
    ds = build_model(model, risk_threshold=risk_thres, duplicates=duplicates, seed=seed, **model_options)
    ds.check_options()
    t0 = time.perf_counter()
    problem = read_inputs(labels, features, tasks, gold, classes, duplicates)
    truth = crowd.check_truth(load_gold(evaluate), problem, str(evaluate)) if evaluate else None
    t_read = time.perf_counter()
    with quick_compile.enabled():  # one fit and one batch: compile time dominates on small tables
        batch_options = (hits, hit_size, assignment, max_per_worker, max_per_task, risk_thres)
        compiling = quick_compile.in_background(crowd.compile_next_batch, problem, *batch_options)
        ds.fit_prepared(problem)
        compiling.result()
        batch = crowd.next_batch(ds, *batch_options, seed)
    t_fit = time.perf_counter()
    frames = crowd.output_frames(ds, batch)
    if out is not None:
        write_outputs(out, frames)
    summary = _summary(ds, batch, assignment, risk_thres, t_read - t0, t_fit - t_read, out)
    summary["model"] = model
    summary["evaluation"] = crowd.evaluate(ds, truth, str(evaluate)) if truth is not None else None
    if not quiet:
        print(format_summary(summary))
    return {"summary": summary, "model": ds, "frames": frames}


def _summary(ds, batch, assignment, risk_thres, read_s, fit_s, out) -> dict[str, Any]:
    table = ds.table_
    risk = ds.risks_.to_numpy()
    return {
        "tasks": table.num_items,
        "labelled_tasks": int((table.item_count > 0).sum()),
        "workers": table.num_workers,
        "labels": int(table.task_code.size),
        "classes": len(table.classes),
        "slots": int(table.item_count.max()),
        "dropped_duplicates": table.dropped_duplicates,
        "em_iterations": ds.n_iter_,
        "em_solves": max(ds.population_rounds_, 1),
        "learner": ds.learner_probas_ is not None,
        "confident": int(ds.confident_.sum()),
        "mean_risk": float(risk.mean()),
        "risk_threshold": risk_thres,
        "batch_hits": int(batch.hit.nunique()),
        "batch_tasks": len(batch),
        "batch_distinct_tasks": int(batch.task.nunique()),
        "batch_workers": int(batch.worker.nunique()),
        "assignment": assignment,
        "read_seconds": round(read_s, 3),
        "fit_seconds": round(fit_s, 3),
        "out": None if out is None else str(out),
    }


def format_summary(s: dict[str, Any]) -> str:
    """A few human-readable lines."""
    lines = [
        f"{s['labels']} labels from {s['workers']} workers on {s['labelled_tasks']} of {s['tasks']} tasks, "
        f"{s['classes']} classes, up to {s['slots']} labels per task"
        + (f" ({s['dropped_duplicates']} duplicate labels dropped)" if s["dropped_duplicates"] else ""),
        f"Dawid-Skene ({s.get('model', 'ds')}): {s['em_iterations']} EM iteration(s)"
        + (f" in the last of {s['em_solves']} solves (population prior)" if s["em_solves"] > 1 else "")
        + (", learner prior from features" if s["learner"] else "")
        + f"; read {s['read_seconds']:.2f}s, fit + batch {s['fit_seconds']:.2f}s",
        f"confident (risk < {s['risk_threshold']}): {s['confident']} / {s['tasks']} "
        f"({s['confident'] / max(s['tasks'], 1):.1%}), mean risk {s['mean_risk']:.3f}",
        f"next batch ({s['assignment']}): {s['batch_hits']} HIT(s) to {s['batch_workers']} worker(s), "
        f"{s['batch_tasks']} assignment(s) of {s['batch_distinct_tasks']} task(s)",
    ]
    e = s.get("evaluation")
    if e:
        confident = (
            f"{e['confident_accuracy']:.1%} on the {e['confident_tasks']} confident"
            if e["confident_tasks"]
            else "no confident task"
        )
        votes = f"; majority vote {e['majority_vote_accuracy']:.1%}" if e["majority_vote_tasks"] else ""
        lines.append(
            f"accuracy against {e['source']}: {e['accuracy']:.1%} of {e['tasks']} task(s) ({confident}){votes}"
        )
    if s["out"]:
        lines.append(f"wrote {', '.join(OUTPUT_FILES)} to {s['out']}")
    return "\n".join(lines)


def define_flags(fv: flags.FlagValues) -> None:
    """The command line's flags, on their own FlagValues (nothing global is touched)."""
    flags.DEFINE_string("labels", None, "CSV or Parquet with columns task, worker, label.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory.", flag_values=fv)
    flags.DEFINE_string(
        "features", None, ".npy (with --tasks) or .npz (tasks, features) task features.", flag_values=fv
    )
    flags.DEFINE_string("tasks", None, "Task list for a .npy feature file, one per line.", flag_values=fv)
    flags.DEFINE_string("gold", None, "CSV with columns task, label (gold / prototype labels).", flag_values=fv)
    flags.DEFINE_string("classes", None, "Class list, one per line (default: labels seen).", flag_values=fv)
    flags.DEFINE_integer("hits", 5, "HITs in the next batch.", flag_values=fv)
    flags.DEFINE_integer("hit_size", 40, "Tasks per HIT.", flag_values=fv)
    flags.DEFINE_enum("assignment", "random", list(crowd.ASSIGNMENTS), "Worker assignment.", flag_values=fv)
    flags.DEFINE_integer("max_per_worker", 2000, "Cap on a worker's labels, existing ones included.", flag_values=fv)
    flags.DEFINE_integer("max_per_task", None, "Cap on a task's labels (default: none).", flag_values=fv)
    flags.DEFINE_float("risk_thres", 0.1, "Tasks with risk below this are confident.", flag_values=fv)
    flags.DEFINE_enum(
        "model",
        "pooled",
        list(MODELS),
        "pooled: Dawid-Skene with workers shrunk toward the crowd; ds: crowd-kit's; reference: the paper's.",
        flag_values=fv,
    )
    flags.DEFINE_string("worker_prior", None, "None or one of " + ", ".join(crowd.WORKER_PRIORS), flag_values=fv)
    flags.DEFINE_float(
        "prior_strength",
        None,
        "Worker prior weight: multiplies its pseudo-counts, or pseudo-labels per confusion row "
        "(pooled model, --prior_rows=normalised).",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "prior_rows", None, list(crowd.PRIOR_ROWS), "scaled or normalised (gold-built priors).", flag_values=fv
    )
    flags.DEFINE_integer("n_iter", None, "Maximum EM iterations.", flag_values=fv)
    flags.DEFINE_float("tol", None, "EM tolerance.", flag_values=fv)
    flags.DEFINE_boolean("learner", True, "Use a learner prior when --features is given.", flag_values=fv)
    flags.DEFINE_integer("learner_epochs", None, "Learner epochs.", flag_values=fv)
    flags.DEFINE_enum(
        "duplicates",
        "error",
        list(crowd.DUPLICATE_POLICIES),
        "A worker labelling a task twice: error, keep_last, keep_first, keep_all.",
        flag_values=fv,
    )
    flags.DEFINE_integer("seed", 0, "Seed of tie-breaks, the learner and the batch draw.", flag_values=fv)
    flags.DEFINE_boolean("quiet", False, "Print nothing.", flag_values=fv)
    flags.DEFINE_string(
        "evaluate",
        None,
        "CSV with columns task, label: print the accuracy against it (not used to fit).",
        flag_values=fv,
    )
    flags.DEFINE_string("compilation_cache", None, compile_cache.help_text(), flag_values=fv)
    flags.DEFINE_boolean("verbose", False, errors.VERBOSE_HELP, flag_values=fv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags and `run`; returns the exit code (2 after one error line on bad input or flags)."""
    argv = list(sys.argv if argv is None else argv)
    return errors.run_main(lambda: _main(argv), errors.wants_verbose(argv))


PARQUET_MODULES = ("pyarrow", "fastparquet")  # pandas reads Parquet with either


def check_parquet(paths: Sequence[str | None]) -> None:
    """A Parquet input needs pyarrow (the ``parquet`` extra): say so before anything is read."""
    parquet = [p for p in paths if p and pathlib.Path(p).suffix.lower() in _PARQUET]
    if not parquet:
        return
    for module in PARQUET_MODULES:
        try:
            importlib.import_module(module)
            return
        except ImportError:
            continue
    raise errors.UserError(
        f"{parquet[0]}: reading Parquet needs pyarrow, which is not installed; install it with "
        "pip install 'jaxanno[parquet]' (or pip install pyarrow), or give the table as CSV"
    )


def _main(argv: list[str]) -> int:
    fv = flags.FlagValues()
    define_flags(fv)
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
        print(__doc__ + "\nFlags:\n" + fv.get_help(include_special_flags=False))
        return 0
    rest = fv(argv)
    if len(rest) > 1:
        raise errors.UsageError(f"unexpected argument(s) {rest[1:]}; every input is a flag, e.g. --labels=labels.csv")
    missing = [f"--{name}" for name in ("labels", "out") if not fv[name].value]
    if missing:
        raise errors.UsageError(
            f"{' and '.join(missing)}: not given; --labels and --out are required, e.g. --labels=labels.csv --out=next/"
        )
    check_parquet([fv.labels, fv.gold])
    compile_cache.configure(fv.compilation_cache)
    options = {
        name: fv[name].value
        for name in ("prior_strength", "prior_rows", "n_iter", "tol", "learner_epochs")
        if fv[name].value is not None
    }
    if fv.worker_prior is not None:
        options["worker_prior"] = None if fv.worker_prior.lower() in ("", "none") else fv.worker_prior
    try:
        run(
            fv.labels,
            fv.out,
            features=fv.features,
            tasks=fv.tasks,
            gold=fv.gold,
            classes=fv.classes,
            hits=fv.hits,
            hit_size=fv.hit_size,
            assignment=fv.assignment,
            max_per_worker=fv.max_per_worker,
            max_per_task=fv.max_per_task,
            risk_thres=fv.risk_thres,
            model=fv.model,
            duplicates=fv.duplicates,
            seed=fv.seed,
            quiet=fv.quiet,
            evaluate=fv.evaluate,
            learner="mlp" if fv.learner else None,
            **options,
        )
    except ValueError as err:  # a hint in the Python form ("duplicates='keep_last'") becomes the flag's
        message = errors.flag_form(str(err), list(fv))
        if message != str(err):
            raise errors.UserError(message) from err
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
