"""The log-bin quantile sketch kept per 1-minute and per 1-hour rollup (DDSketch-style).

A value ``x`` falls in bin ``k = ceil(log_g |x|)`` with ``g = (1 + a) / (1 - a)``; every value
of a bin lies within a relative distance :data:`RELATIVE_ACCURACY` (``a`` = 0.5 %) of the bin's
representative ``2 g^k / (g + 1)``. Bins merge by adding counts, so a percentile over days of
rollups is one ``SUM(count) GROUP BY bin``. Values with ``|x| < 1e-9`` share the zero bin.

Bins are stored as one integer: 0 for zero, ``k + OFFSET`` for positive values and
``-(k + OFFSET)`` for negative ones. Minute rollups keep one row per bin; hour rollups keep
their whole sketch packed in one value (:func:`pack_sketch`), so a week of one series is 168
values to unpack and merge with numpy instead of thousands of bin rows to group in SQL.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import IntegrityError

RELATIVE_ACCURACY = 0.005
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
OFFSET = 1_000_000
ZERO_THRESHOLD = 1e-9


def encode_bins(values: NDArray[np.float64]) -> NDArray[np.int64]:
    """The bin of every value."""
    magnitude = np.abs(values)
    nonzero = magnitude >= ZERO_THRESHOLD
    k = np.zeros(values.shape, dtype=np.int64)
    k[nonzero] = np.ceil(np.log(magnitude[nonzero]) / _LOG_GAMMA).astype(np.int64) + OFFSET
    result: NDArray[np.int64] = np.where(values < 0, -k, k)
    return result


def bin_values(bins: NDArray[np.int64]) -> NDArray[np.float64]:
    """The representative value of every bin."""
    k = np.abs(bins) - OFFSET
    magnitude = 2.0 * np.power(GAMMA, k.astype(np.float64)) / (GAMMA + 1.0)
    values: NDArray[np.float64] = np.where(bins == 0, 0.0, np.sign(bins) * magnitude)
    return values


def sketch_quantile(
    bins: NDArray[np.int64], counts: NDArray[np.int64], q: float, *, low: float, high: float
) -> float | None:
    """The ``q``-quantile (0..1) with numpy's default linear interpolation between order
    statistics, each order statistic read from its bin and clamped to the exact ``[low, high]``
    range of the data."""
    total = int(counts.sum())
    if total == 0:
        return None
    if low == high:
        return low
    representatives = bin_values(bins)
    order = np.argsort(representatives, kind="stable")
    ordered_values = np.clip(representatives[order], low, high)
    cumulative = np.cumsum(counts[order])

    def order_statistic(index: int) -> float:
        if index == 0:
            return low
        if index == total - 1:
            return high
        position = int(np.searchsorted(cumulative, index, side="right"))
        return float(ordered_values[min(position, len(ordered_values) - 1)])

    rank = q * (total - 1)
    below = math.floor(rank)
    fraction = rank - below
    lower = order_statistic(below)
    if fraction == 0.0:
        return lower
    upper = order_statistic(min(below + 1, total - 1))
    return lower + (upper - lower) * fraction


SKETCH_DTYPE = np.dtype([("bin", "<i4"), ("count", "<i8")])
"""One packed sketch entry: a bin (see :func:`encode_bins`) and how many values fell in it."""


def merge_bins(
    bins: NDArray[np.int64], counts: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The distinct bins, ascending, with their counts summed."""
    unique, inverse = np.unique(bins, return_inverse=True)
    totals = np.zeros(len(unique), dtype=np.int64)
    np.add.at(totals, inverse, counts)
    return unique.astype(np.int64), totals


def pack_sketch(bins: NDArray[np.int64], counts: NDArray[np.int64]) -> bytes:
    """A sketch as bytes: its merged ``(bin, count)`` pairs as little-endian int32/int64
    records, so sketches concatenate by joining their bytes."""
    unique, totals = merge_bins(bins, counts)
    records = np.empty(len(unique), dtype=SKETCH_DTYPE)
    records["bin"] = unique
    records["count"] = totals
    return records.tobytes()


def unpack_sketch(data: bytes) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The ``(bins, counts)`` of one packed sketch or of several joined ones (bins may repeat)."""
    if len(data) % SKETCH_DTYPE.itemsize:
        raise IntegrityError(
            f"a packed sketch is a whole number of {SKETCH_DTYPE.itemsize}-byte "
            f"records, got {len(data)} bytes"
        )
    records = np.frombuffer(data, dtype=SKETCH_DTYPE)
    return records["bin"].astype(np.int64), records["count"].astype(np.int64)
