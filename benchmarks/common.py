"""Shared pieces of the benchmark scripts: environment, output folders, the timer, process
isolation, and the workloads (annotation sets, EM settings, worker priors, run configs).

Scripts run as ``python benchmarks/<name>.py``; this folder is then first on the import
path, so ``import common`` works, and ``jaxanno`` comes from the installed package.

Every script writes its JSON and markdown to a fresh temporary folder by default, to
``--out DIR`` when given, and to ``benchmarks/results/`` (the committed results) only with
``--save``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxanno import config, dawid_skene, experiment, outputs, types, workers
from jaxanno.data import standin

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the repository: tests/data and launch.py live there
RESULTS = os.path.join(HERE, "results")  # committed results, written only with --save
H200_BANDWIDTH = 4.2e12  # bytes / s, a measured device-to-device copy rate


def simulate_labels(*args: Any, **kwargs: Any) -> tuple[pd.DataFrame, pd.Series]:
    """The test suite's synthetic crowd table (`tests/helpers.py`), loaded by file path.

    The generator lives with the tests; loading the file directly (rather than putting the
    repository on `sys.path`) keeps benchmarks and tests on the very same workload.
    """
    spec = importlib.util.spec_from_file_location("jaxanno_test_helpers", os.path.join(ROOT, "tests", "helpers.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers.simulate_labels(*args, **kwargs)


# ---------------------------------------------------------------- environment and output
def environment() -> dict[str, str]:
    """Device and library versions (jaxanno's list plus numpy, pandas and crowd-kit)."""
    env = outputs.environment()
    env["numpy"] = np.__version__
    env["pandas"] = pd.__version__
    try:
        import crowdkit

        env["crowd-kit"] = crowdkit.__version__
    except ImportError:
        env["crowd-kit"] = "not installed"
    return env


def env_line(env: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in env.items())


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """--out DIR / --save (mutually exclusive); see `output_dir`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", default=None, help="result folder (default: a new temporary folder)")
    group.add_argument("--save", action="store_true", help=f"write into the committed results, {RESULTS}")


def output_dir(args: argparse.Namespace) -> str:
    """benchmarks/results with --save, else --out, else a new temporary folder."""
    if args.save:
        return RESULTS
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        return args.out
    return tempfile.mkdtemp(prefix="jaxanno-bench-")


def default_name(prefix: str) -> str:
    """`prefix_<backend>`, e.g. em_speed_cpu: results of different devices never collide."""
    return f"{prefix}_{jax.default_backend()}"


def write_results(out_dir: str, name: str, payload: dict[str, Any], markdown: str) -> None:
    """OUT/name.json and OUT/name.md, each written atomically."""
    os.makedirs(out_dir, exist_ok=True)
    outputs.atomic_write_json(os.path.join(out_dir, f"{name}.json"), payload)
    outputs.atomic_write_text(os.path.join(out_dir, f"{name}.md"), markdown + "\n")
    print(f"wrote {os.path.join(out_dir, name)}.json and .md", flush=True)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def rounded(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row for printing: floats to 4 decimals."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


# ---------------------------------------------------------------- the timer
@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall times of a measured call (results blocked on with `jax.block_until_ready`)."""

    median_s: float  # median over the timed calls
    min_s: float
    runs: int  # timed calls
    warmup_s: float  # wall time of the untimed warm-up calls (trace, compile and run)
    compile_s: float  # XLA compilation inside all calls (warm-up ones: timed calls compile nothing)


class Stopwatch:
    """Times successive calls, each blocked on, with the XLA compile time inside each.

    `time_call` uses it for repeats of one call; a run loop uses it directly to time its
    chunks (the first of which compiles).
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.compile_seconds: list[float] = []

    def __call__(self, fn: Callable[[], Any]) -> Any:
        with outputs.count_compiles() as log:
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn())
            self.seconds.append(time.perf_counter() - t0)
        self.compile_seconds.append(log.seconds)
        return out

    def timing(self, warmup: int) -> Timing:
        """Median of the calls after the first `warmup` (all calls when there are no others)."""
        timed = self.seconds[warmup:] or self.seconds
        if any(self.compile_seconds[warmup:]):
            warnings.warn(f"XLA compiled inside timed calls: {self.compile_seconds[warmup:]}", stacklevel=2)
        return Timing(
            median_s=statistics.median(timed),
            min_s=min(timed),
            runs=len(timed),
            warmup_s=sum(self.seconds[:warmup]),
            compile_s=sum(self.compile_seconds),
        )


def time_call(
    fn: Callable[[], Any],
    repeats: int = 5,
    warmup: int = 1,
    min_seconds: float = 0.0,
    max_seconds: float = math.inf,
) -> Timing:
    """Time `fn()`: `warmup` untimed calls (where jit compiles), then at least one and up to
    `repeats` timed calls (more while under `min_seconds`, fewer once past `max_seconds`)."""
    watch = Stopwatch()
    for _ in range(warmup):
        watch(fn)
    start = time.perf_counter()
    while True:
        watch(fn)
        timed, elapsed = len(watch.seconds) - warmup, time.perf_counter() - start
        if elapsed >= max_seconds or (timed >= repeats and elapsed >= min_seconds):
            break
    return watch.timing(warmup)


# ---------------------------------------------------------------- one measurement per process
def add_row_out_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--row_out", default=None, help=argparse.SUPPRESS)  # set by `in_own_process`


def in_own_process(script: str, argv: list[str]) -> dict[str, Any]:
    """Run `python script *argv --row_out=F` in a fresh interpreter; return the row written to F.

    Process-wide figures (peak resident memory, peak device memory) then belong to that
    one measurement alone.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "row.json")
        subprocess.run([sys.executable, script, *argv, f"--row_out={path}"], check=True)
        with open(path) as f:
            return json.load(f)


def process_peaks() -> dict[str, float | None]:
    """This process's peak resident set and (where the device reports it) peak device memory."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    stats = jax.devices()[0].memory_stats() or {}
    device = stats.get("peak_bytes_in_use")
    return {
        "process_peak_rss_bytes": float(rss if sys.platform == "darwin" else rss * 1024),
        "process_peak_device_bytes": None if device is None else float(device),
    }


# ---------------------------------------------------------------- annotation sets
# ImageNet-sized annotation sets: N items, A slots, K classes, W workers.
SIZES = {
    "vertebrate": dict(num_items=23220, max_annotations=3, num_classes=18, num_workers=50),
    "imagenet100": dict(num_items=125689, max_annotations=3, num_classes=100, num_workers=50),
}
REAL_SETS = ("rte", "bluebirds")  # real crowdsourced labels in tests/data


@dataclasses.dataclass(frozen=True)
class Workload:
    """One annotation set as fixed slots (-1 = empty) and as a (task, worker, label) table."""

    name: str
    frame: pd.DataFrame  # (labels, 3) task, worker, label
    workers: np.ndarray  # (N, A) i32
    labels: np.ndarray  # (N, A) i32
    num_classes: int  # K
    num_workers: int  # W

    @property
    def num_items(self) -> int:
        return self.workers.shape[0]

    @property
    def max_annotations(self) -> int:
        return self.workers.shape[1]


def workload(name: str) -> Workload:
    """A real set ('rte', 'bluebirds') or a synthetic one of a `SIZES` size."""
    return real_workload(name) if name in REAL_SETS else synthetic_workload(name)


def real_workload(name: str) -> Workload:
    df = pd.read_csv(os.path.join(ROOT, "tests", "data", f"{name}_labels.csv"))
    tasks, task_idx = np.unique(df["task"].to_numpy(), return_inverse=True)
    names, worker_idx = np.unique(df["worker"].astype(str).to_numpy(), return_inverse=True)
    slot = df.groupby(task_idx).cumcount().to_numpy()
    shape = (len(tasks), int(slot.max()) + 1)
    w_arr, l_arr = np.full(shape, -1, np.int32), np.full(shape, -1, np.int32)
    w_arr[task_idx, slot] = worker_idx
    l_arr[task_idx, slot] = df["label"].to_numpy()
    return Workload(name, df, w_arr, l_arr, num_classes=int(df["label"].max()) + 1, num_workers=len(names))


def real_gold(name: str, w: Workload) -> np.ndarray:
    """(N,) the gold labels of a real set, in the workload's item order."""
    gold = pd.read_csv(os.path.join(ROOT, "tests", "data", f"{name}_gold.csv")).set_index("task")["label"]
    return gold.reindex(np.unique(w.frame["task"].to_numpy())).to_numpy()


def synthetic_annotations(
    num_items: int, max_annotations: int, num_classes: int, num_workers: int, seed: int = 0, accuracy: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth (N,), workers (N, A), labels (N, A)): every item has A labels from distinct
    workers, each right with probability `accuracy`, otherwise uniform over the classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, num_classes, num_items)
    order = np.argsort(rng.random((num_items, num_workers)), axis=1)[:, :max_annotations]
    noise = rng.integers(0, num_classes, (num_items, max_annotations))
    labels = np.where(rng.random((num_items, max_annotations)) < accuracy, truth[:, None], noise)
    return truth, order.astype(np.int32), labels.astype(np.int32)


def synthetic_workload(name: str) -> Workload:
    size = SIZES[name]
    _, w_arr, l_arr = synthetic_annotations(**size)
    n, a = w_arr.shape
    frame = pd.DataFrame({"task": np.repeat(np.arange(n), a), "worker": w_arr.ravel(), "label": l_arr.ravel()})
    return Workload(name, frame, w_arr, l_arr, size["num_classes"], size["num_workers"])


def annotation_state(w: Workload) -> types.AnnotationState:
    valid = w.workers >= 0
    return types.AnnotationState(
        worker=jnp.asarray(w.workers),
        label=jnp.asarray(w.labels),
        item_count=jnp.asarray(valid.sum(-1).astype(np.int32)),
        worker_count=jnp.asarray(np.bincount(w.workers[valid], minlength=w.num_workers).astype(np.int32)),
    )


def relabelled_lanes(w: Workload, lanes: int, with_learner: bool) -> tuple[types.AnnotationState, jax.Array | None]:
    """S annotation sets with a leading (S,) axis: lane 0 is `w`; the others relabel it with
    a random class permutation and worker shuffle (same difficulty, different bytes).

    Returns:
      (annotations with (S, N, A) slots, (S, N, K) learner log-probabilities or None).
    """
    n, k, nw = w.num_items, w.num_classes, w.num_workers
    worker, label = jnp.asarray(w.workers), jnp.asarray(w.labels)
    valid = worker >= 0

    def one(lane, key):
        k_cls, k_wrk, k_lrn = jax.random.split(key, 3)
        perm_c = jnp.where(lane == 0, jnp.arange(k), jax.random.permutation(k_cls, k))
        perm_w = jnp.where(lane == 0, jnp.arange(nw), jax.random.permutation(k_wrk, nw))
        ann = types.AnnotationState(
            worker=jnp.where(valid, perm_w[jnp.maximum(worker, 0)], -1),
            label=jnp.where(valid, perm_c[jnp.maximum(label, 0)], -1),
            item_count=valid.sum(-1).astype(jnp.int32),
            worker_count=jnp.zeros(nw, jnp.int32),
        )
        learner = jax.nn.log_softmax(2.0 * jax.random.normal(k_lrn, (n, k)), -1) if with_learner else None
        return ann, learner

    keys = jax.random.split(jax.random.key(0), lanes)
    return jax.block_until_ready(jax.jit(jax.vmap(one))(jnp.arange(lanes), keys))


# ---------------------------------------------------------------- EM settings and priors
@dataclasses.dataclass(frozen=True)
class EMVariant:
    """An EM algorithm as static settings plus the Params values that differ from defaults."""

    em: types.EMStatic
    params: dict[str, float]  # prior_strength 0: no worker prior
    with_learner: bool  # E-steps add a learner log-prior


EM_VARIANTS = {
    # crowd-kit's DawidSkene: soft M-step, learned class prior, majority-vote start, no worker
    # prior; full solves stop at an ELBO change below 1e-5 or after 100 iterations.
    "classic": EMVariant(
        types.EMStatic(m_step="soft", criterion="elbo", class_prior="learned", init="majority_vote", max_em_steps=100),
        dict(prior_strength=0.0, log_epsilon=0.0, em_epsilon=1e-5),
        with_learner=False,
    ),
    # the paper's EM: hard M-step, Dirichlet worker prior, the learner's log-probabilities
    # in every E-step, stop at a mean-label-likelihood change below 1e-3 or after 10.
    "reference": EMVariant(
        types.EMStatic(m_step="hard", criterion="soft", class_prior="uniform", init="prior", max_em_steps=10),
        dict(prior_strength=10.0, log_epsilon=1e-8, em_epsilon=1e-3),
        with_learner=True,
    ),
}


def em_static(w: Workload, em_settings: types.EMStatic) -> types.Static:
    """A `Static` for EM alone on `w` (no learner, no prototypes), the backend's E-step block."""
    return types.Static(
        num_items=w.num_items,
        num_prototypes=0,
        num_classes=w.num_classes,
        num_workers=w.num_workers,
        feature_dim=1,
        max_annotations=w.max_annotations,
        em=dataclasses.replace(em_settings, item_block=experiment.item_block(-1)),
    )


def predefined_prior(static: types.Static, strength: float) -> jax.Array:
    """(W, K, K) the simulator's 'predefined_homegeneous' worker prior (diagonal
    `prior_pos_count` = 2, off-diagonal `prior_neg_count / K` = 1/K) times `strength`."""
    static = dataclasses.replace(static, prior_type="predefined_homegeneous")
    params = types.make_params(prior_strength=strength)
    return workers.prior_alpha(static, params, None, None)  # this prior reads neither crowd nor truth


def uniform_log_class_prior(k: int) -> jax.Array:
    return jnp.full((k,), -np.log(k), jnp.float32)


# ---------------------------------------------------------------- simulation configs
def make_config(experiment_name: str, method: str, overrides: Mapping[str, Any] | None = None):
    """The launch config of an experiment and method, with dotted-path `overrides`."""
    cfg = config.default_config()
    cfg.experiment, cfg.method = experiment_name, method
    for path, value in (overrides or {}).items():
        config.set_field(cfg, path, value)
    return cfg


QUICK_RUN = {  # Vertebrate with few items, narrow features and short fits: a smoke-test size
    "n_data_per_class": 40,
    "data.feature_dim": 32,  # at least K = 18
    "online.n_hits_per_step": 2,
    "learner.max_epochs": 20,
}


def full_run_config(seeds: int, width: int, quick: bool):
    """imagenet_100_classes x efficient_annotation with a budget of one label per image;
    `quick`: the same method on a small Vertebrate stand-in (`QUICK_RUN`, `width` ignored)."""
    overrides = {"run.num_seeds": seeds, "run.chunk_steps": 8, "data.feature_dim": width}
    name = "imagenet_100_classes"
    if quick:
        name = "imagenet_split_1"
        overrides.update(QUICK_RUN, **{"run.chunk_steps": 2})
    cfg = make_config(name, "efficient_annotation", overrides)
    cfg.online.budget = stand_in_size(cfg)[0]  # one label per image
    return cfg


def stand_in_size(cfg) -> tuple[int, int]:
    """(N items, K classes) of the stand-in set a config generates."""
    cfg = config.resolve(cfg)
    k = len(cfg.wnids.split())
    return int(standin.class_counts(cfg.experiment, k, cfg.n_data_per_class).sum()), k


def method_static(experiment_name: str, method: str, width: int, overrides: Mapping[str, Any] | None = None):
    """(resolved config, Static, Params) of a method on an experiment's stand-in sizes."""
    cfg = config.resolve(make_config(experiment_name, method, {"data.feature_dim": width, **(overrides or {})}))
    n, k = stand_in_size(cfg)
    static = experiment.to_static(cfg, n, k * cfg.n_prototype_per_class, k, width)
    return cfg, static, experiment.to_params(cfg)


# ---------------------------------------------------------------- EM problems
@dataclasses.dataclass(frozen=True)
class EMProblem:
    """One EM problem: annotations, worker prior, optional learner prior and warm start."""

    name: str
    static: types.Static
    annotations: types.AnnotationState  # (N, A) slots
    prior: jax.Array  # (W, K, K) Dirichlet pseudo-counts
    learner: jax.Array | None  # (N, K) learner log-prior
    warm_counts: jax.Array | None  # (W, K, K) the previous online step's counts
    truth: np.ndarray  # (N,) true classes


def online_em_problem(width: int, seed: int, quick: bool = False) -> EMProblem:
    """The EM problem of one online step of a 1-seed Vertebrate efficient_annotation run,
    stopped at about one label per image; the step before gives the warm start.
    `quick`: a small stand-in (`QUICK_RUN`, `width` ignored)."""
    overrides = {"run.num_seeds": 1, "run.seed": seed, "data.feature_dim": width, "run.chunk_steps": 1}
    if quick:
        overrides.update(QUICK_RUN)
    problem = experiment.prepare(make_config("imagenet_split_1", "efficient_annotation", overrides))
    n = problem.static.num_items
    target = n // problem.static.labels_per_step  # ~1 label per image
    state = experiment.blank_state(problem)
    for step in range(target):
        state, _ = experiment.advance(problem, state, step, 1)
    before = state  # after step target - 1: its counts are the warm start
    state, _ = experiment.advance(problem, state, target, 1)  # step target: its labels are the problem

    def lane0(tree):
        return jax.tree.map(lambda x: x[0, 0], problem.by_grid_seed(jax.device_get(tree)))

    final, before = lane0(state), lane0(before)
    return EMProblem(
        name="vertebrate_step",
        static=problem.static,
        annotations=final.annotations,
        prior=final.workers.prior_alpha,
        learner=dawid_skene.learner_log_prior(jnp.asarray(before.learner.probs), n),
        warm_counts=before.em.counts,
        truth=np.asarray(problem.features.labels[:n]),
    )


def real_em_problem(name: str, prior_strength: float = 10.0) -> EMProblem:
    """A real crowdsourced set with the predefined worker prior and no learner."""
    w = real_workload(name)
    static = em_static(w, types.EMStatic())
    return EMProblem(
        name=name,
        static=static,
        annotations=annotation_state(w),
        prior=predefined_prior(static, prior_strength),
        learner=None,
        warm_counts=None,
        truth=real_gold(name, w),
    )
