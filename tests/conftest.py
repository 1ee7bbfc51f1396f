import pytest

from observe_r1.models import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL built once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    """A tiny Qwen3-VL (deepstack mergers on both vision blocks) built once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"), size="tiny", seed=0, family="qwen3-vl")


@pytest.fixture(params=["qwen2.5-vl", "qwen3-vl"])
def family_model_dir(request):
    """The tiny model of each family: tests that use it run once per family (ids: qwen2.5-vl, qwen3-vl)."""
    return request.getfixturevalue("tiny_model_dir" if request.param == "qwen2.5-vl" else "tiny_qwen3_dir")
