"""chatterm's byte-level BPE tokenizer (used with ctransformers) must give exactly
llama.cpp's token ids, and decode back exactly as llama.cpp does."""

from __future__ import annotations

import pytest

from chatterm.engines.ctransformers.bpe_tokenizer import BPETokenizer

CORPUS = [
    "Hello world", "What is the capital of France?",
    "你好，世界！今天天气怎么样？我想学习人工智能。", "日本語のテキストと한국어 텍스트",
    "def f(x):\n    return x**2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }", "SELECT * FROM t WHERE id=42;",
    "1234567890 3.14159 1,000,000 -7e10 0x1F", "١٢٣ ४५६ Ⅻ ½ ²",
    "   leading  and    trailing   ", "\t\ttabs\n\n\nnewlines \r\n  \n", "   ", "", " ",
    "emoji 😀👍🏽🇫🇷 ok 👨‍👩‍👧", "I'm we've they'll it's DON'T 'quoted'",
    "naïve café Ünïcödé — “quotes” ‘single’ …", "a\u00a0b\u2003c\u3000d\u200be",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "text<|endoftext|>more",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010FFFD \u0301combining", "```python\nprint('hi')\n```",
]


@pytest.fixture(scope="module")
def ours(default_gguf):
    return BPETokenizer.from_gguf(default_gguf)


@pytest.fixture(scope="module")
def llama(default_model_path):
    import llama_cpp

    return llama_cpp.Llama(str(default_model_path), vocab_only=True, verbose=False)


@pytest.mark.parametrize("special", [True, False])
@pytest.mark.parametrize("text", CORPUS)
def test_ids_equal_llama_cpp(ours, llama, text, special):
    expected = llama.tokenize(text.encode(), add_bos=False, special=special)
    assert ours.encode(text, special=special) == expected


def test_long_mixed_text_equal_llama_cpp(ours, llama):
    text = "\n".join(CORPUS) * 20
    assert ours.encode(text) == llama.tokenize(text.encode(), add_bos=False, special=True)


@pytest.mark.parametrize("text", CORPUS)
def test_decode_equals_llama_cpp(ours, llama, text):
    ids = llama.tokenize(text.encode(), add_bos=False, special=True)
    for special in (True, False):
        assert ours.decode(ids, special=special) == llama.detokenize(ids, special=special).decode("utf-8", "replace")


def test_round_trip_is_lossless(ours):
    for text in CORPUS:
        assert ours.decode(ours.encode(text, special=False)) == text


def test_special_tokens_only_when_asked(ours):
    assert ours.encode("<|im_end|>", special=True) == [2]
    assert 2 not in ours.encode("<|im_end|>", special=False)
