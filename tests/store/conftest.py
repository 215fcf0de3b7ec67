"""What the store's tests share: a fresh store file and a folder where units leave marks."""

import pytest


@pytest.fixture
def marks(tmp_path):
    """A folder where a unit leaves one file per execution (``test_reuse.counting``)."""
    path = tmp_path / "marks"
    path.mkdir()
    return str(path)


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "runs.db")
