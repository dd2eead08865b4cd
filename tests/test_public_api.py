"""The curated public API: ``driftloop.__all__`` is sorted and complete."""

from __future__ import annotations

import types

import driftloop


def test_all_is_sorted() -> None:
    assert driftloop.__all__ == sorted(driftloop.__all__)


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(driftloop).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(driftloop.__all__)


def test_every_name_in_all_exists() -> None:
    for name in driftloop.__all__:
        assert hasattr(driftloop, name), name
