"""Label efficiency: efficient_annotation against item-selection and aggregation options, paired.

Every variant runs the same seeds on the same stand-in (common random numbers: the same
worker pools, and the same draws wherever a variant leaves them alone), so per-seed
differences are paired. A variant is a method plus config overrides; scalar settings
(``sampler.temperature``) are swept as lanes of one launch. Runs go through the public
launch path (`experiment.prepare` / `experiment.run`).

Per experiment, simulation and variant: x@80, x@85, x@90 (labels per image at which the
aggregated top-1 first reaches the target; mean, std and the seeds that reached it), the
top-1 at 0.25 / 0.5 / 1.0 labels per image, the final labels per image and top-1, and for
every variant but the baseline the paired difference to the baseline (mean over seeds and
its standard error, over the seeds where both reached the target).

    python benchmarks/bench_label_efficiency.py --experiments=imagenet_split_1 --seeds=8
    python benchmarks/bench_label_efficiency.py --experiments=imagenet_100_classes --seeds=5 \\
        --variants=efficient_annotation_calibrated --budget=1.5 --save
    python benchmarks/bench_label_efficiency.py --quick      # a small Vertebrate stand-in, a minute

--simulations takes any keys of `config.SIMULATIONS` (the worker models), comma-separated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from typing import Any

import numpy as np

import common
from jaxanno import config, experiment, results

BASELINE = "efficient_annotation"
# name -> (method, config overrides, sweep of sampler.temperature or ()); each name is one launch
# (one per temperature when swept: every temperature becomes its own variant row).
VARIANTS: dict[str, tuple[str, dict[str, Any], tuple[float, ...]]] = {
    "efficient_annotation": ("efficient_annotation", {}, ()),
    "risk_reduction": ("efficient_annotation", {"sampler.item_score": "risk_reduction"}, (0.0, 0.02, 0.1)),
    "soft_m_step": ("efficient_annotation", {"optimizer.m_step": "soft"}, ()),
    "learned_class_prior": ("efficient_annotation", {"optimizer.class_prior": "learned"}, ()),
    "warm_start": ("efficient_annotation", {"optimizer.warm_start": True}, ()),
    "efficient_annotation_plus": ("efficient_annotation_plus", {}, ()),
    # efficient_annotation with learner.temperature_solver=exact (the method row says so).
    "efficient_annotation_calibrated": ("efficient_annotation_calibrated", {}, ()),
    "sustained_stop": ("efficient_annotation", {"early_stopper": "sustained"}, ()),
}
TARGETS = (80, 85, 90)
AT_COST = (0.25, 0.5, 1.0)
EXPERIMENTS = ("imagenet_100_classes", "imagenet_split_1", "imagenet_split_0")  # ImageNet100, Vertebrate, Dog


def seed_curves(metrics: list[dict[str, np.ndarray]], grid: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed of grid point `grid`: (labels per image, top-1) of the steps it was running."""
    cost = np.concatenate([m["cost_per_item"][grid] for m in metrics], axis=-1)
    top1 = np.concatenate([m["aggregate/all/top1"][grid] for m in metrics], axis=-1)
    active = np.concatenate([m["active"][grid] for m in metrics], axis=-1).astype(bool)
    return [(c[a], t[a]) for c, t, a in zip(cost, top1, active)]


def top1_at(x: np.ndarray, y: np.ndarray, cost: float) -> float:
    """Top-1 at `cost` labels per image, interpolated; the final top-1 when the run stopped before."""
    return float(np.interp(cost, x, y)) if cost <= x[-1] else float(y[-1])


def per_seed(curves: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """{measure: (S,) values}: x@T, top-1 at fixed costs, final cost and top-1."""
    out = {f"x@{t}": np.array([results.x_at_target(x, y, t / 100) for x, y in curves]) for t in TARGETS}
    out.update({f"top1@{c:g}": np.array([100 * top1_at(x, y, c) for x, y in curves]) for c in AT_COST})
    out["final_cost"] = np.array([x[-1] for x, _ in curves])
    out["final_top1"] = np.array([100 * y[-1] for _, y in curves])
    return out


def summary(values: np.ndarray) -> dict[str, Any]:
    ok = values[np.isfinite(values)]
    return {
        "mean": float(ok.mean()) if len(ok) else math.nan,
        "std": float(ok.std(ddof=1)) if len(ok) > 1 else math.nan,
        "seeds": int(len(ok)),
        "of": int(len(values)),
    }


def paired(values: np.ndarray, base: np.ndarray) -> dict[str, Any]:
    """Mean and standard error of the per-seed difference (over seeds where both are finite);
    for x@T also the relative change of the means over those seeds."""
    both = np.isfinite(values) & np.isfinite(base)
    d = values[both] - base[both]
    out = {
        "diff": float(d.mean()) if len(d) else math.nan,
        "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else math.nan,
        "seeds": int(both.sum()),
    }
    mean_base = base[both].mean() if len(d) else math.nan
    out["relative"] = float(d.mean() / mean_base) if len(d) and mean_base > 0 else math.nan
    return out


def cached_launch(name: str, experiment_name: str, simulation: str, args) -> dict[str, dict[str, np.ndarray]]:
    """`launch`, or its per-seed measures from ``--cache`` when an identical launch ran before
    (several processes may then fill one cache, e.g. one variant each)."""
    if not args.cache:
        return launch(name, experiment_name, simulation, args)
    key = dict(variant=VARIANTS[name], experiment=experiment_name, simulation=simulation, seeds=args.seeds,
               first_seed=args.first_seed, budget=args.budget, width=args.width, quick=args.quick)  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(args.cache, f"{experiment_name}-{simulation}-{name}-{digest}.json")
    if os.path.exists(path):
        with open(path) as f:
            return {label: {k: np.asarray(v, float) for k, v in m.items()} for label, m in json.load(f).items()}
    rows = launch(name, experiment_name, simulation, args)
    os.makedirs(args.cache, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({label: {k: v.tolist() for k, v in m.items()} for label, m in rows.items()}, f)
    os.replace(path + ".tmp", path)
    return rows


def launch(name: str, experiment_name: str, simulation: str, args) -> dict[str, dict[str, np.ndarray]]:
    """Run one variant (all its temperatures as lanes); {row name: per-seed measures}."""
    method, overrides, temperatures = VARIANTS[name]
    cfg = common.make_config(experiment_name, method, {**overrides, **quick_overrides(args)})
    cfg.simulation = simulation
    cfg.run.num_seeds, cfg.run.seed = args.seeds, args.first_seed
    cfg.run.chunk_steps = args.chunk_steps
    if temperatures:
        cfg.sweep.selection_temperature = temperatures
    n, _ = common.stand_in_size(cfg)
    cfg.online.budget = int(args.budget * n)
    t0 = time.perf_counter()
    problem = experiment.prepare(cfg)
    progress = lambda steps, state, metrics, done: print(  # noqa: E731
        f"    {name}: step {steps} of at most {problem.max_steps}, {int(done.sum())}/{done.size} lanes done", flush=True
    )
    result = experiment.run(problem, on_chunk=progress)
    wall = time.perf_counter() - t0
    rows = {}
    for g, point in enumerate(problem.points):
        label = name if not point else f"{name} (T={point['selection_temperature']:g})"
        rows[label] = per_seed(seed_curves(result.metrics, g))
    print(f"  {experiment_name}/{simulation}/{name}: {wall:.0f} s, {result.steps_run} steps", flush=True)
    return rows


def quick_overrides(args) -> dict[str, Any]:
    return dict(common.QUICK_RUN) if args.quick else {"data.feature_dim": args.width}


def compare(rows: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """One record per variant: summaries, and paired differences to the baseline."""
    base = rows[BASELINE]
    out = []
    for label, values in rows.items():
        rec: dict[str, Any] = {"variant": label, "per_seed": {k: v.tolist() for k, v in values.items()}}
        rec.update({k: summary(v) for k, v in values.items()})
        if label != BASELINE:
            rec["vs_baseline"] = {k: paired(v, base[k]) for k, v in values.items()}
        out.append(rec)
    return out


def strict_json(tree: Any) -> Any:
    """`tree` with NaN floats as None (strict JSON has no NaN)."""
    if isinstance(tree, dict):
        return {k: strict_json(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [strict_json(v) for v in tree]
    return None if isinstance(tree, float) and math.isnan(tree) else tree


def _cell(s: dict[str, Any], digits: int = 3) -> str:
    if not s["seeds"]:
        return f"n/a (0/{s['of']})"
    std = "" if math.isnan(s["std"]) else f" ± {s['std']:.{digits}f}"
    reached = "" if s["seeds"] == s["of"] else f" ({s['seeds']}/{s['of']})"
    return f"{s['mean']:.{digits}f}{std}{reached}"


def _diff_cell(p: dict[str, Any], digits: int = 3, relative: bool = False) -> str:
    if not p["seeds"]:
        return "-"
    text = f"{p['diff']:+.{digits}f} ± {p['se']:.{digits}f}" if not math.isnan(p["se"]) else f"{p['diff']:+.{digits}f}"
    return text + (f" ({100 * p['relative']:+.0f}%)" if relative and not math.isnan(p["relative"]) else "")


def markdown(block: str, records: list[dict[str, Any]]) -> str:
    cols = [*(f"x@{t}" for t in TARGETS), *(f"top1@{c:g}" for c in AT_COST), "final_cost", "final_top1"]
    lines = [f"## {block}", "", "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in records:
        lines.append(
            f"| {r['variant']} | " + " | ".join(_cell(r[c], 3 if "x@" in c or "cost" in c else 1) for c in cols) + " |"
        )
    lines += [
        "",
        "Paired difference to efficient_annotation (mean ± standard error over seeds; x@T also relative):",
        "",
    ]
    lines += ["| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in records[1:]:
        cells = [_diff_cell(r["vs_baseline"][c], 3 if "x@" in c or "cost" in c else 1, "x@" in c) for c in cols]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", default=",".join(EXPERIMENTS))
    ap.add_argument("--simulations", default="amt_structured_noise", help="keys of config.SIMULATIONS")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"from {list(VARIANTS)}; {BASELINE} always runs")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first_seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=3.0, help="labels per image at most")
    ap.add_argument("--width", type=int, default=128, help="stand-in feature width")
    ap.add_argument("--chunk_steps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="small Vertebrate stand-ins (common.QUICK_RUN)")
    ap.add_argument("--cache", default="", help="folder of per-launch results reused by later invocations")
    ap.add_argument("--only", action="store_true", help="run the listed variants into --cache, compare nothing")
    ap.add_argument("--name", default="label_efficiency")
    common.add_output_args(ap)
    args = ap.parse_args()
    variants = [BASELINE] + [v for v in args.variants.split(",") if v and v != BASELINE]
    if args.only:
        if not args.cache:
            ap.error("--only needs --cache")
        variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    for sim in args.simulations.split(","):
        if sim not in config.SIMULATIONS:
            ap.error(f"unknown simulation {sim!r}; known: {sorted(config.SIMULATIONS)}")
    env = common.environment()
    print(common.env_line(env), flush=True)
    blocks, sections = {}, []
    for exp in args.experiments.split(","):
        for sim in args.simulations.split(","):
            rows = {}
            for v in variants:
                rows.update(cached_launch(v, exp, sim, args))
            if args.only:
                continue
            block = f"{exp} / {sim}"
            blocks[block] = compare(rows)
            sections.append(markdown(block, blocks[block]))
            print(sections[-1] + "\n", flush=True)
    if args.only:
        return
    settings = {k: v for k, v in vars(args).items() if k not in ("save", "out", "cache", "only")}
    md = (
        "# Label efficiency: efficient_annotation against new options (paired seeds)\n\n"
        f"{common.env_line(env)}\n\nSettings: {settings}\n\n"
        "x@T: labels per image at which the aggregated top-1 first reaches T% (mean ± std over the seeds that "
        "reached it, with their count when not all did). top1@c: top-1 % at c labels per image (the final "
        "top-1 when a run stopped before). Stand-in features, not ImageNet images.\n\n" + "\n\n".join(sections)
    )
    payload = strict_json({"environment": env, "settings": settings, "experiments": blocks})
    common.write_results(common.output_dir(args), args.name, payload, md)


if __name__ == "__main__":
    main()
