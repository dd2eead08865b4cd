"""Finding a model directory's predictor, and checking it before anything serves it.

A model directory's predictor class is found, first match wins:

1. ``models.<name>.predictor: "package.module:Class"`` in ``driftloop.yaml`` (an installed or
   importable module; the manifest may then hold anything the class reads);
2. the manifest's ``"predictor": "predictor.py:Class"``: a module file inside the directory
   itself, which travels (and is hashed) with the model;
3. the manifest's ``"format"``: a name in :data:`~driftloop.predictors.PREDICTORS` (the
   built-in ``sklearn`` and ``transformers``, then the entry-point group
   ``driftloop.predictors``).

Importing a predictor runs its code with the rights of the process: it happens when an admin
registers a version (``driftloop models register``) or a server loads the version an admin
deployed, never because of what a request carries. A module file is imported once per content
(its SHA-256 names the module), however often versions holding it are loaded.

:func:`check_predictor` scores the predictor's example input and checks the answer against
the declared output kind: the registry refuses a version that fails it, the server a version
it would swap in.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from driftloop.errors import DriftloopError, IntegrityError, InvalidInputError, NotFoundError
from driftloop.errors import WrongAnswerError as WrongAnswerError  # the old import path
from driftloop.predictors.base import MANIFEST, PREDICTORS, Predictor
from driftloop.predictors.schema import OUTPUT_KINDS, InputSchema

if TYPE_CHECKING:  # imported where a predictor is checked (see driftloop.predictors.base)
    import numpy as np

USER_MODULE_PREFIX = "driftloop_model_code_"
"""Module files of model directories are imported as ``driftloop_model_code_<sha256[:16]>``."""


def read_manifest(directory: Path) -> dict[str, Any]:
    """The parsed ``driftloop-model.json``; a missing one is :class:`NotFoundError`, an
    unreadable one :class:`IntegrityError`."""
    path = directory / MANIFEST
    if not path.is_file():
        raise NotFoundError(f"{directory} holds no model ({MANIFEST} is missing)")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(manifest, dict):
        raise IntegrityError(f"{path} is corrupt: not a JSON object")
    return manifest


def load_predictor(directory: Path, predictor: str | None = None) -> Predictor:
    """Load the model in ``directory``; ``predictor`` is the configured
    ``models.<name>.predictor`` (``package.module:Class``), if any."""
    manifest = read_manifest(directory)
    predictor_class = find_predictor_class(directory, manifest, predictor)
    try:
        loaded = predictor_class.load_files(directory, manifest)
    except DriftloopError:
        raise
    except Exception as exc:  # the model's own code: any error while it reads its files
        raise InvalidInputError(
            f"{predictor_class.__name__}.load_files({directory}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(loaded, Predictor):
        raise InvalidInputError(
            f"{predictor_class.__name__}.load_files returned "
            f"{type(loaded).__name__}, not a Predictor"
        )
    return loaded


def find_predictor_class(
    directory: Path, manifest: dict[str, Any], predictor: str | None = None
) -> type[Predictor]:
    """The class that loads ``directory`` (see the module's docstring for the order)."""
    manifest_path = directory / MANIFEST
    if predictor is not None:
        return _predictor_class(
            import_target(predictor, "models.<name>.predictor"),
            f"models.<name>.predictor {predictor!r}",
        )
    code = manifest.get("predictor")
    if code is not None:
        if not isinstance(code, str):
            raise IntegrityError(f"{manifest_path}: 'predictor' must be 'FILE.py:Class'")
        return _predictor_class(
            load_module_file(directory, code), f"{manifest_path} 'predictor' {code!r}"
        )
    model_format = manifest.get("format")
    if not isinstance(model_format, str) or not model_format:
        raise InvalidInputError(
            f"{manifest_path} names no predictor: give it a 'format' (a registered predictor: "
            f"{', '.join(PREDICTORS.known_names())}) or a 'predictor' ('FILE.py:Class', a "
            "module file in the model directory)"
        )
    return _predictor_class(
        PREDICTORS.load(model_format, str(manifest_path)), f"the predictor format {model_format!r}"
    )


def import_target(target: str, what: str) -> object:
    """``package.module:attribute``, imported (:class:`ConfigError`-like errors name it)."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute.isidentifier():
        raise InvalidInputError(f"{what} must be 'package.module:Class', not {target!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # user code: any error while importing it
        raise InvalidInputError(
            f"{what}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise InvalidInputError(
            f"{what}: module {module_name!r} has no attribute {attribute!r}"
        ) from None


def load_module_file(directory: Path, target: str) -> object:
    """The attribute named by ``FILE.py:attribute``, a module file inside ``directory``."""
    file_name, colon, attribute = target.partition(":")
    relative = PurePosixPath(file_name)
    what = f"{directory / MANIFEST} 'predictor' {target!r}"
    if (
        not colon
        or not attribute.isidentifier()
        or relative.suffix != ".py"
        or relative.is_absolute()
        or ".." in relative.parts
    ):
        raise InvalidInputError(
            f"{what} must be 'FILE.py:Class', FILE a path inside the model directory"
        )
    path = directory / relative
    if not path.is_file():
        raise InvalidInputError(f"{what}: {relative} is not in the model directory")
    source = path.read_bytes()
    module_name = USER_MODULE_PREFIX + hashlib.sha256(source).hexdigest()[:16]
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise InvalidInputError(f"{what}: {relative} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickle look classes up here
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            del sys.modules[module_name]
            if not isinstance(exc, Exception):
                raise
            raise InvalidInputError(
                f"{what}: importing {relative} failed: {type(exc).__name__}: {exc}"
            ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise InvalidInputError(f"{what}: {relative} defines no {attribute!r}") from None


def _predictor_class(found: object, what: str) -> type[Predictor]:
    if not (isinstance(found, type) and issubclass(found, Predictor)):
        raise InvalidInputError(f"{what} is {found!r}, not a driftloop.Predictor subclass")
    return found


def check_predictor(predictor: Predictor, what: str) -> None:
    """Score the predictor's example input and check the answer against its declared output
    kind; :class:`InvalidInputError` naming ``what`` when they do not match (an exception of
    the model's own code is wrapped the same way)."""
    if not isinstance(predictor.inputs, InputSchema):
        raise InvalidInputError(f"{what}: inputs is {predictor.inputs!r}, not an InputSchema")
    if predictor.output not in OUTPUT_KINDS:
        raise InvalidInputError(
            f"{what} declares output {predictor.output!r}; known output "
            f"kinds: {', '.join(OUTPUT_KINDS)}"
        )
    labels = predictor.labels
    if predictor.output == "classification" and (
        len(labels) < 2
        or len(set(labels)) != len(labels)
        or not all(isinstance(label, str) for label in labels)
    ):
        raise InvalidInputError(
            f"{what}: a classifier needs two or more distinct string labels, not {list(labels)}"
        )
    try:
        import numpy as np

        answer = np.asarray(predictor.predict([predictor.example()]), dtype=np.float64)
    except DriftloopError as exc:
        raise InvalidInputError(f"{what}: predicting its example failed: {exc.message}") from exc
    except Exception as exc:  # a broken model can fail in any library
        raise InvalidInputError(
            f"{what}: predicting its example failed: {type(exc).__name__}: {exc}"
        ) from exc
    check_answer(predictor, answer, 1, what)


def check_answer(
    predictor: Predictor,
    answer: np.ndarray[Any, Any],
    size: int,
    what: str,
    error: type[DriftloopError] = InvalidInputError,
) -> None:
    """``answer`` is what :meth:`Predictor.predict` must return for ``size`` inputs; else
    ``error`` (:class:`InvalidInputError` at registration, :class:`WrongAnswerError` when
    serving)."""
    if predictor.output == "classification":
        expected = f"({size}, {len(predictor.labels)}): one probability per label"
        fits = answer.shape == (size, len(predictor.labels))
    else:
        expected = f"({size},) or ({size}, 3): a value, or [value, lower, upper]"
        fits = answer.shape in ((size,), (size, 3))
    if not fits:
        raise error(
            f"{what} declares a {predictor.output} output but answered shape {answer.shape} "
            f"for {size} input(s); expected {expected}"
        )
    import numpy as np

    if not np.isfinite(answer).all():
        raise error(f"{what} answered a value that is not finite")
    if predictor.output == "classification":
        sums = answer.sum(axis=1)
        if (
            not all(math.isclose(total, 1.0, abs_tol=1e-3) for total in sums.tolist())
            or (answer < 0).any()
        ):
            raise error(
                f"{what} declares a classification output but its rows are not probabilities "
                f"(each must be >= 0 and sum to 1; got sums {sums.tolist()[:3]})"
            )
