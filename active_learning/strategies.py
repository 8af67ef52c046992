"""Query strategies: pure functions of arrays (probabilities, embeddings, teacher labels) → pool indices.

small-text style: one base class (:class:`QueryStrategy`) holds the input checks and raises named
exceptions; one class per method, named after it, each with a registry ``name`` and a docstring saying what
it prefers. A strategy never touches a database or the network: it receives a :class:`PoolView` and returns
a :class:`Selection` (indices into the view's arrays, best first, with the score that ranked them).

Where small-text implements the scoring, it is used (``LeastConfidence``, ``BreakingTies``,
``PredictionEntropy``, ``CategoryVectorInconsistencyAndRanking``) through a tiny array adapter; the rest is
our own (see each class): teacher-student disagreement and class balance do not exist in small-text,
its ``EmbeddingKMeans`` cannot be seeded (it uses the global RNG) and its ``greedy_coreset`` recomputes every
distance at every step (O(n·N·L·d), minutes on a 10k pool), so k-means diversity and the core-set are ours.

Scores are "higher = more worth a human label". Ties are broken by a seeded random key, so that a strategy is
deterministic under a seed."""

from __future__ import annotations

from typing import Any

import numpy as np

from active_learning.pool import InvalidInputError, PoolView, QueryStrategy, single_margin, top_n


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


class _ArrayClassifier:
    """Adapter: small-text strategies call ``clf.predict_proba(dataset)``; here the dataset is a row index."""

    def __init__(self, probs: np.ndarray):
        self.probs = probs

    def predict_proba(self, dataset: Any) -> np.ndarray:
        return self.probs[np.asarray(dataset, dtype=np.int64)]


def _kmeans_pick(x: np.ndarray, k: int, *, seed: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k-means over the rows of ``x`` (L2-normalized), one distinct row per cluster: the member with the
    highest ``weights`` (default: the one closest to the centre). Returns (row positions, cluster sizes),
    ordered by cluster size, biggest first."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if k >= len(x):
        return np.arange(len(x)), np.ones(len(x))
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if len(x) > 4000:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=1, batch_size=2048, max_iter=50)
    else:
        km = KMeans(n_clusters=k, random_state=seed, n_init=1, max_iter=100)
    assign = km.fit_predict(xn)
    centres = km.cluster_centers_
    sim = np.einsum("ij,ij->i", xn, centres[assign])
    key = sim if weights is None else weights
    chosen: list[int] = []
    sizes: list[int] = []
    taken = np.zeros(len(x), dtype=bool)
    for c in range(k):
        members = np.flatnonzero(assign == c)
        if len(members) == 0:
            continue
        best = members[np.argmax(key[members])]
        chosen.append(int(best))
        sizes.append(len(members))
        taken[best] = True
    # empty clusters (rare): fill with the rows farthest from every chosen centre
    if len(chosen) < k:
        rest = np.flatnonzero(~taken)
        d = 1 - (xn[rest] @ xn[np.array(chosen)].T).max(axis=1)
        extra = rest[np.argsort(-d)[: k - len(chosen)]]
        chosen.extend(int(i) for i in extra)
        sizes.extend([1] * len(extra))
    chosen_a, sizes_a = np.array(chosen), np.array(sizes, dtype=np.float64)
    order = np.argsort(-sizes_a, kind="stable")
    return chosen_a[order], sizes_a[order]


class RandomSampling(QueryStrategy):
    """Prefers nothing: a uniform random sample of the candidates (the baseline every method must beat)."""

    name = "random"

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        return np.random.default_rng(seed + 7919).random(len(cand))


class LeastConfidence(QueryStrategy):
    """Prefers items whose most likely class has the lowest probability (small-text ``LeastConfidence``).
    Multi-label: the lowest mean confidence max(p, 1-p) over labels."""

    name = "least_confidence"

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        if view.multi_label:
            p = view.probs[cand]
            return 1.0 - np.maximum(p, 1 - p).mean(axis=1)
        from small_text.query_strategies import LeastConfidence as StLeastConfidence

        conf = StLeastConfidence().get_confidence(_ArrayClassifier(view.probs), cand, None, None, None)
        return 1.0 - conf


class BreakingTies(QueryStrategy):
    """Margin sampling: prefers items whose two most likely classes are nearly tied (small-text
    ``BreakingTies``, vectorized). Multi-label: the label whose probability is closest to the threshold."""

    name = "margin"

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        p = view.probs[cand]
        if view.multi_label:
            return 1.0 - 2.0 * np.abs(p - view.threshold).min(axis=1)
        # small-text's BreakingTies.get_confidence applies a Python lambda per row (slow on big pools);
        # single_margin is the same quantity, vectorized (tested equal in the unit tests).
        return 1.0 - single_margin(p)


class PredictionEntropy(QueryStrategy):
    """Prefers items with the flattest predicted distribution (small-text ``PredictionEntropy``'s measure,
    vectorized). Multi-label: the sum of per-label binary entropies."""

    name = "entropy"

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        p = view.probs[cand]
        if view.multi_label:
            return _binary_entropy(p).sum(axis=1)
        q = np.clip(p, 1e-12, 1.0)
        return -(p * np.log(q)).sum(axis=1)


class CategoryVectorInconsistencyAndRanking(QueryStrategy):
    """Multi-label only (small-text CVIRS): prefers items whose predicted label vector is unlike the label
    vectors seen so far and whose per-label margins rank low."""

    name = "cvirs"
    single_label = False

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        from scipy.sparse import csr_matrix
        from small_text.query_strategies import CategoryVectorInconsistencyAndRanking as StCvirs

        y = view.labelled_y
        if y is None or len(y) == 0:
            y = np.zeros((1, view.n_classes), dtype=np.int64)
        st = StCvirs(prediction_threshold=view.threshold, pbar=None)
        return st._compute_scores(cand, csr_matrix(np.asarray(y, dtype=np.int64)), view.probs[cand])


class TeacherStudentDisagreement(QueryStrategy):
    """Prefers items where the teacher's label differs from the student's prediction, ranked by how
    confident both sides are (sqrt(teacher conf × student conf): two confident, contradicting answers mean one
    of them is confidently wrong). Multi-label: the number of labels they disagree on, then confidence.

    When fewer disagreements than ``n`` exist, the rest are agreeing items ranked by student margin, with
    scores below zero (so a queue item's score says which case it was)."""

    name = "disagreement"
    needs_teacher = True
    seeks_teacher_errors = True

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        p = view.probs[cand]
        tconf = view.teacher_confidence
        tc = np.ones(len(cand)) if tconf is None else np.nan_to_num(np.asarray(tconf, dtype=np.float64)[cand], nan=1.0)
        tl = np.asarray(view.teacher_labels)[cand]
        if view.multi_label:
            has = tl.min(axis=1) >= 0
            pred = (p >= view.threshold).astype(np.int64)
            n_diff = np.where(has, (pred != tl).sum(axis=1), 0)
            sconf = np.abs(p - view.threshold).mean(axis=1) * 2
            fallback = -(2 * np.abs(p - view.threshold).min(axis=1))
            return np.where(n_diff > 0, n_diff + np.sqrt(np.clip(tc * sconf, 0, 1)), fallback - 1e-9)
        has = tl >= 0
        pred = p.argmax(axis=1)
        sconf = p.max(axis=1)
        disagree = has & (pred != tl)
        fallback = -single_margin(p)  # in [-1, 0]
        return np.where(disagree, 1.0 + np.sqrt(np.clip(tc * sconf, 0, 1)), fallback - 1e-9)


class LowTrust(QueryStrategy):
    """Prefers messages whose teacher label is of a label the teacher is least trusted on, or least known
    about: the score is 1 minus the lower credible bound (5% quantile) of the Beta posterior of the teacher's
    precision on that label (multi-label: the weakest label it ticks). A poorly reviewed label ranks high until
    humans have seen enough of it; a label the teacher is reliably right on ranks low.

    Within a label the order is a seeded random one (never the student's opinion): its reviews are then a
    random sample of that label's teacher labels, which keeps the trust estimate unbiased. Messages with no
    teacher label come last, by student margin, with scores below zero."""

    name = "low_trust"
    needs_teacher = True
    needs_trust = True

    def score(self, view: PoolView, cand: np.ndarray, *, seed: int) -> np.ndarray:
        from scipy.stats import beta as beta_dist

        trust = np.asarray(view.teacher_trust, dtype=np.float64)
        doubt = 1.0 - beta_dist.ppf(0.05, trust[:, 0], trust[:, 1])  # (C,)
        tl = np.asarray(view.teacher_labels)[cand]
        p = view.probs[cand]
        if view.multi_label:
            has = (tl.min(axis=1) >= 0) & (tl.sum(axis=1) > 0)
            ticked = np.where(tl > 0, doubt[None, :], -np.inf)
            s = ticked.max(axis=1)
            fallback = -(2 * np.abs(p - view.threshold).min(axis=1))
        else:
            has = tl >= 0
            s = doubt[np.where(has, tl, 0)]
            fallback = -single_margin(p)
        return np.where(has, s, fallback - 1e-9)


class Diversity(QueryStrategy):
    """Prefers a batch that covers the pool: k-means (k = n) over the candidates' embeddings, then the
    member closest to each centre, biggest clusters first. A batch is never 50 near-duplicates."""

    name = "diversity"
    needs_embeddings = True

    def select(self, view: PoolView, cand: np.ndarray, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        pos, sizes = _kmeans_pick(view.embeddings[cand], n, seed=seed)
        return pos, sizes / max(len(cand), 1)


class GreedyCoreset(QueryStrategy):
    """Core-set (Sener & Savarese 2018): prefers the candidate farthest (cosine) from everything labelled
    or already picked, greedily. Same algorithm as small-text's ``greedy_coreset``, but the minimum distances
    are updated incrementally (one new column per step) instead of recomputed."""

    name = "coreset"
    needs_embeddings = True

    def select(self, view: PoolView, cand: np.ndarray, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x = view.embeddings.astype(np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        xc = x[cand]
        lab = np.asarray(view.labelled, dtype=np.int64)
        if len(lab):
            mind = np.full(len(cand), np.inf, dtype=np.float32)
            for start in range(0, len(lab), 2048):
                sims = xc @ x[lab[start : start + 2048]].T
                mind = np.minimum(mind, 1 - sims.max(axis=1))
        else:  # nothing labelled: start from the candidate closest to the mean (a deterministic centre)
            mind = np.full(len(cand), np.inf, dtype=np.float32)
        rng = np.random.default_rng(seed)
        tiebreak = rng.random(len(cand)) * 1e-6
        chosen: list[int] = []
        scores: list[float] = []
        for _ in range(n):
            if not chosen and not np.isfinite(mind).any():
                centre = xc.mean(axis=0)
                i = int(np.argmax(xc @ centre + tiebreak))
                scores.append(1.0)
            else:
                key = np.where(np.isfinite(mind), mind, 2.0) + tiebreak
                key[chosen] = -np.inf
                i = int(np.argmax(key))
                scores.append(float(min(mind[i], 2.0)))
            chosen.append(i)
            mind = np.minimum(mind, 1 - xc @ xc[i])
        return np.array(chosen), np.array(scores)


class ClassBalance(QueryStrategy):
    """Prefers classes with few human labels: round-robin over the student's predicted classes, rarest class
    first, taking in each class the candidate the student is least sure about (lowest margin). Multi-label:
    the predicted positives' rarity."""

    name = "class_balance"

    def select(self, view: PoolView, cand: np.ndarray, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        counts = view.counts()
        p = view.probs[cand]
        rng = np.random.default_rng(seed)
        if view.multi_label:
            rarity = 1.0 / np.sqrt(1.0 + counts)
            s = (p * rarity).max(axis=1)
            pos = top_n(s, n, seed=seed)
            return pos, s[pos]
        pred = p.argmax(axis=1)
        unc = 1.0 - single_margin(p)
        # classes by fewest labels; ties by a seeded shuffle
        class_order = np.lexsort((rng.random(view.n_classes), counts))
        queues: dict[int, list[int]] = {}
        for c in class_order:
            members = np.flatnonzero(pred == c)
            if len(members):
                queues[int(c)] = list(members[top_n(unc[members], len(members), seed=seed + int(c))])
        chosen: list[int] = []
        scores: list[float] = []
        while len(chosen) < n and queues:
            for c in [c for c in class_order if int(c) in queues]:
                q = queues[int(c)]
                i = q.pop(0)
                chosen.append(i)
                scores.append(float(1.0 / (1.0 + counts[c])))
                if not q:
                    del queues[int(c)]
                if len(chosen) == n:
                    break
        return np.array(chosen), np.array(scores)


class MarginDiversity(QueryStrategy):
    """Margin inside diversity (cluster-margin style): the ``factor × n`` lowest-margin candidates are
    clustered into ``n`` k-means groups over their embeddings, and each group gives its most uncertain member.
    Uncertain, but not 200 variations of the same confusion."""

    name = "margin_diversity"
    needs_embeddings = True
    factor: int = 5

    def __init__(self, factor: int = 5):
        if factor < 1:
            raise InvalidInputError(f"expected factor >= 1, found {factor}")
        self.factor = factor

    def select(self, view: PoolView, cand: np.ndarray, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        unc = BreakingTies().score(view, cand, seed=seed)
        k = min(len(cand), self.factor * n)
        top = top_n(unc, k, seed=seed)
        if k == n:
            return top, unc[top]
        sub, _ = _kmeans_pick(view.embeddings[cand[top]], n, seed=seed, weights=unc[top])
        pos = top[sub]
        order = np.argsort(-unc[pos], kind="stable")
        return pos[order], unc[pos][order]


#: name → strategy class (the names used in mixes, the CLI and head definitions)
STRATEGIES: dict[str, type[QueryStrategy]] = {
    cls.name: cls
    for cls in (
        RandomSampling,
        LeastConfidence,
        BreakingTies,
        PredictionEntropy,
        TeacherStudentDisagreement,
        LowTrust,
        Diversity,
        GreedyCoreset,
        ClassBalance,
        MarginDiversity,
        CategoryVectorInconsistencyAndRanking,
    )
}


def get_strategy(name: str, **kwargs: Any) -> QueryStrategy:
    """A strategy by registry name; an unknown name → ValueError listing the valid ones."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"unknown query strategy {name!r}; valid strategies: {', '.join(sorted(STRATEGIES))}")
    return cls(**kwargs)
