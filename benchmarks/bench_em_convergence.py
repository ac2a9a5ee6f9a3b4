"""EM convergence: how fast each EM variant converges on a real online step and on real data.

Problems:
  * an online step of the Vertebrate stand-in: a 1-seed efficient_annotation run is
    stopped at about one label per image; its labels and the learner's probabilities are
    the EM problem, and the counts of the step before give the warm start;
  * RTE and Bluebirds (real crowdsourced labels, tests/data), without a learner.

Variants: M-step hard (reference) or soft (classic), with or without the learner prior,
cold start (counts reset, as the reference) or warm start (the previous online step's
counts, `optimizer.warm_start`). RTE and Bluebirds get the simulator's
'predefined_homegeneous' worker prior (strength 10). For each: the observed-label
log-likelihood and the number of changed labels per iteration (`em.solve` traces), the
iterations and time the reference's stopping rule needs (|change of the mean label
likelihood| < 1e-3), and the accuracy of the result. Writes a table and a plot.

  python benchmarks/bench_em_convergence.py
  python benchmarks/bench_em_convergence.py --quick     # a small stand-in step, seconds
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

import common  # noqa: E402
from jaxanno import em, types  # noqa: E402

TRACE_STEPS = 30


def solve(p: common.EMProblem, m_step: str, use_learner: bool, warm: bool, max_steps: int, trace: bool):
    """(EM result, figures): timed solve with the reference's stopping rule, or (`trace`) an
    untimed traced EM that runs all `max_steps` iterations."""
    static = dataclasses.replace(
        p.static, em=dataclasses.replace(p.static.em, m_step=m_step, criterion="soft", max_em_steps=max_steps)
    )
    # traces run every iteration (a tolerance below zero never stops) to show the whole curve
    params = types.make_params(em_epsilon=-1.0 if trace else 1e-3)
    k = static.num_classes
    counts = jnp.asarray(p.warm_counts) if warm else jnp.zeros((static.num_workers, k, k), jnp.float32)
    log_prior = common.uniform_log_class_prior(k)
    learner = p.learner if use_learner else None

    def run(ann, prior, counts, learner):
        key = jax.random.key(0)
        if trace:  # the diagnostic driver
            res = em.solve(static, params, ann, prior, counts, log_prior, learner, key, with_trace=True)
        else:  # the simulator's driver
            res = em.run(static, params, ann, prior, counts, log_prior, learner, key)
        post = em.posterior(static, params, ann, prior + res.counts, res.log_class_prior, learner)
        return res, post

    fn = jax.jit(run)
    args = (p.annotations, jnp.asarray(p.prior), counts, learner)
    if trace:
        return fn(*args)[0], {}
    t = common.time_call(lambda: fn(*args), repeats=5)
    res, post = fn(*args)
    labelled = np.asarray(p.annotations.item_count) > 0
    correct = np.asarray(post).argmax(-1) == p.truth
    return res, {
        "iterations": int(res.iterations),
        "solve_ms": 1e3 * t.median_s,
        "accuracy_labelled": float(correct[labelled].mean()),
        "accuracy_all": float(correct.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a small stand-in step (width 32, few items)")
    common.add_output_args(ap)
    args = ap.parse_args()
    out = common.output_dir(args)
    env = common.environment()
    print(common.env_line(env), flush=True)
    problems = [common.online_em_problem(args.width, args.seed, quick=args.quick)]
    problems += [common.real_em_problem(name) for name in common.REAL_SETS]
    rows, traces = [], {}
    for p in problems:
        for m_step in ("hard", "soft"):
            for use_learner in (False, True) if p.learner is not None else (False,):
                for warm in (False, True) if p.warm_counts is not None else (False,):
                    extra = " + learner" if use_learner else ""
                    label = f"{p.name} {m_step} M-step{extra}, {'warm' if warm else 'cold'}"
                    res, row = solve(p, m_step, use_learner, warm, 10, trace=False)
                    traced, _ = solve(p, m_step, use_learner, warm, TRACE_STEPS, trace=True)
                    tr = jax.device_get(traced.trace)
                    traces[label] = {
                        "log_likelihood": tr.log_likelihood.tolist(),
                        "label_changes": tr.label_changes.tolist(),
                    }
                    row.update(
                        problem=p.name,
                        m_step=m_step,
                        learner=use_learner,
                        start="warm" if warm else "cold",
                        loglik_first=float(tr.log_likelihood[0]),
                        loglik_at_stop=float(tr.log_likelihood[max(row["iterations"] - 1, 0)]),
                        loglik_30=float(tr.log_likelihood[-1]),
                    )
                    rows.append(row)
                    print(label, common.rounded(row), flush=True)
    _plot(traces, out)
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
        f"# EM convergence\n\n{common.env_line(env)}\n\niterations: what the reference's stopping rule "
        f"(|change of the mean label likelihood| < 1e-3, at most 10) needs; solve_ms: that solve plus the final "
        f"posterior, jitted; loglik: observed-label log-likelihood at the first iteration, at the stop and "
        f"after {TRACE_STEPS} iterations of an EM that is not stopped. Plot: em_convergence.png.\n\n{table}"
    )
    print("\n" + table)
    common.write_results(out, "em_convergence", {"environment": env, "rows": rows, "traces": traces}, md)


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
