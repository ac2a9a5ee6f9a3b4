"""EM convergence: how fast each EM variant converges on a real online step and on real data.

Problems:
  * an online step of the Vertebrate stand-in: a 1-seed efficient_annotation run is
    stopped at about one label per image; its labels and the learner's probabilities are
    the EM problem, and the counts of the step before give the warm start;
  * RTE and Bluebirds (real crowdsourced labels, tests/data), without a learner.

Variants: M-step hard (reference) or soft (classic), with or without the learner prior,
cold start (counts reset, as the reference) or warm start (the previous online step's
counts, `optimizer.warm_start`). For each: the observed-label log-likelihood and the
number of changed labels per iteration (`em.solve` traces), the iterations and time the
reference's stopping rule needs (|change of the mean label likelihood| < 1e-3), and the
accuracy of the result. Writes a table and a plot.

  python benchmarks/bench_em_convergence.py
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bench_em_speed  # noqa: E402
import common  # noqa: E402
from jaxanno import config, dawid_skene, em, experiment, types  # noqa: E402

TRACE_STEPS = 30


def online_problem(width: int, seed: int) -> dict[str, Any]:
    """Labels, learner prior and previous counts of one online step of the Vertebrate stand-in."""
    cfg = config.apply_preset_names(config.default_config(), "imagenet_split_1,efficient_annotation")
    cfg.run.num_seeds, cfg.run.seed, cfg.data.feature_dim = 1, seed, width
    cfg.run.chunk_steps = 1
    problem = experiment.prepare(cfg)
    n = problem.static.num_items
    target = n // problem.static.labels_per_step  # ~1 label per image
    state = experiment.blank_state(problem)
    for step in range(target):
        state, _ = experiment.advance(problem, state, step, 1)
    before = state  # after step target - 1: its counts are the warm start
    state, _ = experiment.advance(problem, state, target, 1)  # step target: its labels are the problem
    final, before = problem.by_grid_seed(jax.device_get(state)), problem.by_grid_seed(jax.device_get(before))
    pick = lambda tree: jax.tree.map(lambda x: x[0, 0], tree)  # noqa: E731
    final, before = pick(final), pick(before)
    return dict(
        name="vertebrate_step",
        static=problem.static,
        annotations=final.annotations,
        prior=final.workers.prior_alpha,
        learner=dawid_skene.learner_log_prior(jnp.asarray(before.learner.probs), n),
        warm_counts=before.em.counts,
        truth=np.asarray(problem.features.labels[:n]),
    )


def real_problem(name: str) -> dict[str, Any]:
    import pandas as pd

    w = bench_em_speed.real_workload(name)
    gold = pd.read_csv(f"{common.ROOT}/tests/data/{name}_gold.csv").set_index("task")["label"]
    tasks = np.unique(w["frame"]["task"].to_numpy())
    static = bench_em_speed._static(w, types.EMStatic())
    k = w["num_classes"]
    prior = np.broadcast_to((np.full((k, k), 1.0 / k) + 2 * np.eye(k)) * 10.0, (w["num_workers"], k, k))
    return dict(
        name=name,
        static=static,
        annotations=common.annotation_state(w["workers"], w["labels"], w["num_workers"]),
        prior=jnp.asarray(prior, jnp.float32),
        learner=None,
        warm_counts=None,
        truth=gold.reindex(tasks).to_numpy(),
    )


def solve(p: dict[str, Any], m_step: str, use_learner: bool, warm: bool, max_steps: int, trace: bool):
    static = dataclasses.replace(
        p["static"], em=dataclasses.replace(p["static"].em, m_step=m_step, criterion="soft", max_em_steps=max_steps)
    )
    # traces run every iteration (a tolerance below zero never stops) to show the whole curve
    params = types.make_params(em_epsilon=-1.0 if trace else 1e-3)
    k = static.num_classes
    counts = jnp.asarray(p["warm_counts"]) if warm else jnp.zeros((static.num_workers, k, k), jnp.float32)
    log_prior = jnp.full((k,), -np.log(k), jnp.float32)
    learner = p["learner"] if use_learner else None

    def run(ann, prior, counts, learner):
        res = em.solve(static, params, ann, prior, counts, log_prior, learner, jax.random.key(0), with_trace=trace)
        post = em.posterior(static, params, ann, prior + res.counts, res.log_class_prior, learner)
        return res, post

    fn = jax.jit(run)
    args = (p["annotations"], jnp.asarray(p["prior"]), counts, learner)
    res, post = common.block(fn(*args))
    t = common.time_call(lambda: fn(*args), repeats=5)
    labelled = np.asarray(p["annotations"].item_count) > 0
    correct = np.asarray(post).argmax(-1) == p["truth"]
    return res, {
        "iterations": int(res.iterations),
        "solve_ms": 1e3 * t["median_s"],
        "accuracy_labelled": float(correct[labelled].mean()),
        "accuracy_all": float(correct.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=f"{common.ROOT}/benchmarks/results")
    args = ap.parse_args()
    env = common.environment()
    print(common.env_lines(env), flush=True)
    problems = [online_problem(args.width, args.seed), real_problem("rte"), real_problem("bluebirds")]
    rows, traces = [], {}
    for p in problems:
        for m_step in ("hard", "soft"):
            for use_learner in (False, True) if p["learner"] is not None else (False,):
                for warm in (False, True) if p["warm_counts"] is not None else (False,):
                    extra = " + learner" if use_learner else ""
                    label = f"{p['name']} {m_step} M-step{extra}, {'warm' if warm else 'cold'}"
                    res, row = solve(p, m_step, use_learner, warm, 10, trace=False)
                    traced, _ = solve(p, m_step, use_learner, warm, TRACE_STEPS, trace=True)
                    tr = jax.device_get(traced.trace)
                    traces[label] = {
                        "log_likelihood": tr.log_likelihood.tolist(),
                        "label_changes": tr.label_changes.tolist(),
                    }
                    row.update(
                        problem=p["name"],
                        m_step=m_step,
                        learner=use_learner,
                        start="warm" if warm else "cold",
                        loglik_first=float(tr.log_likelihood[0]),
                        loglik_at_stop=float(tr.log_likelihood[max(row["iterations"] - 1, 0)]),
                        loglik_30=float(tr.log_likelihood[-1]),
                    )
                    rows.append(row)
                    print(label, row, flush=True)
    _plot(traces, args.out)
    cols = [
        "problem",
        "m_step",
        "learner",
        "start",
        "iterations",
        "solve_ms",
        "loglik_first",
        "loglik_at_stop",
        "loglik_30",
        "accuracy_labelled",
        "accuracy_all",
    ]
    table = common.markdown_table(rows, cols)
    md = (
        f"# EM convergence\n\n{common.env_lines(env)}\n\niterations: what the reference's stopping rule "
        f"(|change of the mean label likelihood| < 1e-3, at most 10) needs; solve_ms: that solve plus the final "
        f"posterior, jitted; loglik: observed-label log-likelihood at the first iteration, at the stop and "
        f"after {TRACE_STEPS} iterations of an EM that is not stopped. Plot: em_convergence.png.\n\n{table}"
    )
    print("\n" + table)
    common.write_results(args.out, "em_convergence", {"environment": env, "rows": rows, "traces": traces}, md)


def _plot(traces: dict[str, Any], out: str) -> None:
    names = sorted({k.split(" ")[0] for k in traces})
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 7), squeeze=False)
    for col, name in enumerate(names):
        for label, tr in traces.items():
            if not label.startswith(name + " "):
                continue
            its = np.arange(1, len(tr["log_likelihood"]) + 1)
            axes[0, col].plot(its, tr["log_likelihood"], label=label[len(name) + 1 :])
            axes[1, col].plot(its, np.maximum(tr["label_changes"], 0.5), label=label[len(name) + 1 :])
        axes[0, col].set_title(name)
        axes[0, col].set_ylabel("observed-label log-likelihood")
        axes[1, col].set_ylabel("labels changed (log scale)")
        axes[1, col].set_yscale("log")
        axes[1, col].set_xlabel("EM iteration")
        axes[0, col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{out}/em_convergence.png", dpi=120)


if __name__ == "__main__":
    main()
