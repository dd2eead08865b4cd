"""``embedding_typicality``: is each text like the texts the model was trained on?

A text model can be confidently wrong on texts unlike any it learned from, so the server
reports, beside each prediction, how typical the text's embedding is of the training texts:

1. **Novelty.** The embedding (unit length) is scored by the Local Outlier Factor (Breunig
   et al. 2000; scikit-learn's ``LocalOutlierFactor(novelty=True)``) against a sample of the
   training embeddings: the density around the text relative to the density around its
   nearest training neighbours (computed with numpy; scikit-learn's implementation is the
   test's oracle). The ratio is near 1 inside the training data *whatever its
   local density*, so a subtopic with few training rows is as typical as a frequent one, and
   grows for a text far from every training text.
2. **Rank.** The score is ranked among the same scores of the held-out texts (never trained
   on): ``embedding_typicality`` is the share of held-out texts less typical than this one
   (ties counted half). On traffic like the held-out data it is uniform on [0, 1] (mean 0.5)
   for every model and embedding; texts unlike the training data sit near 0.

A drift monitor then tests the per-text values against the reference profile's (the held-out
texts' ranks) with a one-sided test for a *drop* (``cusum``): texts less typical than the
training data. This is a two-sample test of the embedding distribution reduced to the one
direction a retrain can cure: a window whose texts all lie inside the training data, in
another mix than the held-out split's (after a retrain on a snapshot where the new subtopic is
a minority, or a drift onto a subtopic the model knows well), is no drift here, while a
two-sample test of the whole distribution (MMD, KS) keeps firing on the mix (docs/drift.md has
the measurements).

Embeddings: the transformers predictor's pooled encoder output; for the sklearn predictor a
:class:`SparseProjection` of its TF-IDF features (truncated SVD over the most frequent
columns). Saved as plain arrays (no pickle); the LOF is refitted on load from the stored
sample (deterministic: one 2,000 x 2,000 distance matrix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import IntegrityError

EMBEDDING_TYPICALITY = "embedding_typicality"
"""The metric name the server reports it under."""

NEIGHBOUR_SAMPLE = 2_000
"""Training embeddings kept to score new texts against (LOF cost grows with it)."""

N_NEIGHBORS = 20
"""LOF's neighbourhood (scikit-learn's default; 10-50 change the measured separation little)."""

SAMPLE_FILE = "typicality_sample.npy"
SCORES_FILE = "typicality_scores.npy"
COLUMNS_FILE = "projection_columns.npy"
COMPONENTS_FILE = "projection_components.npy"


def unit_rows(embeddings: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rows scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    result: NDArray[np.float64] = embeddings / np.maximum(norms, 1e-12)
    return result


class EmbeddingTypicality:
    """LOF novelty of embeddings against a training sample, ranked among held-out texts."""

    def __init__(
        self,
        sample: NDArray[np.float64],
        reference_scores: NDArray[np.float64],
        *,
        n_neighbors: int = N_NEIGHBORS,
    ) -> None:
        if sample.ndim != 2 or len(sample) <= n_neighbors or reference_scores.size == 0:
            raise IntegrityError(
                f"embedding typicality needs more than {n_neighbors} training embeddings and "
                f"some held-out scores, got {sample.shape} and {reference_scores.size}"
            )
        self.sample = np.ascontiguousarray(sample, dtype=np.float32)
        self.reference_scores = np.sort(np.asarray(reference_scores, dtype=np.float64))
        self.n_neighbors = n_neighbors
        distances, neighbours = self._neighbours(self.sample, exclude_self=True)
        self._k_distance = distances[:, -1]
        self._lrd = self._reachability_density(distances, neighbours)

    @classmethod
    def fit(
        cls,
        train: NDArray[np.float64],
        held_out: NDArray[np.float64],
        *,
        sample_size: int = NEIGHBOUR_SAMPLE,
        seed: int = 0,
    ) -> EmbeddingTypicality:
        """From the training texts' embeddings (a sample of ``sample_size`` is kept) and the
        held-out texts' (their scores are the ranks' reference)."""
        rng = np.random.default_rng(seed)
        take = rng.permutation(len(train))[:sample_size]
        sample = unit_rows(np.asarray(train, dtype=np.float64)[take])
        typicality = cls(sample, np.zeros(1))  # scores are set once the LOF can give them
        typicality.reference_scores = np.sort(typicality.novelty(held_out))
        return typicality

    def novelty(self, embeddings: NDArray[np.float64]) -> NDArray[np.float64]:
        """Minus the LOF, as scikit-learn's ``LocalOutlierFactor(novelty=True).score_samples``
        gives it (a test checks they agree): about -1 inside the data, lower outside.
        Computed here with one matrix product, since scikit-learn's neighbour search, run per
        request of a few texts, spent most of its time starting OpenMP threads (30x slower on
        a busy 2-core machine)."""
        if len(embeddings) == 0:
            return np.zeros(0)
        rows = unit_rows(np.asarray(embeddings, dtype=np.float64)).astype(np.float32)
        scores = np.empty(len(rows))
        for start in range(0, len(rows), 1_000):  # bounded memory: 1,000 x sample distances
            distances, neighbours = self._neighbours(
                rows[start : start + 1_000], exclude_self=False
            )
            density = self._reachability_density(distances, neighbours)
            scores[start : start + 1_000] = -(self._lrd[neighbours] / density[:, None]).mean(1)
        return scores

    def _neighbours(
        self, rows: NDArray[np.float32], *, exclude_self: bool
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Euclidean distances to the ``n_neighbors`` nearest sample rows (sorted) and their
        indices; rows and sample have unit length, so ``|a - b|² = 2 - 2 a·b``."""
        with _one_blas_thread():
            products = rows @ self.sample.T
        squared = np.maximum(2.0 - 2.0 * products.astype(np.float64), 0.0)
        if exclude_self:
            np.fill_diagonal(squared, np.inf)
        k = self.n_neighbors
        nearest = np.argpartition(squared, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(squared, nearest, axis=1)
        order = np.argsort(near, axis=1, kind="stable")
        return (
            np.sqrt(np.take_along_axis(near, order, axis=1)),
            np.take_along_axis(nearest, order, axis=1),
        )

    def _reachability_density(
        self, distances: NDArray[np.float64], neighbours: NDArray[np.intp]
    ) -> NDArray[np.float64]:
        reach = np.maximum(distances, self._k_distance[neighbours])
        density: NDArray[np.float64] = 1.0 / (reach.mean(axis=1) + 1e-10)
        return density

    def typicality(self, embeddings: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per text: the share of held-out texts less typical than it, in [0, 1]."""
        scores = self.novelty(embeddings)
        below = np.searchsorted(self.reference_scores, scores, side="left")
        at_or_below = np.searchsorted(self.reference_scores, scores, side="right")
        ranks: NDArray[np.float64] = (below + at_or_below) / (2.0 * self.reference_scores.size)
        return ranks

    def save(self, directory: Path) -> None:
        np.save(directory / SAMPLE_FILE, self.sample, allow_pickle=False)
        np.save(directory / SCORES_FILE, self.reference_scores, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> EmbeddingTypicality | None:
        """What :meth:`save` wrote, or ``None`` for a model saved without it."""
        if not (directory / SAMPLE_FILE).is_file():
            return None
        return cls(_load(directory / SAMPLE_FILE), _load(directory / SCORES_FILE))


class SparseProjection:
    """A dense, low-dimensional embedding of sparse features (e.g. TF-IDF): truncated SVD over
    the ``columns`` most frequent in the training rows (fitted by the trainer:
    ``driftloop.trainers.sklearn.fit_sparse_projection``; predictors/ only applies it)."""

    def __init__(self, columns: NDArray[np.int64], components: NDArray[np.float64]) -> None:
        self.columns = np.asarray(columns, dtype=np.int64)
        self.components = np.ascontiguousarray(components, dtype=np.float32)
        self._weights = np.ascontiguousarray(self.components.T, dtype=np.float64)
        """``components.T`` as scipy's sparse product takes it (C order, float64): given the
        float32 transpose, it made a float64 C-order copy of all 20,000 x 64 weights on every
        call (~4 ms per request, most of the input-drift signal's cost)."""

    def transform(self, features: Any) -> NDArray[np.float64]:
        projected = features[:, self.columns] @ self._weights
        return np.asarray(projected, dtype=np.float64)

    def save(self, directory: Path) -> None:
        np.save(directory / COLUMNS_FILE, self.columns, allow_pickle=False)
        np.save(directory / COMPONENTS_FILE, self.components, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> SparseProjection | None:
        if not (directory / COLUMNS_FILE).is_file():
            return None
        return cls(
            _load(directory / COLUMNS_FILE).astype(np.int64), _load(directory / COMPONENTS_FILE)
        )


_THREADPOOLS: list[Any] = []


def _one_blas_thread() -> Any:
    """BLAS limited to one thread for a product: a request's few texts against the sample
    took 35 ms with OpenBLAS's threads on a busy 2-core machine, 1.3 ms with one (the server
    already runs requests in parallel)."""
    if not _THREADPOOLS:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="blas")


def _load(path: Path) -> NDArray[Any]:
    if not path.is_file():
        raise IntegrityError(f"{path} is missing: the model's embedding profile is incomplete")
    try:
        array: NDArray[Any] = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path} is corrupt: {exc}") from exc
    return array


class ProjectedTypicality:
    """:class:`EmbeddingTypicality` of sparse features through a :class:`SparseProjection`
    (the sklearn predictor's TF-IDF rows)."""

    def __init__(self, projection: SparseProjection, typicality: EmbeddingTypicality) -> None:
        self.projection = projection
        self.typicality = typicality

    @classmethod
    def fit(
        cls, projection: SparseProjection, train: Any, held_out: Any, *, seed: int = 0
    ) -> ProjectedTypicality:
        """``train``, ``held_out``: sparse feature rows of the training and held-out texts;
        ``projection`` fitted on ``train``."""
        typicality = EmbeddingTypicality.fit(
            projection.transform(train), projection.transform(held_out), seed=seed
        )
        return cls(projection, typicality)

    def __call__(self, features: Any) -> NDArray[np.float64]:
        return self.typicality.typicality(self.projection.transform(features))

    def save(self, directory: Path) -> None:
        self.projection.save(directory)
        self.typicality.save(directory)

    @classmethod
    def load(cls, directory: Path) -> ProjectedTypicality | None:
        projection = SparseProjection.load(directory)
        typicality = EmbeddingTypicality.load(directory)
        if projection is None or typicality is None:
            return None
        return cls(projection, typicality)
