"""The model catalogue: the packaged models.toml and the user's own."""

from __future__ import annotations

import re

import pytest

from chatterm import paths
from chatterm.errors import ConfigError, ModelFileError
from chatterm.models.catalog import Catalog


def test_packaged_catalogue_is_valid_and_has_the_families():
    cat = Catalog.load()
    assert cat.default == "smollm2"
    for name in ("smollm2", "tinyllama", "llama2-7b-chat", "mistral-7b-instruct", "vicuna-7b",
                 "llama3.2-3b-instruct", "qwen2.5-1.5b-instruct", "phi3-mini", "gpt4all-j"):
        assert name in cat.models
    assert cat.models["gpt4all-j"].engines == ["ctransformers"]
    assert cat.models["gpt4all-j"].model_type == "gptj"


def test_default_model_resolves_to_the_packaged_file(default_model_path):
    assert Catalog.load().find(None).model_path() == default_model_path


def test_hub_entry_not_downloaded_says_how_to_get_it():
    with pytest.raises(ModelFileError, match="not downloaded yet: chatterm pull tinyllama .from TheBloke/TinyLlama"):
        Catalog.load().find("tinyllama").model_path()


def test_catalogue_entries_to_pull_are_pinned_and_cover_the_families():
    cat = Catalog.load()
    for name in ("qwen2.5-0.5b", "qwen2.5-1.5b-instruct", "qwen2.5-7b", "qwen3-1.7b", "qwen3-4b",
                 "llama3.2-1b", "llama3.2-3b-instruct", "gemma3-1b", "gemma2-2b", "phi4-mini",
                 "deepseek-r1-qwen-7b"):
        spec = cat.models[name]
        assert spec.downloadable and len(spec.sha256) == 1 and spec.size and spec.quant == "Q4_K_M"
    chinese = {n for n, s in cat.models.items() if "zh" in s.languages}
    assert {"qwen2.5-1.5b-instruct", "qwen3-4b", "deepseek-r1-qwen-7b"} <= chinese
    assert "llama3.2-1b" not in chinese


@pytest.mark.parametrize("entry,problem", [
    ('sha256 = "abc"', "sha256 must be 64 lower-case hex digits"),
    ('file = "m-00001-of-00002.gguf"\nsha256 = "' + "a" * 64 + '"', "one digest for each of the 2 parts"),
    ("size = -5", "size must be an integer of bytes from 1 to"),
    ("size = " + "9" * 400, "size must be an integer of bytes from 1 to 1,125,899,906,842,624, not 99999999… (400 digits)"),
    ("languages = [1]", "languages must be a list"),
])
def test_bad_model_facts_are_one_line(user_models_toml, entry, problem):
    file = "" if "file =" in entry else 'file = "m.gguf"\n'
    user_models_toml(f'[models.x]\nhf_repo = "o/r"\n{file}{entry}\n')
    with pytest.raises(ConfigError, match=re.escape(problem)):
        Catalog.load()


def test_user_file_adds_and_replaces_entries(tmp_path, user_models_toml):
    model = tmp_path / "mine.gguf"
    user_models_toml(f'default = "mine"\n[models.mine]\npath = "{model}"\ntemplate = "llama3"\n'
               '[models.smollm2]\npath = "other.gguf"\n')
    cat = Catalog.load()
    assert cat.default == "mine"
    assert cat.find(None).model_path() == model
    assert cat.models["smollm2"].source == "path"  # replaced whole
    assert cat.models["smollm2"].model_path() == paths.config_dir() / "other.gguf"


@pytest.mark.parametrize("body, problem", [
    ('[models.x]\nfile = "a.gguf"\n', "exactly one of path, package, hf_repo"),
    ('[models.x]\npath = "a"\nengines = ["vllm"]\n', "engines"),
    ('[models.x]\npath = "a"\ntemplate = "nope"\n', "template 'nope'"),
    ('[models.x]\npath = "a"\ncontext_length = "big"\n', "context_length must be an integer of tokens from 16"),
    # every number range-checked, named with its file and key (issue 39)
    ('[models.x]\npath = "a"\ncontext_length = ' + "9" * 30 + "\n", "context_length must be an integer of tokens"),
    ('[models.x]\npath = "a"\nadapters = [{path = "l.gguf", scale = ' + "9" * 400 + "}]\n",
     "adapter l.gguf: scale must be a number from -100 to 100, not 99999999… (400 digits)"),
    ('[models.x]\npath = "a"\nadapters = [{path = "l.gguf", scale = nan}]\n', "scale must be a number from -100"),
    ('[models.x]\nbase_url = "http://h"\ntimeout = inf\n', "timeout must be a number of seconds from 0.001"),
    ('[models.x]\npath = "a"\nsampling = { temperature = nan }\n', "sampling.temperature = nan is out of range"),
    ('[models.x]\npath = "a"\nsampling = { repeat_penalty = inf }\n', "sampling.repeat_penalty = inf is out of range"),
    ('[models.x]\npath = "a"\nsampling = { max_tokens = ' + "9" * 400 + " }\n",
     "sampling.max_tokens = 99999999… (400 digits) is out of range (1-2,147,483,647)"),
    ('[models.x]\npath = "a"\nsampling = { temprature = 1 }\n', "unknown sampling setting 'temprature'"),
    ('[models.x]\npath = "a"\nsampling = { temperature = -1 }\n', "sampling.temperature = -1 is out of range (0-100)"),
    ('[models.x]\npath = "a"\nsampling = { top_p = 1.5 }\n', "sampling.top_p = 1.5 is out of range (0-1)"),
    ('[models.x]\npath = "a"\nsampling = { max_tokens = 0 }\n', "sampling.max_tokens = 0 is out of range"),
    ('[models.x]\npath = "a"\nsampling = { top_k = 2.5 }\n', "sampling.top_k must be an integer"),
    ('[models.x]\npath = "a"\nsampling = { seed = "x" }\n', "sampling.seed must be an integer"),
    ('[models.x]\npath = "a"\ncolour = 1\n', "unknown key 'colour'"),
    ('[models.x]\npath = "a"\nstop = [1]\n', "stop must be a list"),
    ('[models.x\npath = "a"\n', "invalid TOML"),
])
def test_invalid_user_file_names_file_entry_and_problem(body, problem, user_models_toml):
    path = user_models_toml(body)
    with pytest.raises(ConfigError) as err:
        Catalog.load()
    message = str(err.value)
    assert str(path) in message and problem in message
    if "TOML" not in problem:
        assert "[models.x]" in message


def test_path_argument_is_an_ad_hoc_model(tmp_path):
    spec = Catalog.load().find(str(tmp_path / "some.gguf"))
    assert spec.source == "path" and spec.engines == ["llama.cpp", "ctransformers"]
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        Catalog.load().find("nope")
