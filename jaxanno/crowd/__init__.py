"""Aggregating real crowd labels with jaxanno's Dawid-Skene model, in crowd-kit's style.

    from jaxanno.crowd import DawidSkene      # was: from crowdkit.aggregation import DawidSkene
    ds = DawidSkene(n_iter=100).fit(df)       # df: columns task, worker, label
    batch = next_batch(ds, n_hits=5, hit_size=40)

Modules, in the order a fit uses them:

* `table`: checking and encoding label tables, gold labels and task features into padded,
  bucketed slots (host side);
* `fitting`: the compiled programs (EM via `em.solve`, learner rounds, worker priors);
* `estimators`: `MajorityVote` and `DawidSkene`, crowd-kit's interface;
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
    next_batch,
)
from jaxanno.crowd.estimators import DawidSkene, MajorityVote
from jaxanno.crowd.fitting import (
    WORKER_PRIORS,
    Fit,
    LearnerInputs,
    gold_confusion_counts,
    host_key,
    iteration_capacity,
    learner_round,
    solve,
    worker_prior_alpha,
)
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
    class_index,
    encode,
    feature_table,
    prepare,
)

__all__ = [
    "ASSIGNMENTS",
    "COLUMNS",
    "DUPLICATE_POLICIES",
    "NO_CAP",
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
    "Problem",
    "assign",
    "bucket",
    "bucket_pow2",
    "check_batch_options",
    "check_frame",
    "check_gold",
    "class_index",
    "encode",
    "feature_table",
    "gold_confusion_counts",
    "host_key",
    "iteration_capacity",
    "learner_round",
    "next_batch",
    "prepare",
    "solve",
    "worker_prior_alpha",
]
