"""The public labelled datasets the simulation runs on (BANKING77, GoEmotions under ``../shared/datasets``, or
any CSV/TSV with text and label columns), split into a pool and a test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = {"banking77", "goemotions"}


@dataclass
class LabelledData:
    name: str
    pool_texts: list[str]
    pool_y: np.ndarray
    test_texts: list[str]
    test_y: np.ndarray
    classes: list[str]


def _default_datasets_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "datasets"


def load_dataset(name: str, *, datasets_dir: Path | None = None, seed: int = 0) -> LabelledData:
    """BANKING77 (train = pool, test = evaluation), GoEmotions Ekman (messages with exactly one emotion:
    train = pool, test = evaluation) or any CSV/TSV with ``text`` and ``label`` (or ``category``) columns
    (a seeded 80/20 split)."""
    import pandas as pd

    root = Path(datasets_dir) if datasets_dir else _default_datasets_dir()
    if name == "banking77":
        folder = root / "banking77"
        if not (folder / "train.csv").is_file():
            raise ValueError(f"BANKING77 not found: expected {folder}/train.csv and test.csv")
        train, test = pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv")
        classes = sorted(set(train["category"]))
        idx = {c: i for i, c in enumerate(classes)}
        return LabelledData(
            "banking77",
            train["text"].tolist(),
            train["category"].map(idx).to_numpy(),
            test["text"].tolist(),
            test["category"].map(idx).to_numpy(),
            classes,
        )
    if name == "goemotions":
        folder = root / "goemotions_ekman"
        if not (folder / "train.tsv").is_file():
            raise ValueError(f"GoEmotions (Ekman) not found: expected {folder}/train.tsv, test.tsv, labels.txt")
        classes = [x.strip() for x in (folder / "labels.txt").read_text().splitlines() if x.strip()]

        def read(f: Path) -> tuple[list[str], np.ndarray]:
            df = pd.read_csv(f, sep="\t", header=None, names=["text", "labels", "id"], quoting=3, dtype=str)
            one = df[~df["labels"].str.contains(",")]
            return one["text"].tolist(), one["labels"].astype(int).to_numpy()

        tr_t, tr_y = read(folder / "train.tsv")
        te_t, te_y = read(folder / "test.tsv")
        return LabelledData("goemotions", tr_t, tr_y, te_t, te_y, classes)
    path = Path(name)
    if not path.is_file():
        raise ValueError(
            f"unknown dataset {name!r}: expected 'banking77', 'goemotions' or the path of a CSV/TSV file with "
            "'text' and 'label' columns"
        )
    df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    label_col = "label" if "label" in df.columns else "category" if "category" in df.columns else None
    if "text" not in df.columns or label_col is None:
        raise ValueError(f"{path}: expected columns 'text' and 'label' (or 'category'), found {list(df.columns)}")
    df = df.dropna(subset=["text", label_col])
    classes = sorted(set(df[label_col].astype(str)))
    y = df[label_col].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    cut = int(len(df) * 0.8)
    texts = df["text"].astype(str).tolist()
    tr, te = order[:cut], order[cut:]
    return LabelledData(path.stem, [texts[i] for i in tr], y[tr], [texts[i] for i in te], y[te], classes)
