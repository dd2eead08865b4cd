"""What the parts of the SQL metric store share: the time units of the rollup tables, how long
``IN (...)`` lists may grow, result rows as numpy arrays and the backend error boundary."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.exc import OperationalError

from driftloop.database import Database
from driftloop.errors import BackendUnavailableError

MINUTE = 60
HOUR = 3600
PER_HOUR = HOUR // MINUTE
CHUNK = 900
"""Series ids (or point ids) per ``IN (...)`` list."""
WRITE_ATTEMPTS = 4
"""Tries of a write that loses a race on a unique key to a concurrent writer."""

T = TypeVar("T")
N = TypeVar("N", bound=np.generic)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]


def matrix(rows: Sequence[Sequence[Any]], columns: int, dtype: type[N]) -> NDArray[N]:
    """Result rows as a 2-d array (numpy would probe every SQLAlchemy ``Row`` for the array
    protocols, which costs more than reading the values)."""
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=len(rows) * columns)
    return flat.reshape(len(rows), columns)


@contextmanager
def backend_errors(database: Database) -> Iterator[None]:
    """An unreachable or failing database, as :class:`BackendUnavailableError`."""
    try:
        yield
    except OperationalError as exc:
        raise BackendUnavailableError(f"metric store {database.safe_url}: {exc.orig}") from exc
