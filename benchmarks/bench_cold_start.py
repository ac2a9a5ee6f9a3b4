"""Whole-process wall time as a user meets it: first run (empty compilation cache) and second run
(warm cache), side by side with crowd-kit's whole process in the same run.

    python benchmarks/bench_cold_start.py [--repeats=3] [--launch_repeats=1] [--only=api_rte,...]
        [--out=DIR | --save]

Cases (every one a fresh `python` process, started from the repository root):
  api_rte, api_synth5k  ``DawidSkene(n_iter=100).fit_predict(pd.read_csv(CSV))`` with jaxanno;
                        crowd-kit: the same line with ``crowdkit.aggregation.DawidSkene``
  label_rte, label_synth5k  ``python -m jaxanno.label --labels=CSV --out=DIR --quiet`` (fit,
                        risk and next batch, four files written); crowd-kit: the same fit process
  floor_synth5k         the floor of any JAX program a user starts this way: a process that reads the
                        CSV with pandas and runs one tiny JAX op (no jaxanno; both "runs" alike)
  launch_default        ``python launch.py`` (Vertebrate, Online DS, 4 seeds, with its report)
  launch_test           ``python launch.py --config=configs/test.py``
RTE is tests/data/rte_labels.csv (8,000 labels); synth5k is written to a temporary CSV: 625 tasks x
8 distinct workers out of 60 (5,000 labels), 4 classes, worker accuracy U(0.5, 0.9).

A round runs crowd-kit, then jaxanno with a new empty cache folder (first run), then jaxanno
again on that folder (second run), so each ratio compares processes started seconds apart under
the same machine load; ratios are medians of these paired ratios. The load average is recorded
beside every case (the machine may be shared). JAX_COMPILATION_CACHE_DIR is removed from the
children's environment so that JAXANNO_CACHE_DIR decides the folder.

Results: DIR/cold_start_<platform>.{json,md} with device and versions; DIR is --out (default: a
new temporary folder), or benchmarks/results/ with --save.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
RTE = ROOT / "tests" / "data" / "rte_labels.csv"
N_ITER = 100

JAXANNO_FIT = f"""
import json, sys
import pandas as pd
from jaxanno import outputs
from jaxanno.crowd import DawidSkene
with outputs.count_compiles() as log:
    DawidSkene(n_iter={N_ITER}).fit_predict(pd.read_csv(sys.argv[1]))
print(json.dumps({{"compiled": log.compiled(), "loaded": sum(log.hits.values()), "compile_s": round(log.seconds, 2)}}))
"""
CROWDKIT_FIT = f"""
import sys
import pandas as pd
from crowdkit.aggregation import DawidSkene
DawidSkene(n_iter={N_ITER}).fit_predict(pd.read_csv(sys.argv[1]))
"""
FLOOR = """
import sys
import pandas as pd
import jax.numpy as jnp
pd.read_csv(sys.argv[1])
(jnp.ones(8) + 1).block_until_ready()
"""
OUT_DIR = "OUT_DIR"  # replaced by a new folder for every process: a launch resumes from a workdir's checkpoint
COMPILE_LINE = re.compile(r"simulation program compiled .*? compiling [\d.]+ s \([^)]*\)")


def write_synthetic(path: pathlib.Path, num_tasks=625, per_task=8, num_workers=60, num_classes=4, seed=0) -> None:
    """A crowd table of num_tasks * per_task labels from workers with accuracy U(0.5, 0.9)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(num_classes, size=num_tasks)
    accuracy = rng.uniform(0.5, 0.9, size=num_workers)
    workers = np.stack([rng.choice(num_workers, size=per_task, replace=False) for _ in range(num_tasks)]).ravel()
    tasks = np.repeat(np.arange(num_tasks), per_task)
    right = rng.random(tasks.size) < accuracy[workers]
    wrong = (truth[tasks] + rng.integers(1, num_classes, size=tasks.size)) % num_classes
    labels = np.where(right, truth[tasks], wrong)
    pd.DataFrame({"task": tasks, "worker": [f"w{w}" for w in workers], "label": labels}).to_csv(path, index=False)


def _child_env(cache: pathlib.Path | None) -> dict[str, str]:
    drop = ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE", "JAXANNO_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if cache is not None:
        env["JAXANNO_CACHE_DIR"] = str(cache)
    return env


def run_process(cmd: list[str], cache: pathlib.Path | None, out: pathlib.Path) -> dict:
    """Wall time of one process and its compile report (a JSON last line, or the launch's line)."""
    cmd = [a.replace(OUT_DIR, out.name) if OUT_DIR in a else a for a in cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=_child_env(cache), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out: dict = {"wall_s": round(wall, 3)}
    lines = proc.stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        out.update(json.loads(lines[-1]))
    found = COMPILE_LINE.search(proc.stdout)
    if found:
        out["compile_line"] = found.group(0)
    return out


def cases(work: pathlib.Path, synth: pathlib.Path) -> dict[str, dict]:
    """name -> jaxanno command and crowd-kit command (None where crowd-kit has no counterpart)."""
    py = sys.executable

    def fit(script, csv):
        return [py, "-c", script, str(csv)]

    def label(csv):
        return [py, "-m", "jaxanno.label", f"--labels={csv}", f"--out={work / OUT_DIR}", "--quiet"]

    def launch(*extra):
        return [py, "launch.py", *extra, f"--workdir={work / OUT_DIR}", "--quiet"]

    return {
        "api_rte": {"jaxanno": fit(JAXANNO_FIT, RTE), "crowdkit": fit(CROWDKIT_FIT, RTE)},
        "api_synth5k": {"jaxanno": fit(JAXANNO_FIT, synth), "crowdkit": fit(CROWDKIT_FIT, synth)},
        "label_rte": {"jaxanno": label(RTE), "crowdkit": fit(CROWDKIT_FIT, RTE)},
        "label_synth5k": {"jaxanno": label(synth), "crowdkit": fit(CROWDKIT_FIT, synth)},
        "floor_synth5k": {"jaxanno": fit(FLOOR, synth), "crowdkit": fit(CROWDKIT_FIT, synth)},
        "launch_default": {"jaxanno": launch(), "crowdkit": None},
        "launch_test": {"jaxanno": launch("--config=configs/test.py"), "crowdkit": None},
    }


def measure(name: str, spec: dict, repeats: int, work: pathlib.Path) -> dict:
    """`repeats` rounds of crowd-kit, jaxanno on an empty cache, jaxanno on the now warm cache."""
    rounds = []
    load = [round(x, 2) for x in os.getloadavg()]
    for r in range(repeats):
        cache = work / f"cache_{name}_{r}"
        row = {"crowdkit": run_process(spec["crowdkit"], None, work) if spec["crowdkit"] else None}
        row["first"] = run_process(spec["jaxanno"], cache, work / f"out_{name}_{r}_first")
        row["second"] = run_process(spec["jaxanno"], cache, work / f"out_{name}_{r}_second")
        rounds.append(row)
        ck = f"crowd-kit {row['crowdkit']['wall_s']:.2f}s, " if row["crowdkit"] else ""
        print(f"  {name} #{r + 1}: {ck}first {row['first']['wall_s']:.2f}s, second {row['second']['wall_s']:.2f}s")
    return summarise(name, spec, rounds, load + [round(x, 2) for x in os.getloadavg()])


def _compile_note(run: dict) -> str:
    if "compile_line" in run:
        return run["compile_line"]
    if "compiled" in run:
        return f"{run['compiled']} compiled, {run['loaded']} loaded from the cache, {run['compile_s']:.2f} s"
    return "not printed by this command"


def _shown(cmd: list[str]) -> str:
    """The command as a reader would type it: python, repository-relative paths, TMP for the scratch folder."""
    parts = ["python"] + ["'<script>'" if "\n" in a else a for a in cmd[1:]]
    text = " ".join(parts).replace(f"{ROOT}/", "")
    return re.sub(r"/\S*cold_start_[^/]*", "TMP", text)


def summarise(name: str, spec: dict, rounds: list[dict], load: list[float]) -> dict:
    def median(key):
        return round(statistics.median(r[key]["wall_s"] for r in rounds), 3)

    result = {
        "case": name,
        "command": _shown(spec["jaxanno"]),
        "repeats": len(rounds),
        "first_s": median("first"),
        "second_s": median("second"),
        "first_compile": _compile_note(rounds[-1]["first"]),
        "second_compile": _compile_note(rounds[-1]["second"]),
        "load_average_before_after": load,
        "rounds": rounds,
    }
    if spec["crowdkit"]:
        result["crowdkit_s"] = median("crowdkit")
        for run in ("first", "second"):
            ratios = [r[run]["wall_s"] / r["crowdkit"]["wall_s"] for r in rounds]
            result[f"{run}_vs_crowdkit"] = round(statistics.median(ratios), 2)
    return result


def environment() -> dict[str, str]:
    from jaxanno import compile_cache, outputs

    env = outputs.environment()
    env.update(
        crowdkit=importlib.metadata.version("crowd-kit"),
        pandas=pd.__version__,
        jaxanno=importlib.metadata.version("jaxanno"),
        cache_folder_name=compile_cache.folder_name(),
        machine=platform.machine(),
    )
    return env


def markdown(env: dict, results: list[dict]) -> str:
    lines = [
        "# Cold start: whole-process wall time, first run (empty cache) and second run (warm cache)",
        "",
        f"Device {env['device']}, {env['cpu_count']} CPU(s); jax {env['jax']}, jaxanno {env['jaxanno']}, "
        f"crowd-kit {env['crowdkit']}, pandas {env['pandas']}, Python {env['python']}. Medians of paired "
        "rounds (crowd-kit, jaxanno first run, jaxanno second run); ratio = jaxanno / crowd-kit, median of "
        f"the paired ratios (below 1: jaxanno faster). DawidSkene n_iter={N_ITER} in both libraries.",
        "",
        "| case | rounds | crowd-kit s | jaxanno first s | jaxanno second s | first / crowd-kit "
        "| second / crowd-kit | load avg 1-min (before / after) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ck = f"{r['crowdkit_s']:.2f}" if "crowdkit_s" in r else "-"
        first, second = (f"{r[k]:.2f}" if k in r else "-" for k in ("first_vs_crowdkit", "second_vs_crowdkit"))
        load = r["load_average_before_after"]
        lines.append(
            f"| {r['case']} | {r['repeats']} | {ck} | {r['first_s']:.2f} | {r['second_s']:.2f} "
            f"| {first} | {second} | {load[0]:.2f} / {load[3]:.2f} |"
        )
    lines += ["", "Compilation in the last round:", ""]
    for r in results:
        lines.append(f"- {r['case']} (`{r['command']}`): first: {r['first_compile']}; second: {r['second_compile']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="paired rounds of the crowd-fit cases")
    parser.add_argument("--launch_repeats", type=int, default=1, help="rounds of the launch cases")
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--out", default=None, help="results folder (default: a new temporary folder)")
    parser.add_argument("--save", action="store_true", help="write into benchmarks/results/")
    args = parser.parse_args()
    out = ROOT / "benchmarks" / "results" if args.save else pathlib.Path(args.out or tempfile.mkdtemp(prefix="cold_"))
    env = environment()
    print(json.dumps(env))
    chosen = [c for c in args.only.split(",") if c]
    results = []
    with tempfile.TemporaryDirectory(prefix="cold_start_") as tmp:
        work = pathlib.Path(tmp)
        synth = work / "synth5k.csv"
        write_synthetic(synth)
        for name, spec in cases(work, synth).items():
            if chosen and name not in chosen:
                continue
            repeats = args.launch_repeats if name.startswith("launch") else args.repeats
            results.append(measure(name, spec, repeats, work))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cold_start_{env['device'].split(':')[0]}"
    (out / f"{stem}.json").write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")
    text = markdown(env, results)
    (out / f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {out / stem}.json and .md")


if __name__ == "__main__":
    main()
