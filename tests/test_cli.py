"""The real `chatterm` program, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import one_line_error, run


@pytest.mark.parametrize("engine", ["ctransformers", "llama.cpp"])
def test_piped_question_is_answered(engine):
    r = run("--engine", engine, "--temperature", "0", stdin=b"What is the capital of France?\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "Paris" in out and out.endswith("\n")
    assert "\x1b" not in out  # plain text to a pipe


@pytest.mark.parametrize("engine", ["ctransformers", "llama.cpp"])
def test_chinese_question(engine):
    r = run("--engine", engine, "--temperature", "0", "--max-tokens", "80", stdin="北京是哪个国家的首都？".encode())
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode("utf-8")
    assert out.strip() and "\ufffd" not in out


def test_prompt_argument_then_stdin():
    r = run("--temperature", "0", "--max-tokens", "40", "Translate to French:", stdin=b"Good morning")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


@pytest.mark.parametrize("engine", ["ctransformers", "llama.cpp"])
def test_bad_model_files_fail_cleanly(tmp_path, default_model_path, engine):
    data = default_model_path.read_bytes()
    cases = {"truncated.gguf": data[:len(data) // 2], "header.gguf": data[:3000],
             "garbage.gguf": os.urandom(100_000), "empty.gguf": b"",
             "notes.txt": b"just some text\n", "magic.gguf": b"GGUF" + os.urandom(5000)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        line = one_line_error(run("-m", str(tmp_path / name), "--engine", engine, "hi"))
        assert name in line
    assert "not found" in one_line_error(run("-m", str(tmp_path / "missing.gguf"), "--engine", engine, "hi"))


def test_unsupported_architecture_for_the_chosen_engine(tiny_qwen2):
    line = one_line_error(run("-m", str(tiny_qwen2), "--engine", "ctransformers", "hi"))
    assert "qwen2" in line and "llama.cpp" in line


def test_bad_stdin_and_prompts():
    assert "empty" in one_line_error(run(stdin=b""))
    assert "empty" in one_line_error(run(stdin=b"  \n\n "))
    assert "UTF-8" in one_line_error(run(stdin=b"caf\xe9 \xff\xfe"))
    line = one_line_error(run("--ctx", "256", stdin=("word " * 3000).encode()))
    assert "context window holds 256" in line


def test_usage_errors_exit_2():
    assert run("--gpu-layers", "lots", "hi").returncode == 2
    assert run("--engine", "vllm", "hi").returncode == 2
    assert run("--temperature", "-1", "hi").returncode == 2


def test_invalid_user_models_toml(user_models_toml):
    user_models_toml('[models.broken]\npath = 3\n')
    line = one_line_error(run("hi"))
    assert "models.toml" in line and "[models.broken]" in line and "path must be a str" in line
    user_models_toml('[models.smollm2]\npackage = "chatterm"\nfile = "x.gguf"\nsampling = { temperature = -1 }\n')
    line = one_line_error(run("hi"))
    assert "[models.smollm2]: sampling.temperature = -1 is out of range (0-100)" in line


def test_help_and_version_import_no_engine():
    code = ("import sys\nfrom chatterm.cli import main\n"
            "try:\n main(['--help'])\nexcept SystemExit:\n pass\n"
            "heavy = [m for m in ('llama_cpp', 'ctransformers', 'rich', 'prompt_toolkit', 'numpy', 'mcp', "
            "'torch', 'transformers') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out and "--gpu-layers" in out
    v = run("--version")
    assert v.returncode == 0 and b"chatterm" in v.stdout


@pytest.mark.parametrize("magic", [b"lmgg", b"tjgg"])
def test_corrupt_ggml_file_fails_cleanly(tmp_path, magic, user_models_toml):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(magic + os.urandom(300_000))
    user_models_toml(f'[models.old]\npath = "{bad}"\nengines = ["ctransformers"]\nmodel_type = "gptj"\n'
                     'template = "alpaca"\n')
    assert "bad.bin" in one_line_error(run("-m", "old", "hi"))
    # a GGML file without a model type is refused before anything loads it
    assert "model type" in one_line_error(run("-m", str(bad), "hi"))


def test_one_terminal_or_plain_decision_for_the_answer():
    styled = run("--color", "always", "--temperature", "0", "--max-tokens", "40", "Reply with a Markdown list.")
    plain = run("--temperature", "0", "--max-tokens", "40", "Reply with a Markdown list.")
    assert styled.returncode == plain.returncode == 0
    assert b"\x1b[" in styled.stdout and b"\x1b" not in plain.stdout and plain.stdout.endswith(b"\n")
