"""The probe's lexical branch (training.lexical): features, the head on both blocks, its torch module and its
ONNX graph (tiny encoder)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.unit.training.conftest import FILLER, run_fresh_process, toy_texts
from training.encoder import token_ids, vocab_size
from training.lexical import BIGRAM_BUCKETS, LexicalFeatures, LexicalParams, feature_ids
from training.probe import ProbeStudent
from training.registry import load_student, new_student


def _padded(student: ProbeStudent, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    batch = student.tokenizer()(texts, padding=True, truncation=True, max_length=student.max_length, return_tensors="np")
    return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)


def test_features_are_the_word_pieces_and_their_hashed_neighbour_pairs() -> None:
    ids = [2, 7, 9, 7, 9, 3]  # [CLS] a b a b [SEP]: "a b" twice counts once
    got = feature_ids(ids, vocab_size=50)
    pairs = {50 + (a * 50 + b) % BIGRAM_BUCKETS for a, b in zip(ids[:-1], ids[1:], strict=True)}
    assert set(got.tolist()) == {2, 3, 7, 9} | pairs
    # (2,7) (7,9) (9,7) (9,3): "7 9" twice counts once; sorted, each feature once
    assert len(pairs) == 4 and got.tolist() == sorted({2, 3, 7, 9} | pairs)


def test_idf_weights_and_norm_match_scikit_learn_binary_tfidf() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = random.Random(0)
    docs = [[2, *(rng.randrange(5, 30) for _ in range(rng.randint(1, 8))), 3] for _ in range(60)]
    lx = LexicalFeatures.fit(docs, 30, min_df=2)
    x = lx.transform(docs).toarray()
    ref = TfidfVectorizer(analyzer=lambda d: [str(f) for f in feature_ids(d, 30)], binary=True, min_df=2, norm="l2", smooth_idf=True)
    r = ref.fit_transform(docs).toarray()
    order = [ref.vocabulary_[str(f)] for f in lx.features]  # our columns in sklearn's order
    assert sorted(ref.vocabulary_) == sorted(str(f) for f in lx.features)
    assert np.allclose(x, r[:, order], atol=1e-6)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    # weight scales the whole block; a message with no kept feature is a zero row
    lx2 = LexicalFeatures.fit(docs, 30, min_df=2, weight=2.0)
    assert np.allclose(np.linalg.norm(lx2.transform(docs).toarray(), axis=1), 2.0, atol=1e-5)
    assert lx.transform([[0, 1]]).nnz == 0 and not np.isnan(lx.transform([[0, 1]]).toarray()).any()


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="lexical.min_df"):
        LexicalParams(min_df=0)
    with pytest.raises(ValueError, match="lexical.weight"):
        LexicalParams(weight=0)
    with pytest.raises(ValueError, match="training messages"):
        LexicalFeatures.fit([], 30)


def _order_data(n: int, seed: int) -> tuple[list[str], list[str]]:
    """The label is the order of two words ("card payment" vs "payment card"): the same word pieces, so only
    the neighbour pairs tell the classes apart."""
    rng = random.Random(seed)
    texts, values = [], []
    for i in range(n):
        pair = "card payment" if i % 2 == 0 else "payment card"
        words = rng.sample(FILLER, rng.randint(2, 5))
        words.insert(rng.randint(0, len(words)), pair)
        texts.append(" ".join(words))
        values.append("a" if i % 2 == 0 else "b")
    return texts, values


def test_the_lexical_branch_learns_what_the_words_say(tiny_encoder: Path) -> None:
    texts, values = _order_data(200, 0)
    test_texts, test_values = _order_data(60, 1)
    lexical = new_student("probe", labels=["a", "b"], kind="binary", encoder=str(tiny_encoder))
    lexical.fit(texts, values, C=10.0, lexical=LexicalParams())
    assert lexical.params["lexical"]["enabled"] is True and lexical.lexical_weight.shape == (2, lexical.lexical.size)
    acc = np.mean([p == v for p, v in zip(lexical.predict(test_texts), test_values, strict=True)])
    assert acc >= 0.95, acc
    plain = new_student("probe", labels=["a", "b"], kind="binary", encoder=str(tiny_encoder))
    plain.fit(texts, values, C=10.0)
    assert plain.lexical is None and plain.params["lexical"] == {"enabled": False}


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_lexical_probe_saves_loads_and_its_torch_module_gives_the_same_numbers(kind: str, tiny_encoder: Path, tmp_path: Path) -> None:
    import torch

    rows = toy_texts(150)
    texts = [t for t, _ in rows]
    if kind == "single":
        values, labels = [y for _, y in rows], ["food", "money", "travel"]
    else:
        values, labels = [[y] + (["late"] if "late" in t.split() else []) for t, y in rows], ["food", "money", "travel", "late"]
    student = new_student("probe", labels=labels, kind=kind, encoder=str(tiny_encoder))
    student.fit(texts, values, C=10.0, lexical=LexicalParams(min_df=1))
    test = [t for t, _ in toy_texts(25, seed=3)] + ["late late late", "card"]
    probs = student.predict_proba(test)
    student.save(tmp_path / "s")
    back = load_student(tmp_path / "s")
    assert isinstance(back, ProbeStudent) and back.lexical is not None and back.lexical.size == student.lexical.size
    assert np.allclose(back.predict_proba(test), probs, atol=1e-6)
    ids, mask = _padded(back, test)  # padded batch: the padding adds no feature
    with torch.no_grad():
        torch_probs = back.to_torch_module()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.abs(torch_probs - probs).max() < 1e-5
    # scoring from cached embeddings needs the texts too, and says so
    with pytest.raises(ValueError, match="lexical branch"):
        back.proba_from_embeddings(back.embed(test))


def test_semi_supervised_lexical_probe_keeps_its_supervised_head(tiny_encoder: Path, tmp_path: Path) -> None:
    from training.semi_supervised import PseudoLabelParams

    rows = toy_texts(150)
    texts, values = [t for t, _ in rows[:60]], [y for _, y in rows[:60]]
    rest = [t for t, _ in rows[60:]]
    student = new_student("probe", labels=["food", "money", "travel"], kind="single", encoder=str(tiny_encoder))
    student.fit(texts, values, C=10.0, unlabelled_texts=rest, pseudo_labels=PseudoLabelParams(method="knn"), lexical=LexicalParams())
    assert student.supervised_head is not None and student.params["pseudo_labels"]["n"] > 0
    sel = student.selection_proba_from_embeddings(student.embed(rest))  # selection: the embedding alone, no texts needed
    student.save(tmp_path / "s")
    back = load_student(tmp_path / "s")
    assert np.allclose(back.selection_proba_from_embeddings(back.embed(rest), rest), sel, atol=1e-6)


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_active_learning_ranks_a_lexical_probe_by_its_head_on_the_embedding_alone(kind: str, tiny_encoder: Path, tmp_path: Path) -> None:
    # the lexical head can learn its training labels word by word, a wrong teacher label too; the disagreement
    # strategy needs a student that generalizes instead: the same regression without the lexical block
    rows = toy_texts(120)
    texts = [f"{t} {i}" for i, (t, _) in enumerate(rows)]  # a number of its own per message: easy to learn by heart
    if kind == "single":
        values, labels = [y for _, y in rows], ["food", "money", "travel"]
    else:
        values, labels = [[y] for _, y in rows], ["food", "money", "travel"]
    lexical = new_student("probe", labels=labels, kind=kind, encoder=str(tiny_encoder))
    lexical.fit(texts, values, C=10.0, lexical=LexicalParams())
    plain = new_student("probe", labels=labels, kind=kind, encoder=str(tiny_encoder))
    plain.fit(texts, values, C=10.0)
    emb = lexical.embed(texts)
    assert np.allclose(lexical.selection_proba_from_embeddings(emb, texts), plain.proba_from_embeddings(emb), atol=1e-5)
    assert not np.allclose(lexical.proba_from_embeddings(emb, texts), plain.proba_from_embeddings(emb), atol=1e-3)
    lexical.save(tmp_path / "s")
    back = load_student(tmp_path / "s")
    assert np.allclose(back.selection_proba_from_embeddings(emb, texts), plain.proba_from_embeddings(emb), atol=1e-5)


def test_warm_start_from_an_embedding_head_of_the_previous_round(tiny_encoder: Path) -> None:
    rows = toy_texts(120)
    texts, values = [t for t, _ in rows], [y for _, y in rows]
    first = new_student("probe", labels=["food", "money", "travel"], kind="single", encoder=str(tiny_encoder))
    first.fit(texts[:80], values[:80], C=10.0, lexical=LexicalParams())
    second = new_student("probe", labels=["food", "money", "travel"], kind="single", encoder=str(tiny_encoder))
    second.fit(texts, values, C=10.0, lexical=LexicalParams(), init=(first.weight, first.bias))
    cold = new_student("probe", labels=["food", "money", "travel"], kind="single", encoder=str(tiny_encoder))
    cold.fit(texts, values, C=10.0, lexical=LexicalParams())
    assert second.params["warm_start"] is True
    test = [t for t, _ in toy_texts(30, seed=5)]
    assert np.abs(second.predict_proba(test) - cold.predict_proba(test)).max() < 2e-2  # a convex problem: one optimum


def test_lexical_probe_exports_to_one_onnx_graph_with_its_tables_kept_fp32(tiny_encoder: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from export.convert import export_onnx, head_nodes, quantize_int8

    rows = toy_texts(150)
    student = new_student("probe", labels=["food", "money", "travel"], kind="single", encoder=str(tiny_encoder))
    student.fit([t for t, _ in rows], [y for _, y in rows], C=10.0, lexical=LexicalParams())
    test = [t for t, _ in toy_texts(20, seed=7)]
    ids, mask = _padded(student, test)
    path = tmp_path / "model.onnx"
    export_onnx(student.to_torch_module(), path, example_ids=ids, example_mask=mask)
    lexical_gathers = [n for n in head_nodes(path) if n.startswith("/lexical/")]
    assert lexical_gathers, head_nodes(path)
    quantize_int8(path, tmp_path / "model.int8.onnx")
    want = student.predict_proba(test)
    for name in ("model.onnx", "model.int8.onnx"):
        got = ort.InferenceSession(str(tmp_path / name)).run(None, {"input_ids": ids, "attention_mask": mask})[0]
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
        if name == "model.onnx":
            assert np.abs(got - want).max() < 1e-4
    int8 = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    assert {n.op_type for n in int8.node if n.name in lexical_gathers} == {"Gather"}  # not a quantized lookup
    assert any(t.name.startswith("lexical.") and t.data_type == onnx.TensorProto.FLOAT for t in int8.initializer)


def test_token_ids_and_vocabulary_are_the_encoders(tiny_encoder: Path) -> None:
    from tests.unit.training.conftest import TOPICS
    from training.encoder import load_tokenizer

    ids, _ = token_ids(tiny_encoder, ["card payment", "hello"], 128)
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    assert vocab_size(tiny_encoder) == 5 + len(words) == len(load_tokenizer(str(tiny_encoder)))
    assert ids[0] == [2, 5 + words.index("card"), 5 + words.index("payment"), 3]  # [CLS] card payment [SEP]
    assert ids[1] == [2, 1, 3]  # an unknown word is [UNK]
    assert len(token_ids(tiny_encoder, [" ".join(["card"] * 50)], 8)[0][0]) == 8  # truncated as the encoder is


def test_scoring_a_lexical_probe_in_a_fresh_process_does_not_import_transformers(tiny_encoder: Path, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh `distilloop score` or Ray actor scores a lexical probe with tokenizers alone (transformers costs
    about 2 s to import), and gets the student's probabilities."""
    from core.settings import reset_settings

    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    reset_settings()
    rows = toy_texts(90)
    student = new_student("probe", labels=["food", "money", "travel"], kind="single", encoder=str(tiny_encoder))
    student.fit([t for t, _ in rows], [y for _, y in rows], C=10.0, lexical=LexicalParams())
    student.save(tmp_path / "s")
    test = [t for t, _ in toy_texts(10, seed=9)]
    expected = student.predict_proba(test)  # also exports the encoder's ONNX graph (torch) here
    code = (
        "import json, sys\n"
        "from training.registry import load_student\n"
        "from training.predictions import score_texts\n"
        f"p = score_texts(load_student({str(tmp_path / 's')!r}), {test!r})\n"
        "print(json.dumps({'transformers': 'transformers' in sys.modules, 'p': p.tolist()}))\n"
    )
    got = run_fresh_process(code, tmp_path / "data")
    assert got["transformers"] is False
    np.testing.assert_allclose(np.array(got["p"]), expected, atol=1e-5)
