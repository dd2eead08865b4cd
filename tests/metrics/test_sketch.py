"""The rollup sketch keeps its documented relative accuracy across magnitudes and signs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftloop.errors import IntegrityError
from driftloop.metrics.sketch import (
    RELATIVE_ACCURACY,
    ZERO_THRESHOLD,
    bin_values,
    encode_bins,
    merge_bins,
    pack_sketch,
    sketch_quantile,
    unpack_sketch,
)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 250.0, 1e7])
def test_every_value_is_within_the_relative_accuracy_of_its_bin(scale: float) -> None:
    values = np.random.default_rng(1).uniform(-1, 1, 5000) * scale
    represented = bin_values(encode_bins(values))
    tiny = np.abs(values) < ZERO_THRESHOLD  # the zero bin
    assert np.all(represented[tiny] == 0.0)
    error = np.abs(represented - values)[~tiny]
    assert np.all(error <= RELATIVE_ACCURACY * np.abs(values[~tiny]) * (1 + 1e-9))


@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_quantile_lies_between_the_neighbouring_order_statistics(q: float) -> None:
    values = np.random.default_rng(2).lognormal(0, 2, 4001) - 1.0  # mixed signs, long tail
    bins, counts = np.unique(encode_bins(values), return_counts=True)
    estimate = sketch_quantile(bins, counts, q, low=float(values.min()), high=float(values.max()))
    ordered = np.sort(values)
    rank = q * (len(values) - 1)
    low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    assert estimate is not None
    margin = RELATIVE_ACCURACY * max(abs(low), abs(high))
    assert low - margin <= estimate <= high + margin


def test_constant_and_empty_data() -> None:
    bins, counts = np.unique(encode_bins(np.full(10, 0.73)), return_counts=True)
    assert sketch_quantile(bins, counts, 0.9, low=0.73, high=0.73) == 0.73
    empty = np.array([], dtype=np.int64)
    assert sketch_quantile(empty, empty, 0.5, low=0.0, high=0.0) is None
    zeros = encode_bins(np.array([0.0, 1e-12, -1e-12]))
    assert zeros.tolist() == [0, 0, 0]


def test_packed_sketches_round_trip_and_join() -> None:
    rng = np.random.default_rng(3)
    first = encode_bins(np.concatenate([rng.normal(0, 50, 500), [0.0, 1e300, -1e-8]]))
    second = encode_bins(rng.normal(10, 5, 300))
    ones = np.ones(len(first), dtype=np.int64)
    packed = pack_sketch(first, ones)
    bins, counts = unpack_sketch(packed)
    want_bins, want_counts = np.unique(first, return_counts=True)
    np.testing.assert_array_equal(bins, want_bins)
    np.testing.assert_array_equal(counts, want_counts)
    # joined bytes are the concatenation; merging them equals merging the values
    joined = unpack_sketch(packed + pack_sketch(second, np.full(len(second), 2, dtype=np.int64)))
    merged_bins, merged_counts = merge_bins(*joined)
    all_bins = np.concatenate([first, second, second])
    want_bins, want_counts = np.unique(all_bins, return_counts=True)
    np.testing.assert_array_equal(merged_bins, want_bins)
    np.testing.assert_array_equal(merged_counts, want_counts)
    assert unpack_sketch(b"")[0].size == 0
    with pytest.raises(IntegrityError, match="whole number"):
        unpack_sketch(packed[:-1])
