"""Reproducing the paper figure by figure: the grid, its runs, the comparison, the report.

* `grid` / `plan`: paper figure -> panels -> curves -> runs (`RunSpec`, shared between figures).
* `execute`: one `runner.run_launch` workdir per run under ``--out``; finished runs are
  skipped and killed ones resume from their checkpoints.
* `compare`: x@target, accuracy at budgets, stop and end points per seed, mean ± std.
* `claims`: the paper's claims as a declarative table, each checked on both sides.
* `paper`: the paper's numbers (``jaxanno/data/paper/figures.json``).
* `write`: REPRODUCTION.md and one PNG per panel.
* `command`: ``python -m jaxanno.reproduce`` / ``jaxanno reproduce``.
"""
