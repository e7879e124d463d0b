#!/usr/bin/env python3
"""Trains the profiler's task classifier and writes rust/src/profile_weights.bin.

    .venv/bin/python scripts/train_profiler.py --data ../shared/data/task_type_prompts/prompts.csv
    make setup   # rebuild: the weights are compiled into the extension

A multinomial logistic regression over the Rust feature extractor's hashed
n-gram buckets (so training and serving hash identically), class-balanced,
L2-regularised, trained by full-batch Adam for a fixed number of steps:
deterministic, no randomness at all. Learns from the ``train`` split of
``zeta_fast.profile_eval.split_of`` only; the ``test`` split stays held out.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

from zeta_fast import _core
from zeta_fast.profile_eval import TEXT_TASKS, load_rows

ROOT = Path(__file__).resolve().parent.parent
FEATURE_BITS = 13


def design_matrix(prompts: list[str]) -> np.ndarray:
    x = np.zeros((len(prompts), 1 << FEATURE_BITS), dtype=np.float64)
    for row, prompt in enumerate(prompts):
        buckets, scale = _core._profile_features(prompt)
        np.add.at(x[row], buckets.astype(np.int64), scale)
    return x


def train(
    x: np.ndarray, y: np.ndarray, l2: float, steps: int, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    n, d = x.shape
    k = len(TEXT_TASKS)
    counts = np.bincount(y, minlength=k)
    sample_weight = (n / (k * counts))[y]  # balanced classes
    onehot = np.eye(k)[y]
    w = np.zeros((d, k))
    b = np.zeros(k)
    m_w, v_w, m_b, v_b = (np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b))
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - onehot) * sample_weight[:, None] / sample_weight.sum()
        grad_w = x.T @ error + l2 * w
        grad_b = error.sum(axis=0)
        for param, grad, m, v in ((w, grad_w, m_w, v_w), (b, grad_b, m_b, v_b)):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            param -= rate * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)
    return w, b


def macro_f1(truth: np.ndarray, guess: np.ndarray) -> float:
    scores = []
    for k in range(len(TEXT_TASKS)):
        tp = float(((guess == k) & (truth == k)).sum())
        fp = float(((guess == k) & (truth != k)).sum())
        fn = float(((guess != k) & (truth == k)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def choose_l2(
    x: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    candidates: list[float],
    steps: int,
    rate: float,
) -> float:
    """The L2 strength with the best 5-fold cross-validated macro-F1 on the training split."""
    best = (-1.0, candidates[0])
    for l2 in candidates:
        guesses = np.empty_like(y)
        for fold in range(5):
            held = folds == fold
            w, b = train(x[~held], y[~held], l2, steps, rate)
            guesses[held] = (x[held] @ w + b).argmax(axis=1)
        score = macro_f1(y, guesses)
        print(f"  l2={l2:g}: cross-validated macro-F1 {score:.3f}")
        best = max(best, (score, l2))
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True, help="labelled CSV (id, source, task_type, prompt)"
    )
    parser.add_argument("--out", default=str(ROOT / "rust" / "src" / "profile_weights.bin"))
    parser.add_argument("--l2", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3, 1e-2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rate", type=float, default=0.05)
    args = parser.parse_args()
    rows = [r for r in load_rows(args.data, "train") if r["task_type"] in TEXT_TASKS]
    x = design_matrix([r["prompt"] for r in rows])
    y = np.array([TEXT_TASKS.index(r["task_type"]) for r in rows])
    # Folds by a stable hash of the id, like the train/test split.
    folds = np.array([int.from_bytes(r["id"].encode()[-2:], "little") % 5 for r in rows])
    l2 = choose_l2(x, y, folds, args.l2, args.steps, args.rate) if len(args.l2) > 1 else args.l2[0]
    w, b = train(x, y, l2, args.steps, args.rate)
    train_accuracy = float(((x @ w + b).argmax(axis=1) == y).mean())
    with open(args.out, "wb") as handle:
        handle.write(b"ZFPROF01")
        handle.write(struct.pack("<I", FEATURE_BITS))
        handle.write(b.astype("<f4").tobytes())
        handle.write(w.astype("<f4").tobytes())
    print(f"trained on {len(rows)} prompts (l2={l2:g}), train accuracy {train_accuracy:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
