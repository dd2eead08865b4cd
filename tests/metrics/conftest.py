"""The metric store's tests run on SQLite and, with the ``postgres`` marker, on PostgreSQL."""

from __future__ import annotations

import pytest

from servicekit import BOTH_BACKENDS, migrated_database

database = pytest.fixture(params=BOTH_BACKENDS)(migrated_database)
