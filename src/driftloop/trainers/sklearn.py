"""``trainer: sklearn``: TF-IDF features and a multinomial logistic regression, in seconds.

Features: word 1-2 grams (sublinear TF, ``min_df``), optionally joined by character 3-5 grams
(``char_ngrams: true``). The regularisation ``C`` is chosen from a small grid by the
validation log-loss *after* temperature scaling, i.e. for how well the model's confidence can
be made to mean "probability of being right"; the temperature is then fitted on the same
validation rows and stored with the model.

The saved directory holds plain data, no pickle: per feature block ``<name>_vocabulary.json``
(terms in column order) and ``<name>_idf.npy``; the classifier's ``coef.npy`` and
``intercept.npy``; and ``driftloop-model.json`` (labels, temperature, feature settings).
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import sklearn
from numpy.typing import NDArray
from pydantic import Field, ValidationError, field_validator
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from driftloop.config import ModelConfig, StrictModel
from driftloop.errors import ConfigError, IntegrityError, InvalidInputError
from driftloop.predictors import MANIFEST, TextClassifier, softmax
from driftloop.predictors.embedding import (
    EMBEDDING_TYPICALITY,
    ProjectedTypicality,
    SparseProjection,
)
from driftloop.predictors.inputs import OOV_RATE, VocabularyProfile
from driftloop.trainers.base import ProgressCallback, TrainedModel, Trainer, TrainingData
from driftloop.trainers.checks import check_training_data
from driftloop.trainers.evaluation import fit_temperature
from driftloop.trainers.holdout import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    calibrate_and_evaluate,
    label_indices,
    split_for_training,
)

COEF_FILE = "coef.npy"
INTERCEPT_FILE = "intercept.npy"


class SklearnParams(StrictModel):
    """``models.<name>.params`` of the sklearn trainer."""

    c_grid: list[float] = Field(default_factory=lambda: [1.0, 4.0, 16.0], min_length=1)
    char_ngrams: bool = False
    max_features: int = Field(200_000, ge=1)
    min_df: int = Field(2, ge=1)
    max_iter: int = Field(1_000, ge=1)
    holdout_fraction: float = Field(DEFAULT_HOLDOUT_FRACTION, gt=0, lt=1)
    validation_fraction: float = Field(DEFAULT_VALIDATION_FRACTION, gt=0, lt=1)
    seed: int = 0

    @field_validator("c_grid")
    @classmethod
    def _positive(cls, grid: list[float]) -> list[float]:
        if any(c <= 0 for c in grid):
            raise ValueError("every C in c_grid must be positive")
        return grid


class SklearnPredictor(TextClassifier):
    """A fitted scikit-learn text pipeline; logits are its ``decision_function``."""

    format: ClassVar[str] = "sklearn"

    def __init__(self, labels: Sequence[str], pipeline: Pipeline, temperature: float = 1.0):
        super().__init__(labels, temperature)
        self.pipeline = pipeline
        self._vocabulary: VocabularyProfile | None = None
        self.typicality: ProjectedTypicality | None = None
        """``embedding_typicality`` of the TF-IDF rows (None: a model saved without it)."""
        self._last_features: dict[int, tuple[tuple[str, ...], Any]] = {}
        """Per thread, the last texts :meth:`logits` scored and their TF-IDF rows: the server's
        batcher asks for the same texts' :meth:`input_signals` right after, which reuse them
        (the transform is most of either call)."""

    def _features(self, texts: Sequence[str]) -> Any:
        last = self._last_features.get(threading.get_ident())
        if last is not None and last[0] == tuple(texts):
            return last[1]
        return self.pipeline.named_steps["features"].transform(list(texts))

    def input_signals(self, texts: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        """``oov_rate``: each text's share of words outside the word features' unigrams;
        ``embedding_typicality`` (:mod:`driftloop.predictors.embedding`) of its TF-IDF row."""
        if self._vocabulary is None:
            self._vocabulary = _word_vocabulary(self.pipeline)
        signals = {OOV_RATE: self._vocabulary.oov_rates(texts)}
        if self.typicality is not None and len(texts) > 0:
            signals[EMBEDDING_TYPICALITY] = self.typicality(self._features(texts))
        return signals

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        features = self.pipeline.named_steps["features"].transform(list(texts))
        if self.typicality is not None:
            if len(self._last_features) > 64:  # threads come and go: keep the live ones'
                self._last_features.clear()
            self._last_features[threading.get_ident()] = (tuple(texts), features)
        classifier: LogisticRegression = self.pipeline.named_steps["classifier"]
        scores = np.asarray(classifier.decision_function(features), dtype=np.float64)
        if scores.ndim == 1:  # binary: one score for the second class
            scores = np.column_stack([-scores / 2.0, scores / 2.0])
        return scores

    def save_files(self, directory: Path) -> dict[str, Any]:
        """Plain arrays and JSON, no pickle: loading runs no code from the artifact, and the
        same fitted model always gives the same bytes (hence the same content hash)."""
        union: FeatureUnion = self.pipeline.named_steps["features"]
        classifier: LogisticRegression = self.pipeline.named_steps["classifier"]
        features = []
        for name, vectorizer in union.transformer_list:
            terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
            (directory / f"{name}_vocabulary.json").write_text(
                json.dumps(terms, ensure_ascii=False), encoding="utf-8"
            )
            _save_array(directory / f"{name}_idf.npy", vectorizer.idf_)
            features.append(
                {
                    "name": name,
                    "analyzer": vectorizer.analyzer,
                    "ngram_range": list(vectorizer.ngram_range),
                    "lowercase": bool(vectorizer.lowercase),
                    "sublinear_tf": bool(vectorizer.sublinear_tf),
                    "norm": vectorizer.norm,
                    "token_pattern": vectorizer.token_pattern,
                }
            )
        _save_array(directory / COEF_FILE, classifier.coef_)
        _save_array(directory / INTERCEPT_FILE, classifier.intercept_)
        if self.typicality is not None:
            self.typicality.save(directory)
        return {"sklearn_version": sklearn.__version__, "features": features}

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> SklearnPredictor:
        labels = list(manifest["labels"])
        try:
            union = FeatureUnion(
                [(spec["name"], _load_vectorizer(directory, spec)) for spec in manifest["features"]]
            )
            classifier = LogisticRegression()
            classifier.coef_ = _load_array(directory / COEF_FILE)
            classifier.intercept_ = _load_array(directory / INTERCEPT_FILE)
        except (KeyError, TypeError) as exc:
            raise IntegrityError(f"{directory / MANIFEST}: missing or bad field {exc}") from exc
        classifier.classes_ = np.arange(len(labels))
        expected_rows = 1 if len(labels) == 2 else len(labels)
        width = sum(len(v.vocabulary) for _name, v in union.transformer_list)
        if classifier.coef_.shape != (expected_rows, width):
            raise IntegrityError(
                f"{directory / COEF_FILE} has shape {classifier.coef_.shape}, expected "
                f"({expected_rows}, {width}) for {len(labels)} labels"
            )
        pipeline = Pipeline([("features", union), ("classifier", classifier)])
        predictor = cls(labels, pipeline, float(manifest.get("temperature", 1.0)))
        predictor.typicality = ProjectedTypicality.load(directory)
        return predictor


def _word_vocabulary(pipeline: Pipeline) -> VocabularyProfile:
    """The unigrams of the first word-level feature block, tokenized as that block does."""
    union: FeatureUnion = pipeline.named_steps["features"]
    for _name, vectorizer in union.transformer_list:
        if vectorizer.analyzer == "word":
            terms = getattr(vectorizer, "vocabulary_", None) or vectorizer.vocabulary
            return VocabularyProfile(
                (term for term in terms if " " not in term),
                token_pattern=vectorizer.token_pattern,
                lowercase=bool(vectorizer.lowercase),
            )
    raise IntegrityError("the sklearn model has no word features to measure unknown words by")


def _save_array(path: Path, array: Any) -> None:
    np.save(path, np.ascontiguousarray(array, dtype=np.float64), allow_pickle=False)


def _load_array(path: Path) -> NDArray[np.float64]:
    if not path.is_file():
        raise IntegrityError(f"{path} is missing: the sklearn model is incomplete")
    try:
        array: NDArray[np.float64] = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path} is corrupt: {exc}") from exc
    return array


def _load_vectorizer(directory: Path, spec: dict[str, Any]) -> TfidfVectorizer:
    name = spec["name"]
    vocabulary_path = directory / f"{name}_vocabulary.json"
    if not vocabulary_path.is_file():
        raise IntegrityError(f"{vocabulary_path} is missing: the sklearn model is incomplete")
    try:
        terms = json.loads(vocabulary_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{vocabulary_path} is corrupt: {exc}") from exc
    idf = _load_array(directory / f"{name}_idf.npy")
    if not isinstance(terms, list) or len(terms) != len(idf) or not terms:
        raise IntegrityError(f"{vocabulary_path} does not match {name}_idf.npy")
    vectorizer = TfidfVectorizer(
        analyzer=spec["analyzer"],
        ngram_range=tuple(spec["ngram_range"]),
        lowercase=spec["lowercase"],
        sublinear_tf=spec["sublinear_tf"],
        norm=spec["norm"],
        token_pattern=spec["token_pattern"],
        dtype=np.float64,
        vocabulary={str(term): index for index, term in enumerate(terms)},
    )
    vectorizer.idf_ = idf
    return vectorizer


def build_pipeline(params: SklearnParams, c: float) -> Pipeline:
    word = TfidfVectorizer(
        ngram_range=(1, 2),
        min_df=params.min_df,
        sublinear_tf=True,
        max_features=params.max_features,
        dtype=np.float64,
    )
    features: list[tuple[str, Any]] = [("word", word)]
    if params.char_ngrams:
        features.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    min_df=params.min_df,
                    sublinear_tf=True,
                    max_features=params.max_features,
                    dtype=np.float64,
                ),
            )
        )
    classifier = LogisticRegression(
        C=c, solver="saga", tol=1e-3, max_iter=params.max_iter, random_state=params.seed
    )
    return Pipeline([("features", FeatureUnion(features)), ("classifier", classifier)])


class SklearnTrainer(Trainer):
    """TF-IDF + logistic regression with ``C`` tuned for calibrated confidence."""

    name: ClassVar[str] = "sklearn"

    def __init__(
        self, params: SklearnParams | None = None, *, labels: Sequence[str] | None = None
    ) -> None:
        self.params = params or SklearnParams()
        self.labels = None if labels is None else tuple(labels)

    @classmethod
    def from_model_config(
        cls, model_config: ModelConfig, *, base_dir: Path | None = None
    ) -> SklearnTrainer:
        del base_dir
        try:
            params = SklearnParams.model_validate(model_config.params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"sklearn trainer params: {problems}") from None
        return cls(params, labels=model_config.labels)

    def fit(self, data: TrainingData, *, progress: ProgressCallback | None = None) -> TrainedModel:
        report = progress or (lambda _stage, _fraction: None)
        checked = check_training_data(data, allowed_labels=self.labels)
        text, label = data.text_column, data.label_column
        splits = split_for_training(
            checked.frame,
            label,
            holdout_fraction=self.params.holdout_fraction,
            validation_fraction=self.params.validation_fraction,
            seed=self.params.seed,
        )
        labels = checked.labels
        y_train = label_indices(splits.train, label, labels)
        y_validation = label_indices(splits.validation, label, labels)
        train_texts = splits.train[text].tolist()
        validation_texts = splits.validation[text].tolist()

        report("vectorizing", 0.0)
        features = build_pipeline(self.params, 1.0).named_steps["features"]
        try:
            x_train = features.fit_transform(train_texts)
        except ValueError as exc:  # e.g. an empty vocabulary
            raise InvalidInputError(f"cannot build text features: {exc}") from exc
        x_validation = features.transform(validation_texts)

        grid = sorted(self.params.c_grid)
        validation_loss, chosen_c, classifier, converged = self._search_c(
            grid, x_train, y_train, x_validation, y_validation, report
        )

        report("calibrating", len(grid) / (len(grid) + 1))
        pipeline = Pipeline([("features", features), ("classifier", classifier)])
        predictor = SklearnPredictor(labels, pipeline)
        predictor.typicality = ProjectedTypicality.fit(
            fit_sparse_projection(x_train, seed=self.params.seed),
            x_train,
            features.transform(splits.held_out[text].tolist()),
            seed=self.params.seed,
        )
        calibrated = calibrate_and_evaluate(predictor, splits, text_column=text, label_column=label)
        report("done", 1.0)
        params: dict[str, Any] = {
            **self.params.model_dump(),
            "C": chosen_c,
            "validation_nll": round(validation_loss, 6),
            "temperature": calibrated.temperature,
            "vocabulary_size": int(x_train.shape[1]),
            "converged": converged,
            "rows": splits.sizes(),
            "dropped_rows": checked.dropped_rows,
            "sklearn_version": sklearn.__version__,
        }
        return TrainedModel(predictor, calibrated.evaluation, calibrated.reference, params)

    def _search_c(
        self,
        grid: list[float],
        x_train: Any,
        y_train: NDArray[np.int64],
        x_validation: Any,
        y_validation: NDArray[np.int64],
        report: ProgressCallback,
    ) -> tuple[float, float, LogisticRegression, bool]:
        """Fit a classifier per ``C`` of ``grid`` and keep the one with the lowest validation
        log-loss after temperature scaling: its loss, its ``C``, the classifier, and whether
        every fit converged."""
        best: tuple[float, float, LogisticRegression] | None = None
        converged = True
        for step, c in enumerate(grid):
            report(f"fitting C={c:g}", step / (len(grid) + 1))
            classifier = build_pipeline(self.params, c).named_steps["classifier"]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                classifier.fit(x_train, y_train)
            converged = converged and not any(
                issubclass(w.category, ConvergenceWarning) for w in caught
            )
            logits = _as_logits(classifier.decision_function(x_validation))
            temperature = fit_temperature(logits, y_validation)
            loss = _log_loss(logits, y_validation, temperature)
            if best is None or loss < best[0]:
                best = (loss, c, classifier)
        assert best is not None
        return (*best, converged)


def _log_loss(logits: NDArray[np.float64], y: NDArray[np.int64], temperature: float) -> float:
    """Mean negative log-likelihood of the true labels after temperature scaling."""
    probs = softmax(logits / temperature)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def _as_logits(scores: Any) -> NDArray[np.float64]:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        return np.column_stack([-array / 2.0, array / 2.0])
    return array


def fit_sparse_projection(
    features: Any, *, dimensions: int = 64, max_columns: int = 20_000, seed: int = 0
) -> SparseProjection:
    """The input-drift embedding of TF-IDF rows (``features``, a scipy sparse matrix of the
    training rows): truncated SVD over the ``max_columns`` most frequent columns."""
    frequency = np.asarray((features > 0).sum(axis=0)).ravel()
    columns = np.sort(np.argsort(-frequency, kind="stable")[:max_columns])
    dimensions = max(1, min(dimensions, len(columns) - 1, features.shape[0] - 1))
    svd = TruncatedSVD(dimensions, random_state=seed).fit(features[:, columns])
    return SparseProjection(columns, svd.components_)
