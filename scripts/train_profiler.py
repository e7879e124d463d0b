#!/usr/bin/env python3
"""Trains the profiler's task classifier and writes rust/src/profile_weights.bin.

    .venv/bin/python scripts/train_profiler.py \
        --data ../shared/data/task_type_prompts/prompts.csv data/profiler/short_messages.csv
    .venv/bin/python scripts/train_profiler.py --data ... --cv   # the held-out figures only
    make setup   # rebuild: the weights are compiled into the extension

The model: a multinomial logistic regression over two binary TF-IDF vectors,
each L2-normalised, that the Rust profiler computes in its single pass over
the text (``_core._profile_features``, so training and serving hash
identically): lower-cased words (numbers by shape) and word bigrams hashed
into 2^18 buckets, and character 3- to 5-grams inside whitespace-delimited
tokens (scikit-learn's ``char_wb``) hashed into 2^20. Only buckets seen in at
least ``--min-df`` training prompts are kept (the others carry no weight and
no IDF, so an unseen n-gram neither votes nor dilutes), and the weight file
holds the kept buckets alone: a bitmap per space, then f16 weights (times
the IDF) and f16 IDFs.

Training: L-BFGS (scikit-learn) to convergence of a strictly convex loss, so
the weights are the loss's unique minimum, with no randomness at all; classes
balanced, and the prompts of real-user sources (``--real-sources``: Chatbot
Arena's) weighted ``--real-weight`` times, since real requests are what the
router meets and the benchmark sources are easy. The L2 strength
``C`` is chosen by grouped cross-validation: every row falls in one of 5
folds by a stable hash of its id, each fold is scored by a model trained on
the other four, and the ``C`` with the best held-out macro-F1 on the
real-user rows wins. The shipped model then learns from every row of
``--data``; the cross-validated figures (``--cv``) are its held-out ones.

Data: ``prompts.csv`` of the shared ``task_type_prompts`` set (its README
gives each source's origin and licence: Arena-Hard v2 and MT-Bench
Apache-2.0, HumanEval, GSM8K and MMLU MIT, llmonitor CC BY 4.0). It is read,
never copied into the package: the package ships only the trained weights.
Beside it, ``data/profiler/short_messages.csv``: 85 short messages written for
this project (MIT), small talk and short questions of each task, since every
shared prompt is long and none is small talk.
No further licensed real-prompt set with task labels was found in the PyPI
packages looked at (fschat, alpaca-eval ship no prompts).
"""

from __future__ import annotations

import argparse
import hashlib
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from zeta_fast import _core
from zeta_fast.profile_eval import TEXT_TASKS, load_rows

ROOT = Path(__file__).resolve().parent.parent
WORD_BITS = 18
CHAR_BITS = 18
FOLDS = 5
# Real Chatbot Arena requests: weighted up (MT-Bench and llmonitor are written
# by their authors; weighting them up too measured worse on held-out arena rows).
REAL_SOURCES = ("arena_hard_v2",)


class Features:
    """The Rust profiler's classifier buckets of each prompt."""

    def __init__(self, prompts: list[str]) -> None:
        extracted = [_core._profile_features(p) for p in prompts]
        self.words = [w.astype(np.int64) for w, _ in extracted]
        self.chars = [c.astype(np.int64) for _, c in extracted]


class Space:
    """One hashed space fitted on training rows: kept buckets and their IDF."""

    def __init__(self, buckets: list[np.ndarray], rows: np.ndarray, min_df: int) -> None:
        df = np.bincount(np.concatenate([buckets[i] for i in rows]), minlength=1)
        self.kept = np.flatnonzero(df >= min_df)
        self.idf = np.log((1 + len(rows)) / (1 + df[self.kept])) + 1.0

    def matrix(self, buckets: list[np.ndarray], rows: np.ndarray) -> sp.csr_matrix:
        """Binary TF-IDF rows over the kept buckets, each L2-normalised."""
        indptr, indices, data = [0], [], []
        for i in rows:
            columns = np.searchsorted(self.kept, buckets[i])
            found = columns < len(self.kept)
            found[found] = self.kept[columns[found]] == buckets[i][found]
            columns = columns[found]
            values = self.idf[columns]
            norm = np.sqrt((values * values).sum())
            indices.append(columns)
            data.append(values / norm if norm > 0 else values)
            indptr.append(indptr[-1] + len(columns))
        return sp.csr_matrix(
            (np.concatenate(data), np.concatenate(indices), indptr),
            shape=(len(rows), len(self.kept)),
        )


class Model:
    """The classifier trained on some rows: the two spaces and the regression."""

    def __init__(
        self,
        features: Features,
        y: np.ndarray,
        weight: np.ndarray,
        rows: np.ndarray,
        c: float,
        min_df: int,
    ) -> None:
        self.words = Space(features.words, rows, min_df)
        self.chars = Space(features.chars, rows, min_df)
        self.regression = LogisticRegression(
            C=c, class_weight="balanced", max_iter=10_000, tol=1e-8
        )
        self.regression.fit(self.design(features, rows), y[rows], sample_weight=weight[rows])

    def design(self, features: Features, rows: np.ndarray) -> sp.csr_matrix:
        return sp.hstack(
            [self.words.matrix(features.words, rows), self.chars.matrix(features.chars, rows)]
        ).tocsr()

    def predict(self, features: Features, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.regression.predict(self.design(features, rows)))

    def write(self, path: str | Path) -> int:
        coef = self.regression.coef_  # (4, words + chars)
        split = len(self.words.kept)
        with open(path, "wb") as handle:
            handle.write(b"ZFPROF02")
            handle.write(struct.pack("<II", WORD_BITS, CHAR_BITS))
            handle.write(self.regression.intercept_.astype("<f4").tobytes())
            for space, bits, weights in (
                (self.words, WORD_BITS, coef[:, :split]),
                (self.chars, CHAR_BITS, coef[:, split:]),
            ):
                bitmap = np.zeros(1 << bits, dtype=bool)
                bitmap[space.kept] = True
                handle.write(struct.pack("<I", len(space.kept)))
                handle.write(np.packbits(bitmap, bitorder="little").tobytes())
                handle.write((weights.T * space.idf[:, None]).astype("<f2").tobytes())
                handle.write(space.idf.astype("<f2").tobytes())
            return handle.tell()


def macro_f1(truth: np.ndarray, guess: np.ndarray) -> float:
    """Macro-F1 over the classes the rows are labelled with."""
    scores = []
    for k in np.unique(truth):
        tp = float(((guess == k) & (truth == k)).sum())
        fp = float(((guess == k) & (truth != k)).sum())
        fn = float(((guess != k) & (truth == k)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def fold_of(row_id: str) -> int:
    """A row's cross-validation fold, by a stable hash of its id."""
    return hashlib.sha256(row_id.encode("utf-8")).digest()[1] % FOLDS


def cross_validate(
    features: Features,
    y: np.ndarray,
    weight: np.ndarray,
    folds: np.ndarray,
    c: float,
    min_df: int,
) -> np.ndarray:
    """Every row's guess by the model trained on the other folds."""
    guess = np.empty_like(y)
    for fold in range(FOLDS):
        held = np.flatnonzero(folds == fold)
        model = Model(features, y, weight, np.flatnonzero(folds != fold), c, min_df)
        guess[held] = model.predict(features, held)
    return guess


def report(sources: np.ndarray, folds: np.ndarray, y: np.ndarray, guess: np.ndarray) -> None:
    """Held-out code-vs-rest accuracy, macro-F1 and accuracy per source and fold."""
    code = TEXT_TASKS.index("code")
    print(f"{'source':14s} {'rows':>5s} {'code-vs-rest':>12s} {'macro-F1':>8s} {'accuracy':>8s}")
    groups: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(y), dtype=bool))
    for source in sorted(set(sources)):
        groups[source] = sources == source
    groups["all"] = np.ones(len(y), dtype=bool)
    for name, rows in groups.items():
        t, g = y[rows], guess[rows]
        print(
            f"{name:14s} {rows.sum():5d} {((t == code) == (g == code)).mean():12.3f}"
            f" {macro_f1(t, g):8.3f} {(t == g).mean():8.3f}"
        )
    arena = sources == "arena_hard_v2"
    if arena.any():
        print("arena_hard_v2 per fold (code-vs-rest / macro-F1):")
        for fold in range(FOLDS):
            rows = arena & (folds == fold)
            t, g = y[rows], guess[rows]
            code_vs_rest = ((t == code) == (g == code)).mean()
            print(f"  fold {fold}: {rows.sum():3d} rows {code_vs_rest:.3f} / {macro_f1(t, g):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        help="labelled CSV(s) (id, source, task_type, prompt)",
    )
    parser.add_argument("--out", default=str(ROOT / "rust" / "src" / "profile_weights.bin"))
    parser.add_argument(
        "--c", type=float, nargs="+", default=[3.0, 10.0, 30.0], help="inverse L2 strengths"
    )
    parser.add_argument("--min-df", type=int, default=2)
    parser.add_argument("--real-weight", type=float, default=3.0)
    parser.add_argument("--real-sources", nargs="+", default=list(REAL_SOURCES))
    parser.add_argument(
        "--cv", action="store_true", help="print the held-out report and write nothing"
    )
    args = parser.parse_args()
    rows = [r for path in args.data for r in load_rows(path) if r["task_type"] in TEXT_TASKS]
    features = Features([r["prompt"] for r in rows])
    y = np.array([TEXT_TASKS.index(r["task_type"]) for r in rows])
    sources = np.array([r["source"] for r in rows])
    real = np.isin(sources, args.real_sources)
    weight = np.where(real, args.real_weight, 1.0)
    folds = np.array([fold_of(r["id"]) for r in rows])
    c = args.c[0]
    if len(args.c) > 1 or args.cv:
        best = (-1.0, c)
        for candidate in args.c:
            guess = cross_validate(features, y, weight, folds, candidate, args.min_df)
            score = macro_f1(y[real], guess[real])
            print(f"  C={candidate:g}: held-out macro-F1 on real-user rows {score:.3f}")
            best = max(best, (score, candidate))
            if args.cv and len(args.c) == 1:
                report(sources, folds, y, guess)
        c = best[1]
        if args.cv and len(args.c) > 1:
            report(sources, folds, y, cross_validate(features, y, weight, folds, c, args.min_df))
    if args.cv:
        return
    model = Model(features, y, weight, np.arange(len(rows)), c, args.min_df)
    train_accuracy = float((model.predict(features, np.arange(len(rows))) == y).mean())
    size = model.write(args.out)
    print(
        f"trained on {len(rows)} prompts (C={c:g}, {len(model.words.kept)} word and "
        f"{len(model.chars.kept)} character buckets kept), train accuracy {train_accuracy:.3f}"
    )
    print(f"wrote {args.out} ({size} bytes)")


if __name__ == "__main__":
    main()
