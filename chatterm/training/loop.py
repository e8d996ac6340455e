"""Training a LoRA adapter on the base weights of the model's own GGUF file:
transformers reads and dequantizes it (float32), PEFT adds the low-rank pairs to every
linear layer of the blocks, and a plain loop trains them one record at a time, on the
GPU where torch sees one, else on the CPU.

- sft: cross-entropy on the replies' tokens (`examples.Example.learn`).
- dpo: the sigmoid loss of Rafailov et al. (TRL's default): -log σ(β·((log π(c) -
  log π_ref(c)) - (log π(r) - log π_ref(r)))), the reference being the base model
  (the adapter switched off), its log-probabilities computed once before training.

After every finished step the adapter's values are copied aside: Ctrl-C (or any
failure) after step k leaves step k's adapter, whole, to be written."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import peft
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
import transformers

from chatterm.errors import ChattermError, ModelFileError
from chatterm.training.examples import Example, Pair

# The linear layers of a llama/qwen2 block: all of them, as TRL's `all-linear` picks.
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Settings:
    epochs: int = 3
    rank: int = 8
    alpha: int = 16
    lr: float = 2e-4
    beta: float = 0.1  # dpo: how far the adapter may move from the base
    seed: int = 0


@dataclass
class Step:
    """What the progress bar shows after each step."""

    done: int
    total: int
    mean: float  # the loss, mean of the last epoch's worth of steps
    seconds: float  # since training began


@dataclass
class Outcome:
    steps: int
    total: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    state: dict[str, np.ndarray] = field(default_factory=dict)  # the adapter after the last finished step
    stopped: bool = False  # Ctrl-C


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _quiet() -> Any:
    """The libraries' own progress bars and deprecation notes kept off the terminal
    (chatterm shows its own progress; failures arrive as exceptions)."""
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _each_once() -> Any:
    """transformers' GGUF loading parses the file's metadata twice with gguf-py (every
    vocabulary string one numpy slice: seconds for a 150k vocabulary) and builds the
    tensor name map once per tensor; while it loads, each is made once and reused.
    It imports both from the `gguf` package when called, so the package's names are
    what it finds; they are put back afterwards."""
    package: Any = gguf
    reader, name_map = package.GGUFReader, package.get_tensor_name_map
    package.GGUFReader = functools.lru_cache(maxsize=2)(reader)
    package.get_tensor_name_map = functools.lru_cache(maxsize=4)(name_map)
    try:
        yield
    finally:
        package.GGUFReader, package.get_tensor_name_map = reader, name_map


def load(path: Path, where: str) -> Any:
    """The base model of the GGUF file `path`, dequantized, on `where`."""
    try:
        with _quiet(), _each_once():
            model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                                      dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as e:
        raise ModelFileError(f"transformers cannot read {path.name} for training: {' '.join(str(e).split())}") \
            from None
    model.config.use_cache = False
    move: Any = model.to  # transformers' stubs know a dtype, not the device name it takes too
    return move(where)


def with_adapter(model: Any, settings: Settings) -> Any:
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0,
                             target_modules=list(TARGETS), task_type="CAUSAL_LM")
    with _quiet():
        return peft.get_peft_model(model, config)


def train(model: Any, data: list[Example] | list[Pair], fmt: str, settings: Settings,
          report: Callable[[Step], None]) -> Outcome:
    """Train the adapter of `model` (`with_adapter`) on `data`; Ctrl-C ends it early
    with the last finished step's adapter in the outcome."""
    torch.manual_seed(settings.seed)
    where = next(model.parameters()).device
    order = random.Random(settings.seed)
    total, window = settings.epochs * len(data), len(data)
    outcome = Outcome(0, total, 0.0)
    recent = 0.0  # the sum of the last `window` losses
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total))
    start = time.monotonic()
    try:
        reference = _reference(model, data, where) if fmt == "dpo" else []  # type: ignore[arg-type]
        model.train()
        for _ in range(settings.epochs):
            indices = list(range(len(data)))
            order.shuffle(indices)
            for i in indices:
                if fmt == "sft":
                    loss = _sft_loss(model, data[i], where)  # type: ignore[arg-type]
                else:
                    loss = _dpo_loss(model, data[i], reference[i], settings.beta, where)  # type: ignore[arg-type]
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise ChattermError(f"training failed at step {outcome.steps + 1}: the loss became {value} "
                                        "(a lower --lr may help); nothing was written")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                schedule.step()
                outcome.state = _state(model)  # this step's adapter, whole
                outcome.losses.append(value)
                outcome.steps += 1
                recent += value - (outcome.losses[-window - 1] if outcome.steps > window else 0.0)
                report(Step(outcome.steps, total, recent / min(outcome.steps, window), time.monotonic() - start))
    except KeyboardInterrupt:
        outcome.stopped = True
    outcome.seconds = time.monotonic() - start
    return outcome


def _schedule(total: int) -> Callable[[int], float]:
    """A short linear warm-up, then linear decay (to a tenth at the last step)."""
    warm = max(1, min(10, total // 10))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 1.0 - 0.9 * (step - warm) / max(1, total - warm)

    return factor


def _state(model: Any) -> dict[str, np.ndarray]:
    """PEFT's names and a copy of the adapter's values."""
    with _quiet():  # PEFT notes that the GGUF's folder has no config.json
        state = peft.get_peft_model_state_dict(model)
    return {name: value.detach().to("cpu", torch.float32).numpy().copy() for name, value in state.items()}


def _sft_loss(model: Any, example: Example, where: Any) -> Any:
    ids = torch.tensor([example.ids], device=where)
    labels = torch.tensor([[t if learn else -100 for t, learn in zip(example.ids, example.learn)]], device=where)
    return model(input_ids=ids, labels=labels).loss


def _log_p(model: Any, prompt: list[int], reply: list[int], where: Any) -> Any:
    """log π(reply | prompt): the sum over the reply's tokens."""
    ids = torch.tensor([prompt + reply], device=where)
    logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
    target = torch.tensor(reply, device=where)[:, None]
    return torch.log_softmax(logits, -1).gather(-1, target).sum()


def _reference(model: Any, pairs: list[Pair], where: Any) -> list[tuple[float, float]]:
    model.eval()
    with torch.no_grad(), model.disable_adapter():
        return [(float(_log_p(model, p.prompt, p.chosen, where)), float(_log_p(model, p.prompt, p.rejected, where)))
                for p in pairs]


def _dpo_loss(model: Any, pair: Pair, reference: tuple[float, float], beta: float, where: Any) -> Any:
    chosen = _log_p(model, pair.prompt, pair.chosen, where) - reference[0]
    rejected = _log_p(model, pair.prompt, pair.rejected, where) - reference[1]
    return -F.logsigmoid(beta * (chosen - rejected))
