"""The fast layer: in-process tests with no server, no display, no subprocess (`make test-fast`,
or `pytest -m fast`); every test under tests/fast is marked ``fast``."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fast)
