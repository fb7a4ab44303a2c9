from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The offline datasets, built once per session by the first script that needs them."""
    return tmp_path_factory.mktemp("hf-vq-data")
