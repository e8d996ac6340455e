"""ctransformers: GGML families natively, and modern GGUF llama files through a
compatible copy (`chatterm.engines.ctransformers.compat`) with chatterm's own tokenizer.

ctransformers logs nothing and aborts on some malformed files: GGUF files are validated
by `chatterm.models.gguf` before the library sees them, and GGML files, which have no structure
to validate, are read only in the isolated worker (`chatterm.engines.isolated`), where a
crash is one line.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from chatterm.engines.base import SAFE_SETTINGS, Decoding, Engine, LoadOptions, context_size, never
from chatterm.engines.ctransformers import compat
from chatterm.engines.ctransformers.bpe_tokenizer import CONTROL, USER_DEFINED, BPETokenizer, partition, special_tokens
from chatterm.engines.libraries import import_bare
from chatterm.errors import EngineError
from chatterm.models import gguf, hardware

GGML_MODEL_TYPES = ("gpt2", "gptj", "gpt_neox", "dolly-v2", "falcon", "llama", "mpt",
                    "replit", "starcoder", "gpt_bigcode")
EVAL_CHUNK = 64  # prompt tokens per native call: Ctrl-C is checked between calls
LAST_N_TOKENS = 64  # repeat-penalty window, as llama.cpp's default


def _llm_module() -> Any:
    llm_module = import_bare("ctransformers", "llm")
    if llm_module is None:
        raise EngineError("ctransformers is not installed; pip install ctransformers")
    return llm_module


def cpu_library() -> str:
    """The bundled build for this CPU; ctransformers' own detection runs py-cpuinfo,
    which costs about a second."""
    flags = hardware.cpu_flags()
    if "avx2" in flags:
        return "avx2"
    return "avx" if {"avx", "f16c"} <= flags else "basic"


class CTransformersEngine(Engine):
    name = "ctransformers"

    def __init__(self, options: LoadOptions):
        llm_module = _llm_module()
        path = Path(options.path)
        kind = gguf.sniff(path)
        self.tokenizer: BPETokenizer | None = None
        self._specials: list[tuple[str, int]] = []
        n_layers = 0
        if kind == "gguf":
            model = options.parsed or gguf.read(path)
            load_path = compat.compat_path(model)  # checks architecture and quant types
            md = model.metadata
            tokens, types = list(md["tokenizer.ggml.tokens"]), md.get("tokenizer.ggml.token_type") or []
            if md.get("tokenizer.ggml.model") == "gpt2":
                self.tokenizer = BPETokenizer.from_gguf(model)
            else:  # SPM vocabulary: ctransformers tokenizes text, chatterm splits specials
                self._specials = special_tokens(tokens, types, (CONTROL, USER_DEFINED))
            self.markup = {"control": [t for t, _ in special_tokens(tokens, types, (CONTROL,))],
                           "user": [t for t, _ in special_tokens(tokens, types, (USER_DEFINED,))]}
            self.chat_template = model.chat_template
            ends = (md.get(f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom"))
            self._eog = {t for t in ends if isinstance(t, int)}
            bos = md.get("tokenizer.ggml.bos_token_id")
            self.bos_id = bos if isinstance(bos, int) else None
            self.add_bos = bool(md.get("tokenizer.ggml.add_bos_token", self.tokenizer is None))
            model_type: str | None = "gguf"
            n_layers = model.block_count
            trained_ctx = model.context_length
        else:
            model_type = options.model_type
            if model_type not in GGML_MODEL_TYPES:
                raise EngineError(f"{path}: a GGML file needs its model type (model_type in models.toml: "
                                  f"{', '.join(GGML_MODEL_TYPES)})")
            load_path, self.chat_template, self.bos_id, self.add_bos = path, None, None, False
            self._eog = set()
            trained_ctx = None
        gpu, note = hardware.ctransformers_gpu_layers(0 if options.safe else options.gpu_layers, n_layers,
                                                     options.fitted_layers)
        self.notes = [n for n in (note, SAFE_SETTINGS if options.safe else None) if n]
        n_ctx = context_size(options.n_ctx, trained_ctx)
        config = llm_module.Config(context_length=n_ctx, gpu_layers=gpu, threads=options.threads,
                                   batch_size=EVAL_CHUNK)
        try:
            self.llm = llm_module.LLM(str(load_path), model_type, config=config,
                                      lib=None if gpu else cpu_library())
        except (RuntimeError, ValueError, OSError) as e:
            raise EngineError(f"ctransformers could not load {path}: {str(e).splitlines()[0]}") from None
        self.threads = options.threads
        self.n_ctx = self.llm.context_length if self.llm.context_length > 0 else n_ctx
        self.device = f"CUDA ({min(gpu, n_layers or gpu)}/{n_layers or '?'} layers)" if gpu else "CPU"
        if not self._eog:
            self._eog = {self.llm.eos_token_id}
        self.bos_text = self._text(self.bos_id)
        eos = min(self._eog)
        self.eos_text = self._text(eos)
        self._pieces: dict[int, bytes] = {}

    def _text(self, token: int | None) -> str:
        return "" if token is None else self.piece(token, special=True).decode("utf-8", "replace")

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        if self.tokenizer is not None:
            return self.tokenizer.encode(text, special=special)
        ids: list[int] = []
        for frag in partition(text, self._specials if special else []):
            ids.extend([frag] if isinstance(frag, int) else self.llm.tokenize(frag, add_bos_token=False))
        return ids

    def piece(self, token: int, *, special: bool = False) -> bytes:
        if self.tokenizer is not None:
            return self.tokenizer.piece(token, special=special)
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self.llm.ctransformers_llm_detokenize(token) or b""
        if not special and token in self._eog:
            return b""
        return cached

    def is_eog(self, token: int) -> bool:
        return token in self._eog or self.llm.is_eos_token(token)

    def sample(self, prompt: Sequence[int], sampling: Decoding,
               cancelled: Callable[[], bool] = never) -> Iterator[int]:
        llm = self.llm
        pending = list(llm.prepare_inputs_for_generation(list(prompt), reset=True))
        # ctransformers seeds a fresh mt19937 on every sample call (with time() when the
        # seed is -1, the same for a whole second), so vary an explicit seed per token.
        seed = sampling.seed if sampling.seed is not None else random.randrange(1 << 30)
        greedy = sampling.temperature <= 0
        top_k = 1 if greedy else sampling.top_k
        temperature = 1.0 if greedy else sampling.temperature
        step = 0
        for i in range(0, len(pending), EVAL_CHUNK):
            if cancelled():
                return
            llm.eval(pending[i:i + EVAL_CHUNK], batch_size=EVAL_CHUNK, threads=self.threads)
        while True:
            token = llm.sample(top_k=top_k, top_p=sampling.top_p, temperature=temperature,
                               repetition_penalty=sampling.repeat_penalty,
                               last_n_tokens=LAST_N_TOKENS, seed=(seed + step) & 0x7FFFFFFF)
            step += 1
            yield token
            llm.eval([token], batch_size=EVAL_CHUNK, threads=self.threads)

    def reset(self) -> None:
        # LLM.reset() does this too, with a deprecation warning on every call.
        self.llm._context.clear()

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.ctransformers_llm_delete()
            llm._llm = None
            self.llm = None

