"""Test oracles: slow, obvious NumPy float64 versions of the original implementation's rules.

Written from the rules as the jaxanno docstrings state them (and as the original
implementation behaves), with plain loops, independently of the JAX code paths.
"""

from __future__ import annotations

import numpy as np

LOG_EPS = 1e-8


def confusion(alpha):
    """(W, K, K) p(z | y, j) from pseudo-counts, clipped like jaxanno (1e-10)."""
    a = np.maximum(np.asarray(alpha, np.float64), 1e-10)
    return a / a.sum(-1, keepdims=True)


def log_belief(alpha, workers, labels, log_prior=None, learner=None, log_eps=LOG_EPS):
    """(N, K) unnormalised log posterior by looping over items and their labels."""
    conf = confusion(alpha)
    n, a = workers.shape
    k = conf.shape[-1]
    out = np.zeros((n, k))
    for i in range(n):
        out[i] = np.log(1.0 / k) if log_prior is None else log_prior
        for s in range(a):
            if workers[i, s] >= 0:
                out[i] += np.log(conf[workers[i, s], :, labels[i, s]] + log_eps)
        if learner is not None:
            out[i] += np.log(learner[i] + 1e-8)
    return out


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def hard_counts(workers, labels, label_hat, num_workers, k):
    counts = np.zeros((num_workers, k, k))
    for i in range(workers.shape[0]):
        for s in range(workers.shape[1]):
            if workers[i, s] >= 0:
                counts[workers[i, s], label_hat[i], labels[i, s]] += 1
    return counts


def soft_counts(workers, labels, post, num_workers, k):
    counts = np.zeros((num_workers, k, k))
    for i in range(workers.shape[0]):
        for s in range(workers.shape[1]):
            if workers[i, s] >= 0:
                counts[workers[i, s], :, labels[i, s]] += post[i]
    return counts


def mean_label_likelihood(workers, labels, label_hat, alpha):
    conf = confusion(alpha)
    vals = [
        conf[workers[i, s], label_hat[i], labels[i, s]]
        for i in range(workers.shape[0])
        for s in range(workers.shape[1])
        if workers[i, s] >= 0
    ]
    return float(np.mean(vals))


def em(prior_alpha, workers, labels, max_steps=10, eps=1e-3, criterion="soft", m_step="hard", learner=None):
    """The original EM of one online step (reset counts, E / M / statistic / check).

    Returns (counts, iterations). Assumes no exact ties in the hard M-step.
    """
    num_workers, k, _ = prior_alpha.shape
    counts = np.zeros_like(prior_alpha, dtype=np.float64)
    if not (workers >= 0).any():
        return counts, 0
    prev_stat, prev_hat = None, None
    for i in range(max_steps):
        lb = log_belief(prior_alpha + counts, workers, labels, learner=learner)
        post = softmax(lb)
        hat = lb.argmax(-1)
        if m_step == "hard":
            counts = hard_counts(workers, labels, hat, num_workers, k)
        else:
            counts = soft_counts(workers, labels, post, num_workers, k)
        stat = mean_label_likelihood(workers, labels, hat, prior_alpha + counts)
        if i > 0:
            if criterion == "soft" and abs(stat - prev_stat) < eps:
                return counts, i + 1
            if criterion == "hard" and np.all(hat == prev_hat):
                return counts, i + 1
        prev_stat, prev_hat = stat, hat
    return counts, max_steps


def majority_vote(labels, valid, k):
    votes = np.zeros((labels.shape[0], k))
    for i in range(labels.shape[0]):
        for s in range(labels.shape[1]):
            if valid[i, s]:
                votes[i, labels[i, s]] += 1
    total = votes.sum(-1, keepdims=True)
    return np.where(total > 0, votes / np.where(total > 0, total, 1), 1.0 / k)


def real_worker_matrix(group_totals, worker_counts, picked, class_group, noise, diagonal_only=False):
    """One AMT-derived worker: totals + 10 x picked worker, normalised, out-of-group move."""
    m = sum(group_totals[g] + 10.0 * worker_counts[g, picked[g]] for g in range(len(picked)))
    m = m / m.sum(1, keepdims=True)
    k = m.shape[0]
    if diagonal_only:
        d = np.diag(m).copy()
        m = np.tile(((1 - d) / (k - 1))[:, None], (1, k))
        np.fill_diagonal(m, d)
    out = m.copy()
    for i in range(k):
        if class_group[i] < 0:
            continue
        same = np.array([j == i or class_group[j] == class_group[i] for j in range(k)])
        if (~same).sum() == 0:
            continue
        mass = m[i, same].sum()
        out[i, same] = m[i, same] * (1 - noise)
        out[i, ~same] = m[i, ~same] + mass * noise / (~same).sum()
    return out


def prior(kind, g, own, strength, pos=2.0, neg=1.0):
    """Dirichlet prior of one worker (see `workers.prior_alpha`); g global counts, own true matrix."""
    k = g.shape[0]
    if kind == "predefined_homegeneous":
        p = np.full((k, k), neg / k)
        np.fill_diagonal(p, pos)
        return p * strength
    src = g if kind.startswith("homegeneous") else own
    if kind.endswith("_workers"):
        p = np.full((k, k), (src.sum(1).mean() - np.diag(src).mean()) / (k - 1))
        np.fill_diagonal(p, np.diag(src).mean())
    elif kind.endswith("diagonal_perfect"):
        p = np.tile(((src.sum(1) - np.diag(src)) / (k - 1))[:, None], (1, k))
        np.fill_diagonal(p, np.diag(src))
    else:
        p = src.copy()
    return p * strength


def lowered_threshold(risk, room, threshold, hit_size):
    """The original loop: lower by 0.01 until `hit_size` items qualify (None if never)."""
    if room.sum() < hit_size:
        return None
    t = threshold
    while ((risk > t) & room).sum() < hit_size:
        t -= 0.01
    return t


def early_stopper(confident_counts, costs, n_items, window):
    """Index of the first step at which the original early stopper fires, or None."""
    history = []
    for idx, (num, cost) in enumerate(zip(confident_counts, costs)):
        history.append(num)
        if len(history) <= window or cost < n_items / 2.0:
            continue
        if len(history) > 3 and not np.any(max(history) == np.array(history[-window:])):
            return idx
    return None


def sustained_counts(confident_counts, hold):
    """The counts the 'sustained' early stopper watches: the minimum of the latest `hold`
    counts (-1 before `hold` counts exist)."""
    return [min(confident_counts[t - hold + 1 : t + 1]) if t >= hold - 1 else -1 for t in range(len(confident_counts))]


def topk_accuracy(belief, labels, k):
    order = np.argsort(belief, 1)[:, ::-1]
    return np.any(order[:, :k] == labels[:, None], 1)


def ece(belief, labels, bins=10):
    conf = belief.max(1)
    pred = belief.argmax(1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = (conf > lo) & (conf <= hi)
        if sel.sum():
            total += abs((pred[sel] == labels[sel]).mean() - conf[sel].mean()) * sel.sum() / len(conf)
    return total


def elbo_per_label(workers, labels, post, alpha, class_prior):
    """crowd-kit's evidence lower bound divided by the number of labels.

    Its class-prior term enters once per label (as crowd-kit computes it); the entropy
    term once per labelled item.
    """
    conf = confusion(alpha)
    total, n_labels = 0.0, 0
    for i in range(workers.shape[0]):
        filled = [s for s in range(workers.shape[1]) if workers[i, s] >= 0]
        for s in filled:
            log_p = np.log(conf[workers[i, s], :, labels[i, s]])
            total += float((post[i] * (log_p + np.log(class_prior))).sum())
            n_labels += 1
        if filled:
            q = post[i]
            total -= float((q * np.log(np.maximum(q, 1e-10))).sum())
    return total / max(n_labels, 1)


def classic_dawid_skene(workers, labels, num_workers, k, n_iter=100, tol=1e-5):
    """crowd-kit's Dawid-Skene: majority-vote start, soft M-step, learned class prior,
    stop when the ELBO per label gains less than `tol` (never after the first iteration).

    Returns (posterior of the last E-step, counts, class prior, iterations, ELBO history).
    """
    post = majority_vote(labels, workers >= 0, k)
    labelled = (workers >= 0).any(1)
    class_prior = post[labelled].mean(0)
    counts = soft_counts(workers, labels, post, num_workers, k)
    history = []
    for _ in range(n_iter):
        lb = log_belief(counts, workers, labels, log_prior=np.log(class_prior), log_eps=0.0)
        post = softmax(lb)
        class_prior = post[labelled].mean(0)
        counts = soft_counts(workers, labels, post, num_workers, k)
        history.append(elbo_per_label(workers, labels, post, counts, class_prior))
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
    return post, counts, class_prior, len(history), history


def expected_risk_after(belief, conf):
    """Expected 1 - max posterior after one answer z ~ sum_y b(y) C(y, z), by enumerating
    every answer and its Bayes update (float64 loops, all K answers and classes)."""
    b = np.asarray(belief, np.float64)
    c = np.asarray(conf, np.float64)
    total = 0.0
    for z in range(c.shape[1]):
        joint = b * c[:, z]
        p_z = joint.sum()
        if p_z > 0:
            total += p_z * (1.0 - (joint / p_z).max())
    return total


def coarsened_gain(belief, conf, t):
    """Expected risk reduction when only the t most probable classes count and every answer
    outside them is one merged answer (posterior mass outside them is left out)."""
    b = np.asarray(belief, np.float64)
    c = np.asarray(conf, np.float64)
    top = np.argsort(-b, kind="stable")[:t]
    best = 0.0
    for z in top:  # each candidate answer: the best joint p(y, z) over the candidate classes
        best += max(b[y] * c[y, z] for y in top)
    best += max(b[y] * (1.0 - c[y, top].sum()) for y in top)  # the merged answer
    return max(best - b[top[0]], 0.0)


def hardened_row(row, y, d, mean):
    """One answer distribution for an item of difficulty `d`, with plain float64 arithmetic:
    the accuracy p = row[y] becomes p + s (mean - d), s = min(p / (1 - mean), (1 - p) / mean),
    and the wrong answers keep their proportions (their total becomes 1 minus that)."""
    row = np.asarray(row, np.float64)
    p = row[y]
    s = max(min(p / (1 - mean), (1 - p) / mean), 0.0)
    acc = p + s * (mean - d)
    out = row * ((1 - acc) / (1 - p)) if p < 1 else row.copy()
    out[y] = acc
    return out


def group_accuracy(counts, class_ids):
    """Mean over the classes of one real-worker group of P(answer = true class), from the
    group's summed counts (classes weighted alike, as the experiments sample them)."""
    total = np.asarray(counts, np.float64).sum(0)
    rows = total[class_ids]
    return float(np.mean(rows[np.arange(len(class_ids)), class_ids] / rows.sum(1)))
