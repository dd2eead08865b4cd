"""Backend registries: unknown schemes list the known ones; missing extras print the install."""

from __future__ import annotations

import pytest

from driftloop.backends import BackendFamily, require_module, url_scheme
from driftloop.database import Database
from driftloop.database.core import STORES
from driftloop.errors import MissingExtraError, UnknownBackendError


def test_unknown_store_scheme_lists_known() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        Database("mysql://localhost/db")
    message = str(caught.value)
    assert "unknown store scheme 'mysql'" in message
    for scheme in STORES.known_schemes():
        assert f"{scheme}://" in message


def test_not_a_url() -> None:
    with pytest.raises(UnknownBackendError, match="not a URL"):
        url_scheme("just-a-path")


def test_missing_extra_prints_exact_install_line() -> None:
    family: BackendFamily[object] = BackendFamily("transport")
    family.register(
        "kafka", "driftloop.backends:url_scheme", requires=("no_such_module_xyz",), extra="kafka"
    )
    with pytest.raises(MissingExtraError) as caught:
        family.create("kafka://localhost:9092/topic")
    assert "pip install 'driftloop[kafka]'" in str(caught.value)
    with pytest.raises(MissingExtraError, match=r"driftloop\[s3\]"):
        require_module("no_such_module_xyz", "s3")


def test_factory_receives_url() -> None:
    family: BackendFamily[str] = BackendFamily("demo")
    family.register("x", "driftloop.backends:url_scheme")
    assert family.create("x://anything") == "x"


def test_sqlite_store_migrates_idempotently(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    database = Database("sqlite:///nested/dir/store.db", base_dir=tmp_path)
    assert database.migrate() == database.migrate()
    assert (tmp_path / "nested/dir/store.db").is_file()
    database.dispose()
