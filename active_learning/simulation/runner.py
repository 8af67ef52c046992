"""Simulated active learning: the whole loop on a labelled dataset, several strategies and seeds in one run.

The simulated annotator answers with the dataset's gold labels; an optional simulated teacher (the LLM)
labels the whole pool with a chosen accuracy: ``teacher_kind="class"`` (default) gives every class its own
error rate, the errors on ambiguous messages and mostly confident (:mod:`active_learning.simulation.teacher`);
``"even"`` spreads them evenly over messages (a wrong answer is one of the ``k`` classes whose embedding
centroids are nearest to the true class). ``trust+`` arms weight each teacher label by the teacher's learned
precision on its label (``training.trust``, from the human labels so far) and can use ``low_trust``. The student is the
probe (logistic regression on frozen, cached sentence embeddings from :func:`training.encoder.embed`),
trained on the human labels plus, in teacher arms, the teacher's labels for everything else, down-weighted.

Outputs (in ``output_dir``): ``curves.csv`` (one row per arm × seed × round), ``curves.png`` (metric vs
human labels, one line per arm, shaded min-max over seeds), ``summary.csv`` / ``summary.md`` (mean accuracy
over the curve, labels to reach a target and the all-data accuracy measured in the same run) and
``result.json``."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from active_learning.pool import PoolView
from active_learning.queue import build_batch, validate_mix
from active_learning.simulation.datasets import load_dataset
from active_learning.simulation.report import markdown_table, plot_curves, summarize, write_rows
from active_learning.simulation.teacher import (
    make_teacher,
    precision_spread,
    summarize_trust,
)
from active_learning.stopping import compute_signals, stopping_set
from core.vocab import Progress
from training.semi_supervised import PseudoLabelParams

EmbedFn = Callable[..., np.ndarray]


TEACHER_KINDS = {"class", "even"}


@dataclass
class Arm:
    """One curve: a query mix, with or without the simulated teacher."""

    name: str
    mix: dict[str, float]
    teacher: bool = False
    trust: bool = False  # teacher labels weighted by the learned trust of their label (implies teacher)
    semi: bool = False  # semi-supervised student: pseudo-labels for the unlabelled pool (SimulationConfig.pseudo_labels)

    def __post_init__(self) -> None:
        self.mix = validate_mix(self.mix)
        self.teacher = self.teacher or self.trust


def parse_arm(spec: str) -> Arm:
    """``"margin"``, ``"teacher+disagreement"``, ``"teacher+disagreement=0.5,margin=0.5"``,
    ``"semi+margin_diversity"`` (semi-supervised student), ``"trust+low_trust=0.3,disagreement=0.7"`` (teacher
    labels weighted by their learned trust) or ``"name:teacher+margin=0.5,diversity=0.5"`` → Arm."""
    label = None
    if ":" in spec:
        label, _, spec = spec.partition(":")
    body = spec
    teacher = semi = trust = False
    while body.startswith(("teacher+", "semi+", "trust+")):
        head_, _, body = body.partition("+")
        teacher, semi, trust = teacher or head_ == "teacher", semi or head_ == "semi", trust or head_ == "trust"
    if "=" in body:
        from active_learning.queue import parse_mix

        mix = parse_mix(body)
    else:
        mix = validate_mix({body: 1.0})
    return Arm(name=label or spec, mix=mix, teacher=teacher, semi=semi, trust=trust)


@dataclass
class SimulationConfig:
    """A simulation run. Sizes are numbers of human labels."""

    dataset: str = "banking77"  # banking77, goemotions (single-label subset), or a CSV/TSV path (text,label)
    arms: list[Arm] = field(default_factory=lambda: [Arm("random", {"random": 1.0}), Arm("margin", {"margin": 1.0})])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    initial: int = 200  # random seed labels
    step: int = 200  # labels per round
    max_labels: int = 3000
    teacher_accuracy: float = 0.85
    teacher_kind: str = "class"  # "class": error rate per class (simulation.teacher); "even": errors spread evenly
    teacher_concentration: float = 3.0  # class teacher: Beta concentration of the per-class accuracies (low = spread)
    teacher_similar_k: int = 3
    teacher_weight: float = 0.5  # the head's origin_weights["llm"] (flat); trust+ arms learn it per label
    trust_prior_strength: float = 8.0  # the head's teacher.prior_strength
    trust_prior: float = 0.5  # the head's teacher.prior_trust (weight before any review)
    trust_checkpoints: tuple[int, ...] = (200, 500, 1000)  # trust+ arms: estimate vs true precision after N labels
    trust_min_reviews: int = 10
    C: float = 10.0
    lexical: bool = False  # the probe's lexical branch (student.probe.lexical, on in the shipped heads): word pieces beside the embedding
    pseudo_labels: PseudoLabelParams = field(default_factory=PseudoLabelParams)  # for "semi+" arms
    class_weight: str | None = "balanced"
    max_iter: int = 2000
    warm_start: bool = True
    target_accuracy: float = 0.92
    max_pool: int | None = None  # subsample the pool (quick runs)
    max_test: int | None = None
    encoder: str = "default"
    blas_threads: int | None = 1  # BLAS/OpenMP threads while fitting; 1 avoids oversubscription on shared cores
    output_dir: Path = Path("var/data/simulation")
    datasets_dir: Path | None = None  # default: ../shared/datasets next to the checkout

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("expected at least one arm (strategy) to simulate")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, found {names}")
        if not self.seeds:
            raise ValueError("expected at least one seed")
        if self.initial < 2 or self.step < 1 or self.max_labels < self.initial:
            raise ValueError(
                f"expected initial >= 2, step >= 1 and max_labels >= initial; found initial={self.initial}, "
                f"step={self.step}, max_labels={self.max_labels}"
            )
        if not 0 < self.teacher_accuracy <= 1:
            raise ValueError(f"teacher_accuracy must lie in (0, 1], found {self.teacher_accuracy}")
        if self.teacher_weight < 0:
            raise ValueError(f"teacher_weight must be >= 0, found {self.teacher_weight}")
        if self.teacher_kind not in TEACHER_KINDS:
            raise ValueError(f"teacher_kind: expected one of {sorted(TEACHER_KINDS)}, found {self.teacher_kind!r}")
        self.output_dir = Path(self.output_dir)


class ProductProbe:
    """The product's probe (:class:`training.probe.ProbeStudent`) on the simulation's embeddings: the curves
    measure the student distilloop trains. Warm-started from the previous round's head when ``warm_start``.
    With ``cfg.lexical`` the probe has its lexical branch (fitted on the messages' texts) and, as the product,
    ranks the pool by its selection head (on the embedding alone): :meth:`selection_proba`. Without it the
    texts are not read."""

    def __init__(self, n_classes: int, cfg: SimulationConfig, *, warm_start: bool) -> None:
        from training.encoder import resolve_encoder
        from training.lexical import LexicalParams
        from training.probe import ProbeStudent

        self.lexical = LexicalParams() if cfg.lexical else None
        path = str(resolve_encoder(cfg.encoder)) if cfg.lexical else ""
        self.student = ProbeStudent(labels=[f"class_{i}" for i in range(n_classes)], kind="single", encoder_path=path,
                                    encoder=cfg.encoder)
        self.cfg, self.warm_start = cfg, warm_start

    def _texts(self, texts: list[str] | None) -> list[str] | None:
        return texts if self.lexical is not None else None

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
            texts: list[str] | None = None) -> ProductProbe:
        s = self.student
        init = (s.weight, s.bias) if self.warm_start and s.weight is not None else None
        s.fit_embeddings(x, y, sample_weight=sample_weight, C=self.cfg.C, class_weight=self.cfg.class_weight,
                         max_iter=self.cfg.max_iter, tune=False, init=init, texts=self._texts(texts), lexical=self.lexical)
        return self

    def fit_semi(self, x: np.ndarray, y: np.ndarray, unlabelled: np.ndarray, *, texts: list[str] | None = None,
                 unlabelled_texts: list[str] | None = None) -> ProductProbe:
        """The product's semi-supervised probe: supervised head, then ``cfg.pseudo_labels`` for ``unlabelled``, refit."""
        self.student.fit_embeddings(
            x, y, C=self.cfg.C, class_weight=self.cfg.class_weight, max_iter=self.cfg.max_iter, unlabelled=unlabelled,
            pseudo_labels=self.cfg.pseudo_labels, texts=self._texts(texts), lexical=self.lexical,
            unlabelled_texts=self._texts(unlabelled_texts),
        )
        return self

    def predict_proba(self, x: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        return self.student.proba_from_embeddings(x, self._texts(texts)).astype(np.float64)

    def selection_proba(self, x: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """What a round ranks by: a lexical or semi-supervised probe's selection head, else its head."""
        return self.student.selection_proba_from_embeddings(x, self._texts(texts)).astype(np.float64)


def _metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def run_curve(
    arm: Arm,
    seed: int,
    *,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    cfg: SimulationConfig,
    teacher: tuple[np.ndarray, np.ndarray] | None = None,
    on_round: Callable[[], None] | None = None,
    labelled_out: list[np.ndarray] | None = None,
    trust_out: list[dict[str, Any]] | None = None,
    pool_texts: list[str] | None = None,
    test_texts: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One learning curve: initial random labels, then rounds of ``step`` picked by the arm's mix.
    ``labelled_out``: a list that receives the pool rows labelled at the end of the curve; ``trust_out``
    (trust+ arms): receives the trust estimate's error at each of ``cfg.trust_checkpoints``. ``pool_texts`` /
    ``test_texts``: the messages, which a lexical probe (``cfg.lexical``) reads beside their embeddings."""
    from active_learning.simulation.teacher import CurveTrust
    from active_learning.strategies import STRATEGIES

    n = len(y_pool)
    if cfg.lexical and (pool_texts is None or test_texts is None):
        raise ValueError("cfg.lexical: the lexical probe reads the messages; pass pool_texts and test_texts")

    def texts_of(mask: np.ndarray) -> list[str] | None:
        return None if pool_texts is None else [pool_texts[i] for i in np.flatnonzero(mask)]

    rng = np.random.default_rng(seed)
    labelled = np.zeros(n, dtype=bool)
    first = rng.choice(n, size=min(cfg.initial, n), replace=False)
    labelled[first] = True
    student = ProductProbe(n_classes, cfg, warm_start=cfg.warm_start)
    if arm.teacher and teacher is None:
        raise ValueError(f"arm {arm.name!r} needs a simulated teacher")
    t_labels, t_conf = teacher if arm.teacher and teacher is not None else (None, None)
    trust = CurveTrust(y_pool, t_labels, n_classes, prior_strength=cfg.trust_prior_strength) if arm.trust else None
    if trust is not None:
        trust.add(first, [False] * len(first))
    t_beta = None
    stop_ids = stopping_set(np.arange(n))
    stop_state: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    rnd = 0
    semi = ProductProbe(n_classes, cfg, warm_start=False) if arm.semi and not arm.teacher and cfg.pseudo_labels.enabled else None
    while True:
        t0 = time.perf_counter()
        if arm.teacher:
            y_train = np.where(labelled, y_pool, t_labels)
            if trust is not None:
                msg_w, t_beta = trust.weights_and_beta(prior_trust=cfg.trust_prior)
                w = np.where(labelled, 1.0, msg_w)
            else:
                w = np.where(labelled, 1.0, cfg.teacher_weight)
            student.fit(x_pool, y_train, sample_weight=w, texts=pool_texts)
        elif semi is not None:
            # the product's semi-supervised probe (training.probe.ProbeStudent): supervised head, then
            # pseudo-labels for the unlabelled pool, refit; the round ranks by the supervised head
            semi.fit_semi(x_pool[labelled], y_pool[labelled], x_pool[~labelled], texts=texts_of(labelled),
                          unlabelled_texts=texts_of(~labelled))
        else:
            student.fit(x_pool[labelled], y_pool[labelled], texts=texts_of(labelled))
        t_fit = time.perf_counter() - t0
        model = semi if semi is not None else student
        probs = model.selection_proba(x_pool, pool_texts)
        test_pred = model.predict_proba(x_test, test_texts).argmax(axis=1)
        t_score = time.perf_counter() - t0 - t_fit
        m = _metrics(y_test, test_pred)
        signals, stop_state = compute_signals(
            ids=stop_ids,
            predictions=probs[stop_ids].argmax(axis=1),
            unlabelled_probs=probs[~labelled],
            n_classes=n_classes,
            previous=stop_state,
        )
        n_lab = int(labelled.sum())
        row = {
            "arm": arm.name,
            "teacher": arm.teacher,
            "seed": seed,
            "round": rnd,
            "n_human": n_lab,
            **m,
            "fit_s": round(t_fit, 4),
            "score_s": round(t_score, 4),
            "kappa_average": signals["kappa_average"]["value"],
            "classification_change": signals["classification_change"]["value"],
            "overall_uncertainty": signals["overall_uncertainty"]["value"],
            "stop": signals["stop"],
        }
        want = min(cfg.step, cfg.max_labels - n_lab, int((~labelled).sum()))
        if want <= 0:
            row["select_s"] = 0.0
            row["round_s"] = round(time.perf_counter() - t0, 4)
            rows.append(row)
            if on_round:
                on_round()
            break
        t1 = time.perf_counter()
        view = PoolView(
            probs=probs,
            candidates=np.flatnonzero(~labelled),
            labelled=np.flatnonzero(labelled),
            labelled_y=y_pool[labelled],
            embeddings=x_pool,
            teacher_labels=t_labels,
            teacher_confidence=t_conf,
            teacher_trust=t_beta,
        )
        picks = build_batch(view, want, arm.mix, seed=seed * 7919 + rnd)
        if trust is not None:
            pred = probs.argmax(axis=1)
            trust.observe_round(pred, np.flatnonzero(~labelled))
            trust.add([p.index for p in picks], [STRATEGIES[p.strategy].seeks_teacher_errors for p in picks],
                      student=pred[[p.index for p in picks]])
        labelled[[p.index for p in picks]] = True  # the simulated annotator answers with the gold label
        row["select_s"] = round(time.perf_counter() - t1, 4)
        row["round_s"] = round(time.perf_counter() - t0, 4)
        rows.append(row)
        if on_round:
            on_round()
        rnd += 1
    if labelled_out is not None:
        labelled_out.append(np.flatnonzero(labelled))
    if trust is not None and trust_out is not None:
        for k in cfg.trust_checkpoints:
            if k <= len(trust.order):
                trust_out.append({"arm": arm.name, "seed": seed, **trust.mae(k, min_reviews=cfg.trust_min_reviews)})
    return rows


def run_simulation(
    config: SimulationConfig, *, embed_fn: EmbedFn | None = None, progress: Progress = None
) -> dict[str, Any]:
    """Run every arm × seed on one dataset; write curves.csv, curves.png, summary.csv/.md and result.json
    into ``config.output_dir``. Returns {"summary", "full_accuracy", "files", ...}."""
    cfg = config
    if cfg.blas_threads is None:
        return _run_simulation(cfg, embed_fn=embed_fn, progress=progress)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cfg.blas_threads):
        return _run_simulation(cfg, embed_fn=embed_fn, progress=progress)


def _run_simulation(cfg: SimulationConfig, *, embed_fn: EmbedFn | None, progress: Progress) -> dict[str, Any]:
    if embed_fn is None:
        from training.encoder import embed as embed_fn
    data = load_dataset(cfg.dataset, datasets_dir=cfg.datasets_dir)
    rng = np.random.default_rng(12345)
    pool_idx = np.arange(len(data.pool_y))
    if cfg.max_pool and cfg.max_pool < len(pool_idx):
        pool_idx = np.sort(rng.choice(len(pool_idx), cfg.max_pool, replace=False))
    test_idx = np.arange(len(data.test_y))
    if cfg.max_test and cfg.max_test < len(test_idx):
        test_idx = np.sort(rng.choice(len(test_idx), cfg.max_test, replace=False))
    pool_texts = [data.pool_texts[i] for i in pool_idx]
    test_texts = [data.test_texts[i] for i in test_idx]
    y_pool, y_test = data.pool_y[pool_idx], data.test_y[test_idx]
    n_classes = len(data.classes)
    if cfg.initial > len(y_pool):
        raise ValueError(f"initial={cfg.initial} human labels asked for, but the pool holds only {len(y_pool)} messages")

    n_rounds = (min(cfg.max_labels, len(y_pool)) - cfg.initial + cfg.step - 1) // cfg.step + 1
    total = len(cfg.arms) * len(cfg.seeds) * n_rounds + 2
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    t0 = time.perf_counter()
    x_pool = np.asarray(embed_fn(pool_texts, encoder=cfg.encoder), dtype=np.float32)
    x_test = np.asarray(embed_fn(test_texts, encoder=cfg.encoder), dtype=np.float32)
    embed_s = time.perf_counter() - t0
    tick()

    # the reference: the same student on every pool label
    t0 = time.perf_counter()
    full = ProductProbe(n_classes, cfg, warm_start=False)
    full.fit(x_pool, y_pool, texts=pool_texts)
    full_metrics = _metrics(y_test, full.predict_proba(x_test, test_texts).argmax(axis=1))
    full_fit_s = time.perf_counter() - t0
    tick()

    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "full_data.json").write_text(json.dumps({**full_metrics, "labels": len(y_pool)}))
    rows: list[dict[str, Any]] = []
    trust_rows: list[dict[str, Any]] = []
    teacher_acc: dict[int, float] = {}
    teacher_prec: dict[int, dict[str, Any]] = {}
    for seed in cfg.seeds:
        teacher = None
        if any(a.teacher for a in cfg.arms):
            teacher = make_teacher(cfg, y_pool, x_pool, n_classes, seed=seed)
            teacher_acc[seed] = float(np.mean(teacher[0] == y_pool))
            teacher_prec[seed] = precision_spread(y_pool, teacher[0], n_classes)
        for arm in cfg.arms:
            rows.extend(
                run_curve(
                    arm, seed, x_pool=x_pool, y_pool=y_pool, x_test=x_test, y_test=y_test, n_classes=n_classes,
                    cfg=cfg, teacher=teacher, on_round=tick, trust_out=trust_rows, pool_texts=pool_texts,
                    test_texts=test_texts,
                )
            )
            write_rows(out / "curves.csv", rows)  # after every curve: a long run can be read while it goes

    summary = summarize(rows, full_accuracy=full_metrics["accuracy"], target=cfg.target_accuracy)
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    title = (
        f"{data.name}: {'lexical ' if cfg.lexical else ''}probe student, {cfg.initial} random seed labels, +{cfg.step}/round, "
        f"{len(cfg.seeds)} seed(s)"
    )
    plot = plot_curves(rows, out / "curves.png", full_accuracy=full_metrics["accuracy"], target=cfg.target_accuracy, title=title)
    md = markdown_table(summary)
    (out / "summary.md").write_text(
        f"# {title}\n\nAll-data accuracy (same student, {len(y_pool)} labels): {full_metrics['accuracy']:.4f}\n\n{md}\n"
    )
    result = {
        "dataset": data.name,
        "pool": len(y_pool),
        "test": len(y_test),
        "classes": n_classes,
        "full_data": {**full_metrics, "fit_s": round(full_fit_s, 3), "labels": len(y_pool)},
        "teacher_kind": cfg.teacher_kind,
        "teacher_accuracy_measured": teacher_acc,
        "teacher_precision_spread": teacher_prec,
        "trust_error": trust_rows,
        "trust_error_summary": summarize_trust(trust_rows),
        "embed_s": round(embed_s, 2),
        "config": {**{k: v for k, v in asdict(cfg).items() if k not in ("arms", "output_dir", "datasets_dir")},
                   "arms": [asdict(a) for a in cfg.arms]},
        "summary": summary,
        "files": {
            "curves_csv": str(out / "curves.csv"),
            "plot": str(plot),
            "summary_csv": str(out / "summary.csv"),
            "summary_md": str(out / "summary.md"),
        },
    }
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    result["files"]["result_json"] = str(out / "result.json")
    return result
