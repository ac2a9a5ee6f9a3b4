"""Aggregating real crowd labels with jaxanno's Dawid-Skene model, in crowd-kit's style.

    from jaxanno.crowd import DawidSkene      # was: from crowdkit.aggregation import DawidSkene
    ds = DawidSkene(n_iter=100).fit(df)       # df: columns task, worker, label
    batch = next_batch(ds, n_hits=5, hit_size=40)

Modules, in the order a fit uses them:

* `table`: checking and encoding label tables, gold labels and task features into padded,
  bucketed slots (host side);
* `checks`: the ranges of every numeric setting, and why;
* `fitting`: the compiled programs (EM via `em.solve`, learner rounds, worker priors,
  the population prior's EM);
* `estimators`: `MajorityVote` and `DawidSkene`, crowd-kit's interface;
* `evaluation`: accuracy of a fitted model against known labels, beside majority vote's;
* `results`: a fitted model and its batch as the label command's tables;
* `batch`: the next HITs for a fitted model (`sampler.draw_hit_items` for the draw).
"""

from jaxanno.crowd.batch import (
    ASSIGNMENTS,
    NO_CAP,
    Batch,
    BatchLimits,
    BatchStatic,
    assign,
    check_batch_options,
    check_fitted,
    compile_next_batch,
    next_batch,
)
from jaxanno.crowd.checks import DAWID_SKENE_RANGES, Range, check_range
from jaxanno.crowd.estimators import POOLED_STRENGTH, TIE_BREAKS, DawidSkene, MajorityVote
from jaxanno.crowd.evaluation import check_truth, evaluate
from jaxanno.crowd.fitting import (
    PRIOR_ROWS,
    WORKER_PRIORS,
    Fit,
    LearnerInputs,
    PopulationFit,
    fit_population_prior,
    gold_confusion_counts,
    host_key,
    iteration_capacity,
    learner_round,
    normalise_rows,
    population_start,
    solve,
    worker_prior_alpha,
)
from jaxanno.crowd.results import OUTPUT_FILES, output_frames, task_frame, worker_frame
from jaxanno.crowd.table import (
    COLUMNS,
    DUPLICATE_POLICIES,
    FeatureInput,
    LabelTable,
    Problem,
    bucket,
    bucket_pow2,
    check_frame,
    check_gold,
    check_one_type,
    class_index,
    encode,
    feature_table,
    prepare,
)

__all__ = [
    "ASSIGNMENTS",
    "COLUMNS",
    "DAWID_SKENE_RANGES",
    "DUPLICATE_POLICIES",
    "NO_CAP",
    "OUTPUT_FILES",
    "POOLED_STRENGTH",
    "PRIOR_ROWS",
    "TIE_BREAKS",
    "WORKER_PRIORS",
    "Batch",
    "BatchLimits",
    "BatchStatic",
    "DawidSkene",
    "FeatureInput",
    "Fit",
    "LabelTable",
    "LearnerInputs",
    "MajorityVote",
    "PopulationFit",
    "Problem",
    "Range",
    "assign",
    "bucket",
    "bucket_pow2",
    "check_batch_options",
    "check_fitted",
    "check_frame",
    "check_gold",
    "check_one_type",
    "check_range",
    "check_truth",
    "class_index",
    "compile_next_batch",
    "encode",
    "evaluate",
    "feature_table",
    "fit_population_prior",
    "gold_confusion_counts",
    "host_key",
    "iteration_capacity",
    "learner_round",
    "next_batch",
    "normalise_rows",
    "output_frames",
    "population_start",
    "prepare",
    "solve",
    "task_frame",
    "worker_frame",
    "worker_prior_alpha",
]
