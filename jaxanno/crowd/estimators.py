"""crowd-kit-style aggregators: `MajorityVote` and `DawidSkene` (jaxanno's EM and learner).

`MajorityVote` and `DawidSkene` mirror crowd-kit's classes (``fit``, ``fit_predict``,
``fit_predict_proba``, ``labels_``, ``probas_``, ``priors_``, ``errors_``, ``skills_``,
``loss_history_``), so switching is a one-line import change:

    from jaxanno.crowd import DawidSkene      # was: from crowdkit.aggregation import DawidSkene
    labels = DawidSkene(n_iter=100).fit_predict(df)

With its defaults `DawidSkene` is crowd-kit's model (soft M-step, learned class prior,
majority-vote start, ELBO stopping rule with the same 1e-10 clipping) and returns the same
posteriors up to float32 rounding. `DawidSkene.reference()` is the paper's online model
instead (hard M-step, Dirichlet worker prior, uniform class prior), and
`DawidSkene.pooled()` classic Dawid-Skene with every worker shrunk toward the crowd's
pooled confusion (the label command's default). Extras: ``risks_``
(1 - max posterior), ``confident_``, per-worker ``skills_`` (expected accuracy) and an
optional learner prior from task features (jaxanno.learner, with gold tasks as its
validation prototypes). The compiled programs are in `jaxanno.crowd.fitting`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd

from jaxanno import dawid_skene, types
from jaxanno.crowd import checks
from jaxanno.crowd.fitting import (
    PRIOR_ROWS,
    WORKER_PRIORS,
    Fit,
    fit_population_prior,
    host_key,
    iteration_capacity,
    learner_inputs,
    learner_round,
    solve,
    worker_prior_alpha,
)
from jaxanno.crowd.table import FeatureInput, LabelTable, Problem, encode, prepare
from jaxanno.types import EMStatic, LearnerStatic, Params, Static, make_params

TIE_BREAKS = ("first_seen", "class_order")  # MajorityVote: which label wins a tied vote
AUTO_VAL_PER_CLASS = 10  # validation rows per class moved from training when there is no gold
POOLED_STRENGTH = 20.0  # pseudo-labels per confusion row of `DawidSkene.pooled`
_majority_vote = jax.jit(dawid_skene.majority_vote, static_argnums=1)


def _proba_frame(posterior: np.ndarray, tasks: pd.Index, classes: pd.Index) -> pd.DataFrame:
    frame = pd.DataFrame(posterior, index=pd.Index(tasks, name="task"), columns=pd.Index(classes, name="label"))
    return frame


def _labels_series(posterior: np.ndarray, tasks: pd.Index, classes: pd.Index) -> pd.Series:
    """Most probable class per task; an exact tie goes to the first class in class order."""
    return pd.Series(classes[posterior.argmax(1)], index=pd.Index(tasks, name="task"), name="agg_label")


def _agreement(table: LabelTable, label_codes: np.ndarray) -> np.ndarray:
    """(W,) fraction of each worker's labels equal to the aggregated label of the task."""
    agree = (table.label_code == label_codes[table.task_code]).astype(np.float64)
    hits = np.bincount(table.worker_code, weights=agree, minlength=table.num_workers)
    return hits / np.maximum(table.worker_count, 1)


class MajorityVote:
    """Majority vote, as crowd-kit's: probas_ are vote shares.

    Ties go to the label seen first in the data (``ties='first_seen'``), which is what
    crowd-kit 1.4.2 does under pandas >= 3 (its column order is pandas' ``value_counts``
    order, first appearance since pandas 3); ``ties='class_order'`` gives the first class
    in class order instead, crowd-kit's result under pandas 2.

    Attributes after `fit`: ``labels_`` (Series by task), ``probas_`` (task x label, class
    order), ``skills_`` (each worker's agreement with ``labels_``), ``risks_`` (1 - max share).
    """

    def __init__(self, classes: Iterable[Any] | None = None, duplicates: str = "error", ties: str = "first_seen"):
        self.classes = classes
        self.duplicates = duplicates
        self.ties = ties

    def fit(self, data: pd.DataFrame) -> MajorityVote:
        types.check_option("MajorityVote", "ties", self.ties, TIE_BREAKS)
        table = encode(data, self.classes, self.duplicates)
        shares = np.asarray(_majority_vote(table.annotations, len(table.classes)))[: table.num_items]
        order = _tie_order(table, self.ties)
        label_codes = order[shares[:, order].argmax(1)]  # the first maximum in `order`
        self.table_ = table
        self.probas_ = _proba_frame(shares, table.tasks, table.classes)
        self.labels_ = pd.Series(table.classes[label_codes], index=self.probas_.index, name="agg_label")
        self.risks_ = pd.Series(1.0 - shares.max(1), index=self.probas_.index, name="risk")
        agreement = _agreement(table, label_codes)
        self.skills_ = pd.Series(agreement, index=pd.Index(table.workers, name="worker"), name="skill")
        return self

    def fit_predict(self, data: pd.DataFrame) -> pd.Series:
        return self.fit(data).labels_

    def fit_predict_proba(self, data: pd.DataFrame) -> pd.DataFrame:
        return self.fit(data).probas_


def _tie_order(table: LabelTable, ties: str) -> np.ndarray:
    """(K,) class codes in order of preference on a tie: first seen in the labels, or class order."""
    k = len(table.classes)
    if ties == "class_order":
        return np.arange(k)
    seen = pd.unique(table.label_code)
    return np.concatenate([seen, np.setdiff1d(np.arange(k), seen)]).astype(np.int64)


class DawidSkene:
    """Dawid-Skene EM over worker confusion matrices, crowd-kit's interface, jaxanno's model.

    Defaults reproduce crowd-kit's `DawidSkene(n_iter, tol)`: soft (expected-count) M-step,
    class prior learned as the mean posterior, majority-vote start, stop when the ELBO per
    label gains less than `tol`, no worker prior, and ``probas_`` from the last E-step.
    `DawidSkene.reference()` gives the paper's online model instead.

    Args:
      n_iter, tol: at most `n_iter` EM iterations; the tolerance of `criterion`.
      m_step: 'soft' (classic) or 'hard' (counts of the argmax label, the reference).
      class_prior: 'learned' (mean posterior) or 'uniform' (the reference).
      init: 'majority_vote' (first M-step from vote shares) or 'prior' (zero counts).
      criterion: 'elbo' (crowd-kit), 'soft' (|change of mean label likelihood|) or 'hard'
        (no argmax changes).
      worker_prior: None, 'predefined_homegeneous' (diagonal `prior_pos_count`,
        off-diagonal `prior_neg_count` / K), 'homegeneous_workers*' (built from the
        labels on gold tasks) or 'population' (the crowd's pooled confusion, re-estimated
        with the fit; see `fitting.fit_population_prior`).
      prior_strength, prior_rows: with prior_rows='scaled' the pseudo-counts are
        multiplied by `prior_strength` (so priors counted on gold grow with the gold set);
        with 'normalised' every row is rescaled to sum to `prior_strength` pseudo-labels.
        A 'population' prior always has rows of `prior_strength` pseudo-labels.
      log_epsilon: added inside log p(z | y) (reference 1e-8; crowd-kit 0).
      final_e_step: report the posterior of one more E-step with the final counts (the
        reference) instead of the last EM E-step's (crowd-kit). Always done with a learner.
      risk_threshold: a task is confident when 1 - max posterior is below it.
      classes: the class list (default: sorted labels seen); duplicates: see the module doc.
      learner: 'mlp' to use task features (when `fit` gets them) as a learned label prior,
        or None. learner_hidden, learner_epochs, learner_semi_supervised ('none',
        'pseudolabel' or 'mixmatch'), learner_rounds (EM + fit repetitions) configure it.
      seed: seeds tie-breaks and the learner.

    Compilation: one EM program per (bucketed table shape, number of classes, m_step,
    class_prior, init, criterion, final_e_step); `n_iter`, `tol`, the prior settings,
    `log_epsilon`, `risk_threshold` and `seed` are traced and never recompile.
    """

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        *,
        m_step: str = "soft",
        class_prior: str = "learned",
        init: str = "majority_vote",
        criterion: str = "elbo",
        worker_prior: str | None = None,
        prior_strength: float = 10.0,
        prior_rows: str = "scaled",
        prior_pos_count: float = 2.0,
        prior_neg_count: float = 1.0,
        log_epsilon: float = 0.0,
        final_e_step: bool = False,
        risk_threshold: float = 0.1,
        classes: Iterable[Any] | None = None,
        duplicates: str = "error",
        learner: str | None = "mlp",
        learner_hidden: Sequence[int] = (64,),
        learner_epochs: int = 300,
        learner_semi_supervised: str = "none",
        learner_rounds: int = 1,
        seed: int = 0,
    ):
        self.n_iter, self.tol = n_iter, tol
        self.m_step, self.class_prior, self.init, self.criterion = m_step, class_prior, init, criterion
        self.worker_prior, self.prior_strength, self.prior_rows = worker_prior, prior_strength, prior_rows
        self.prior_pos_count, self.prior_neg_count = prior_pos_count, prior_neg_count
        self.log_epsilon, self.final_e_step, self.risk_threshold = log_epsilon, final_e_step, risk_threshold
        self.classes, self.duplicates = classes, duplicates
        self.learner, self.learner_hidden, self.learner_epochs = learner, tuple(learner_hidden), learner_epochs
        self.learner_semi_supervised, self.learner_rounds = learner_semi_supervised, learner_rounds
        self.seed = seed

    @classmethod
    def reference(cls, **overrides: Any) -> DawidSkene:
        """The paper's model: hard M-step, uniform class prior, zero-count start, Dirichlet
        prior 'predefined_homegeneous' x 10, mean-label-likelihood criterion (1e-3, 10
        iterations), log epsilon 1e-8, posterior from a fresh E-step."""
        settings = dict(
            n_iter=10,
            tol=1e-3,
            m_step="hard",
            class_prior="uniform",
            init="prior",
            criterion="soft",
            worker_prior="predefined_homegeneous",
            prior_strength=10.0,
            log_epsilon=1e-8,
            final_e_step=True,
        )
        return cls(**{**settings, **overrides})

    @classmethod
    def pooled(cls, **overrides: Any) -> DawidSkene:
        """Classic Dawid-Skene (soft M-step, majority-vote start, ELBO) whose workers are
        shrunk toward the crowd: a 'population' prior of `POOLED_STRENGTH` pseudo-labels
        per confusion row and a uniform class prior. A worker with few labels counts as
        an average worker, so one or two labels do not make a task confident, and greedy
        assignment ranks workers by these shrunk estimates. The label command's default."""
        settings = dict(class_prior="uniform", worker_prior="population", prior_strength=POOLED_STRENGTH)
        return cls(**{**settings, **overrides})

    def check_options(self) -> None:
        """Raise ValueError for an unknown option value or a number out of range (before
        any input is read).

        The EM options are checked by `EMStatic` itself, the other strings with
        `types.check_option` against the tuples of `jaxanno.types`, numbers by
        `checks.check_dawid_skene` (every range and its reason are in `checks`).
        """
        checks.check_dawid_skene(self)
        self._em_options()
        types.check_option("DawidSkene", "learner", self.learner, ("mlp", None))
        types.check_option("DawidSkene", "learner_semi_supervised", self.learner_semi_supervised, types.SEMI_SUPERVISED)
        types.check_option("DawidSkene", "worker_prior", self.worker_prior, (None, *WORKER_PRIORS))
        types.check_option("DawidSkene", "prior_rows", self.prior_rows, PRIOR_ROWS)

    def _em_options(self) -> EMStatic:
        return EMStatic(
            max_em_steps=iteration_capacity(self.n_iter),
            criterion=self.criterion,
            m_step=self.m_step,
            class_prior=self.class_prior,
            init=self.init,
        )

    def em_static(self, table: LabelTable) -> Static:
        """The EM program's `Static` for a fit on `table`: bucketed shapes, no learner (so
        learner settings never recompile EM), ``max_em_steps`` a capacity >= `n_iter`."""
        n_pad, a_pad = table.annotations.worker.shape
        return Static(
            num_items=int(n_pad),
            num_prototypes=0,
            num_classes=len(table.classes),
            num_workers=int(table.annotations.worker_count.shape[0]),
            feature_dim=1,
            max_annotations=int(a_pad),
            em=self._em_options(),
        )

    def em_params(self) -> Params:
        """The traced settings of a fit: tolerance, prior, log epsilon, risk threshold."""
        return make_params(
            risk_threshold=self.risk_threshold,
            prior_strength=self.prior_strength,
            prior_pos_count=self.prior_pos_count,
            prior_neg_count=self.prior_neg_count,
            em_epsilon=self.tol,
            log_epsilon=self.log_epsilon,
            pseudo_label_threshold=self.risk_threshold,
        )

    def _learner_static(self, static: Static, problem: Problem) -> Static:
        from jaxanno import learner  # flax and optax load only for fits that use a learner

        k, p = static.num_classes, len(problem.prototype_labels)
        per_class = max(round(p / k), 2) if p else 2 * AUTO_VAL_PER_CLASS
        ls = LearnerStatic(
            model=learner.MLP(num_classes=k, hidden_sizes=self.learner_hidden),
            max_epochs=int(self.learner_epochs),
            calibrate="temperature",
            semi_supervised=self.learner_semi_supervised,
            early_stop_scope="global",
            prototype_as_val=True,
        )
        return dataclasses.replace(
            static,
            num_prototypes=p,
            feature_dim=int(problem.features.shape[1]),
            n_prototype_per_class=per_class,
            learner=ls,
        )

    def fit(
        self,
        data: pd.DataFrame,
        true_labels: Any = None,
        initial_error: Any = None,
        *,
        features: FeatureInput | None = None,
    ) -> DawidSkene:
        """Fit on a label table (columns task, worker, label).

        Args:
          true_labels: optional gold labels (Series task -> label, or a DataFrame with task
            and label columns): clamped in every E-step as crowd-kit does; with features,
            gold tasks are the learner's validation prototypes.
          initial_error: crowd-kit's argument; not supported (use `worker_prior`).
          features: optional task features (DataFrame indexed by task, or (tasks, array));
            tasks that only have features become unlabelled items.
        """
        if initial_error is not None:
            raise ValueError(
                "initial_error: crowd-kit's initial error matrices are not a jaxanno option; express prior "
                "knowledge of the workers with worker_prior and prior_strength instead"
            )
        self.check_options()
        problem = prepare(data, true_labels, features, self.classes, self.duplicates)
        return self.fit_prepared(problem)

    def fit_prepared(self, problem: Problem) -> DawidSkene:
        """`fit` on inputs already checked and converted by `prepare` (the command line's path).

        Raises:
          ValueError: the settings are out of range, or the fit's posterior is not finite
            (see `check_finite`): no NaN ever reaches ``probas_``.
        """
        self.check_options()
        table = problem.table
        static, params = self.em_static(table), self.em_params()
        key = host_key(self.seed)
        gold = jax.device_put(problem.gold_codes)
        limit = jax.device_put(np.int32(self.n_iter))
        use_learner = self.learner is not None and problem.features is not None
        final = self.final_e_step or use_learner
        self.population_, self.population_rounds_ = None, 0
        if self.worker_prior == "population":
            pooled = fit_population_prior(static, params, table.annotations, gold, key, limit, table.num_workers, final)
            fit, prior, self.population_, self.population_rounds_ = pooled  # the last solve, its prior, P, solves
        else:
            prior = worker_prior_alpha(static, params, self.worker_prior, table, problem.gold_codes, self.prior_rows)
            fit = solve(static, params, table.annotations, prior, None, gold, key, limit, final_e_step=final)
        probs = None
        if use_learner:
            from jaxanno import learner  # flax and optax load only for fits that use a learner

            lstatic = self._learner_static(static, problem)
            inputs = learner_inputs(problem)
            output = learner.init_output(lstatic)
            rounds = int(self.learner_rounds)
            for r in range(rounds):
                fit, output = learner_round(static, lstatic, params, table.annotations, prior, gold, inputs, fit,
                                            output, key, np.int32(r), limit, resolve=r + 1 < rounds)  # fmt: skip
            probs = np.asarray(output.probs)
        host = jax.device_get(fit)
        self.check_finite(host, table.num_items, use_learner)
        self._store(problem, host, fit, probs)
        self.prior_alpha_ = np.asarray(prior)[: table.num_workers]
        return self

    def check_finite(self, host: Fit, num_items: int, used_learner: bool) -> None:
        """Raise a ValueError naming the likely settings when a posterior is NaN or inf.

        Range checks keep every setting finite, but pseudo-counts can still overflow
        float32 in sums (e.g. prior_strength x prior_pos_count above 3.4e38), and a learner
        can diverge on features of huge magnitude; a NaN posterior would otherwise read as
        label 0 with risk NaN, which no threshold test ever calls unconfident.
        """
        bad = ~np.isfinite(host.posterior[:num_items]).all(1)
        if not bad.any():
            return
        settings = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("worker_prior", "prior_strength", "prior_pos_count", "prior_neg_count", "log_epsilon")
        )
        learner_hint = "; or the learner diverged: scale the features to unit size" if used_learner else ""
        raise ValueError(
            f"DawidSkene.fit: the posterior of {int(bad.sum())} of {num_items} task(s) is not finite (NaN or inf), "
            f"so no label can be read from it; likely cause: pseudo-counts overflowing float32 ({settings}): "
            f"keep prior_strength x the prior's counts far below 3.4e38{learner_hint}"
        )

    def _store(self, problem: Problem, host: Fit, device: Fit, learner_probs: np.ndarray | None) -> None:
        """Fit results to crowd-kit-style pandas attributes (real rows and workers only)."""
        table = problem.table
        n, w, classes = table.num_items, table.num_workers, table.classes
        posterior = host.posterior[:n]
        confusion = host.confusion[:w]  # (W, K, K) p(given | true)
        class_prior = np.exp(host.solution.log_class_prior)
        worker_index = pd.Index(table.workers, name="worker")
        self.table_, self.problem_ = table, problem
        self.posterior_, self.alpha_ = device.posterior, device.alpha  # padded, for next_batch
        self.probas_ = _proba_frame(posterior, table.tasks, classes)
        self.labels_ = _labels_series(posterior, table.tasks, classes)
        self.risks_ = pd.Series(1.0 - posterior.max(1), index=self.probas_.index, name="risk")
        self.confident_ = (self.risks_ < self.risk_threshold).rename("confident")
        self.priors_ = pd.Series(class_prior, index=pd.Index(classes, name="label"), name="prior")
        self.confusion_ = confusion
        errors = confusion.transpose(0, 2, 1).reshape(w * len(classes), len(classes))
        index = pd.MultiIndex.from_product([table.workers, classes], names=["worker", "label"])
        self.errors_ = pd.DataFrame(errors, index=index, columns=pd.Index(classes, name="label"))
        accuracy = (confusion.diagonal(axis1=1, axis2=2) * class_prior).sum(1)
        self.skills_ = pd.Series(accuracy, index=worker_index, name="skill")
        self.agreement_ = pd.Series(_agreement(table, posterior.argmax(1)), index=worker_index, name="agreement")
        self.n_iter_ = int(host.solution.iterations)
        self.loss_history_ = [float(v) for v in host.solution.history[: self.n_iter_]]
        self.learner_probas_ = None
        if learner_probs is not None:
            self.learner_probas_ = _proba_frame(learner_probs[:n], table.tasks, classes)

    def fit_predict(
        self,
        data: pd.DataFrame,
        true_labels: Any = None,
        initial_error: Any = None,
        *,
        features: FeatureInput | None = None,
    ) -> pd.Series:
        """`fit`, then the most probable label of every task (Series indexed by task)."""
        return self.fit(data, true_labels, initial_error, features=features).labels_

    def fit_predict_proba(
        self,
        data: pd.DataFrame,
        true_labels: Any = None,
        initial_error: Any = None,
        *,
        features: FeatureInput | None = None,
    ) -> pd.DataFrame:
        """`fit`, then the posterior (task x label DataFrame, rows sum to 1)."""
        return self.fit(data, true_labels, initial_error, features=features).probas_

    def confusion_frame(self) -> pd.DataFrame:
        """Long format: worker, true, given, prob = p(given | true) for every worker."""
        w, k = self.confusion_.shape[:2]
        classes = self.table_.classes
        return pd.DataFrame(
            {
                "worker": np.repeat(np.asarray(self.table_.workers, dtype=object), k * k),
                "true": np.tile(np.repeat(np.asarray(classes, dtype=object), k), w),
                "given": np.tile(np.asarray(classes, dtype=object), w * k),
                "prob": self.confusion_.reshape(-1),
            }
        )
