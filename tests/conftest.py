import pytest

from observe_r1.models import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL built once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), size="tiny", seed=0)
