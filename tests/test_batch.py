"""score_many, best and best_per_row: shapes, dtypes, errors and the GIL-released path."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.reference import best_numpy, score_numpy
from zeta_fast import (
    GIL_RELEASE_MIN_CANDIDATES,
    AdaptiveScorer,
    InvalidInputError,
    NoCandidatesError,
)

scorer = AdaptiveScorer()


def random_inputs(
    shape: tuple[int, ...], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(0, 100, shape),
        rng.uniform(0, 1, shape),
        rng.uniform(0, 1200, shape),
        rng.integers(0, 30, shape),
    )


@pytest.mark.parametrize("shape", [(0,), (1,), (8,), (1000,), (3, 8), (0, 8), (4, 0)])
def test_score_many_matches_numpy_reference(shape: tuple[int, ...]) -> None:
    inputs = random_inputs(shape)
    got = scorer.score_many(*inputs)
    assert got.shape == shape
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, score_numpy(*inputs), rtol=0, atol=1e-9)


@pytest.mark.parametrize("release_gil", [True, False, None])
def test_released_and_held_paths_agree(release_gil: bool | None) -> None:
    # Large enough that the default releases the GIL; odd-sized on purpose.
    inputs = random_inputs((GIL_RELEASE_MIN_CANDIDATES + 1234,), seed=3)
    got = scorer.score_many(*inputs, release_gil=release_gil)
    np.testing.assert_allclose(got, score_numpy(*inputs), rtol=0, atol=1e-9)


def test_request_counts_as_int_float_or_other_dtypes() -> None:
    cap, rate, latency, requests = random_inputs((64,), seed=1)
    expected = scorer.score_many(cap, rate, latency, requests)
    for converted in (
        requests.astype(np.float64),
        requests.astype(np.int32),
        requests.astype(np.uint16),
        requests.tolist(),
    ):
        np.testing.assert_array_equal(scorer.score_many(cap, rate, latency, converted), expected)


def test_lists_and_non_contiguous_views_are_converted() -> None:
    cap, rate, latency, requests = random_inputs((10, 8), seed=2)
    expected = score_numpy(cap, rate, latency, requests)
    # Fortran order and a strided view both take the converting path.
    got = scorer.score_many(np.asfortranarray(cap), rate, latency, requests)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    got = scorer.score_many(cap[:, ::2], rate[:, ::2], latency[:, ::2], requests[:, ::2])
    np.testing.assert_allclose(got, expected[:, ::2], atol=1e-9)
    got = scorer.score_many(cap[0].tolist(), rate[0].tolist(), latency[0].tolist(), requests[0])
    np.testing.assert_allclose(got, expected[0], atol=1e-9)
    got = scorer.score_many(cap.astype(np.float32), rate, latency, requests)
    np.testing.assert_allclose(
        got, score_numpy(cap.astype(np.float32).astype(np.float64), rate, latency, requests)
    )


def test_input_arrays_are_not_modified() -> None:
    inputs = random_inputs((100,), seed=4)
    copies = [a.copy() for a in inputs]
    scorer.score_many(*inputs)
    scorer.best(*inputs)
    for original, kept in zip(inputs, copies, strict=True):
        np.testing.assert_array_equal(original, kept)


@pytest.mark.parametrize(
    ("field", "position", "value", "message"),
    [
        ("capability", 3, np.nan, "capability[3] must be in [0, 100], got nan"),
        ("capability", 0, 100.5, "capability[0] must be in [0, 100], got 100.5"),
        ("success_rate", 7, -0.1, "success_rate[7] must be in [0, 1], got -0.1"),
        ("avg_latency_ms", 5, np.inf, "avg_latency_ms[5] must be finite and >= 0, got inf"),
        ("avg_latency_ms", 2, np.nan, "avg_latency_ms[2] must be finite and >= 0, got nan"),
        ("requests", 1, np.nan, "requests[1] must be finite and >= 0, got nan"),
        ("requests", 6, -1.0, "requests[6] must be finite and >= 0, got -1.0"),
    ],
)
def test_bad_values_raise_naming_field_and_index(
    field: str, position: int, value: float, message: str
) -> None:
    fields = ["capability", "success_rate", "avg_latency_ms", "requests"]
    inputs = [a.astype(np.float64) for a in random_inputs((8,), seed=5)]
    inputs[fields.index(field)][position] = value
    with pytest.raises(InvalidInputError) as info:
        scorer.score_many(*inputs)
    assert str(info.value) == message
    with pytest.raises(InvalidInputError) as info:
        scorer.best(*inputs)
    assert str(info.value) == message


def test_bad_value_deep_in_a_released_batch_reports_its_true_index() -> None:
    n = GIL_RELEASE_MIN_CANDIDATES * 2
    cap, rate, latency, requests = random_inputs((n,), seed=6)
    rate[n - 3] = 2.0
    for release in (True, False):
        with pytest.raises(InvalidInputError, match=rf"success_rate\[{n - 3}\] must be in"):
            scorer.score_many(cap, rate, latency, requests, release_gil=release)
    with pytest.raises(InvalidInputError, match=rf"success_rate\[{n - 3}\] must be in"):
        scorer.best(cap, rate, latency, requests)


def test_negative_int_request_count_is_reported() -> None:
    cap, rate, latency, requests = random_inputs((4,), seed=7)
    requests[2] = -5
    with pytest.raises(InvalidInputError, match=r"requests\[2\] must be finite and >= 0, got -5.0"):
        scorer.score_many(cap, rate, latency, requests)


def test_bad_value_in_2d_batch_is_reported_by_row_and_column() -> None:
    cap, rate, latency, requests = random_inputs((3, 5), seed=8)
    latency[2, 4] = -1.0
    with pytest.raises(InvalidInputError, match=r"avg_latency_ms\[2, 4\] must be finite"):
        scorer.score_many(cap, rate, latency, requests)
    with pytest.raises(InvalidInputError, match=r"avg_latency_ms\[2, 4\] must be finite"):
        scorer.best_per_row(cap, rate, latency, requests)


def test_mismatched_shapes_are_rejected() -> None:
    cap, rate, latency, requests = random_inputs((8,))
    with pytest.raises(InvalidInputError, match=r"success_rate has shape \(7,\), expected \(8,\)"):
        scorer.score_many(cap, rate[:7], latency, requests)
    with pytest.raises(InvalidInputError, match=r"requests has shape \(2, 4\), expected \(8,\)"):
        scorer.score_many(cap, rate, latency, requests.reshape(2, 4))
    with pytest.raises(InvalidInputError, match=r"avg_latency_ms has shape \(9,\)"):
        scorer.best(cap, rate, np.ones(9), requests)


def test_scalars_and_3d_inputs_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"capability must be a 1-D .* or 2-D"):
        scorer.score_many(np.float64(1.0), 1.0, 1.0, 1)
    ones = np.ones((2, 2, 2))
    with pytest.raises(InvalidInputError, match=r"got 3-D array of shape \(2, 2, 2\)"):
        scorer.score_many(ones, ones, ones, ones)


@pytest.mark.parametrize(
    "bad", [["a", "b"], [True, False], [None, 1.0], np.array(["1", "2"]), {"a": 1}]
)
def test_non_numeric_inputs_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="capability must be an array of numbers"):
        scorer.score_many(bad, [1.0, 1.0], [1.0, 1.0], [1, 1])


def test_best_breaks_ties_by_lowest_index() -> None:
    assert scorer.best([50.0, 90.0, 90.0], [1.0] * 3, [0.0] * 3, [0] * 3) == 1
    assert scorer.best([90.0] * 5, [1.0] * 5, [0.0] * 5, [0] * 5) == 0


def test_best_tie_in_a_released_batch_goes_to_lowest_index() -> None:
    n = GIL_RELEASE_MIN_CANDIDATES + 5000
    cap = np.full(n, 10.0)
    cap[[1500, 9000, n - 1]] = 99.0
    ones = np.ones(n)
    assert scorer.best(cap, ones, ones, np.zeros(n, dtype=np.int64)) == 1500


def test_best_matches_numpy_argmax() -> None:
    for seed in range(50):
        inputs = random_inputs((8,), seed=seed)
        assert scorer.best(*inputs) == best_numpy(*inputs)


def test_best_of_nothing_is_an_error() -> None:
    with pytest.raises(NoCandidatesError, match=r"best\(\) needs at least one candidate"):
        scorer.best(np.empty(0), np.empty(0), np.empty(0), np.empty(0))


def test_best_wants_1d_and_best_per_row_wants_2d() -> None:
    two_d = random_inputs((2, 3))
    with pytest.raises(InvalidInputError, match="use best_per_row for 2-D"):
        scorer.best(*two_d)
    with pytest.raises(InvalidInputError, match="must be a 2-D"):
        scorer.best_per_row(*random_inputs((3,)))


def test_best_per_row() -> None:
    inputs = random_inputs((200, 8), seed=9)
    got = scorer.best_per_row(*inputs)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argmax(score_numpy(*inputs), axis=1))
    big = random_inputs((GIL_RELEASE_MIN_CANDIDATES // 8 + 10, 8), seed=10)
    np.testing.assert_array_equal(scorer.best_per_row(*big), np.argmax(score_numpy(*big), axis=1))
    assert scorer.best_per_row(*random_inputs((0, 8))).shape == (0,)
    with pytest.raises(NoCandidatesError):
        scorer.best_per_row(*random_inputs((3, 0)))


def test_many_threads_scoring_shared_arrays_get_exact_results() -> None:
    # The released path lets threads overlap; each must still see exact scores.
    inputs = random_inputs((GIL_RELEASE_MIN_CANDIDATES + 1,), seed=11)
    expected = score_numpy(*inputs)
    failures: list[str] = []

    def work() -> None:
        for _ in range(3):
            got = scorer.score_many(*inputs)
            if not np.allclose(got, expected, rtol=0, atol=1e-9):
                failures.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
