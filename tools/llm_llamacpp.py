"""The default LLM on llama.cpp: SmolLM2-135M-Instruct with its adapter merged, written once as a Q8_0 GGUF.

Why: on a 2-core CPU transformers writes about 18 tokens a second in float32, bound by reading 540 MB of weights per
token; llama.cpp reads 145 MB of Q8_0 weights per token (`bench/refine_speed.py` has the figures). Only the forward
pass moves: prompts are tokenized with the same chat template, and every step's logits go through the same
processors as transformers' `generate` (repetition penalty, no-repeat n-grams, then `row_sampler`'s seeded
Gumbel-max draw and `row_limits`' stops), so a seed means the same thing on both backends. The texts differ a
little because Q8_0 rounds the weights.

One chat is decoded at a time (`concurrency` 1): an answer never depends on what else is being answered.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from rapo.common import ModelError, rapo_home
from rapo.tools.gguf_export import FILE_TYPES
from rapo.tools.llm import (
    DEFAULT_LLM,
    ChatLLM,
    Decoding,
    Generation,
    default_llm_path,
    load_transformers,
    per_chat,
    prefilled,
    row_limits,
    row_sampler,
    shipped_gguf,
    word_boost,
)

WEIGHT_TYPES = tuple(FILE_TYPES)
"""The RAPO_LLM_DTYPE values that mean llama.cpp: the type the merged weights are written in."""

_DECODING = threading.Lock()
"""One llama.cpp context per model, decoded by one thread at a time (`rapo optimize --overlap` runs threads)."""


def llamacpp_available() -> bool:
    """Whether llama-cpp-python is installed (`scripts/install` builds it; RAPO_LLM_DTYPE=float32 works without)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def merged_gguf(adapter: Path | None, weight_type: str) -> Path:
    """The default LLM with `adapter` merged, as a GGUF in `$RAPO_HOME/models`; written on first use (about 20 s).

    Named by a hash of the shipped GGUF's size and the adapter's files, so a retrained adapter gets a new file.
    """
    source = shipped_gguf()
    digest = hashlib.sha256(f"{source.name}:{source.stat().st_size}".encode())
    if adapter is not None:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            digest.update((adapter / name).read_bytes())
    target = rapo_home() / "models" / f"{DEFAULT_LLM}-{digest.hexdigest()[:12]}.{weight_type}.gguf"
    if target.is_file():
        return target
    from rapo.tools.gguf_export import export_merged

    _, model = load_transformers(default_llm_path(), "float32", adapter)
    provenance = {"base": str(source), "adapter": str(adapter) if adapter else None, "weights": weight_type}
    return export_merged(model, source, target, weight_type, provenance)


class LlamaCppLLM:
    """`ChatLLM` for the default model (and a LoRA adapter of it) on llama.cpp. Loads on first use."""

    concurrency = 1

    def __init__(self, weight_type: str = "q8_0", adapter: str | Path | None = None, threads: int | None = None):
        if weight_type not in WEIGHT_TYPES:
            raise ModelError(f"llama.cpp weights must be one of {', '.join(WEIGHT_TYPES)}, not {weight_type!r}")
        if not llamacpp_available():
            raise ModelError("llama-cpp-python is not installed: run scripts/install, or set RAPO_LLM_DTYPE=float32")
        self.adapter = Path(adapter).expanduser() if adapter else None
        if self.adapter is not None and not (self.adapter / "adapter_config.json").is_file():
            raise ModelError(f"adapter not found: {self.adapter} is not a PEFT adapter folder (no adapter_config.json)")
        self.dtype = weight_type
        self.threads = threads or len(os.sched_getaffinity(0))
        self._plain: LlamaCppLLM | None = None
        self._state: tuple[list[int], object] | None = None  # (tokens in memory from 0, logits after them)

    @property
    def model_id(self) -> str:
        """The default model's name, as the transformers backend records it."""
        return DEFAULT_LLM

    @property
    def adapter_id(self) -> str | None:
        """The LoRA adapter folder recorded in results, or None without one."""
        return str(self.adapter) if self.adapter else None

    @cached_property
    def _loaded(self):  # noqa: ANN202 - llama_cpp and transformers are imported lazily
        import llama_cpp
        from transformers import AutoTokenizer

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its log callback prints every load line
        tokenizer = AutoTokenizer.from_pretrained(default_llm_path())
        path = merged_gguf(self.adapter, self.dtype)
        llama_cpp.llama_backend_init()
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
        if not model:
            raise ModelError(f"llama.cpp cannot load {path}: delete it to have it written again")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = 4096
        params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = self.threads
        context = llama_cpp.llama_init_from_model(model, params)
        if not context:
            raise ModelError(f"llama.cpp cannot make a context for {path}")
        vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        return tokenizer, model, context, batch, vocab, path

    def load(self) -> None:
        """Load the model now (writing its GGUF first if needed) rather than on the first `generate`."""
        with _DECODING:
            self._loaded  # noqa: B018 - the cached property loads it

    def plain(self) -> ChatLLM:
        """The base model without the adapter (itself when it has none): a second model, loaded on first use."""
        if self.adapter is None:
            return self
        if self._plain is None:
            self._plain = LlamaCppLLM(self.dtype, threads=self.threads)
        return self._plain

    def generate(self, messages: list[dict[str, str]], seed: int, decoding: Decoding) -> Generation:
        """Answer a chat; the same messages, seed and decoding give the same text (see `LocalLLM.generate`)."""
        with _DECODING:
            return self._generate_locked(messages, seed, decoding)

    def generate_many(
        self,
        conversations: Sequence[list[dict[str, str]]],
        seeds: Sequence[int],
        decoding: Decoding | Sequence[Decoding],
    ) -> list[Generation]:
        """Answer many chats one after another; answers in input order."""
        decodings = per_chat(conversations, seeds, decoding)
        return [self.generate(c, s, d) for c, s, d in zip(conversations, seeds, decodings, strict=True)]

    def _generate_locked(self, messages: list[dict[str, str]], seed: int, decoding: Decoding) -> Generation:
        import torch
        from transformers import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

        tokenizer, _, context, _, _, path = self._loaded
        started = time.perf_counter()
        forced = prefilled([messages])
        prompt = tokenizer.apply_chat_template(
            [messages], add_generation_prompt=not forced, continue_final_message=forced, return_dict=True
        )["input_ids"][0]  # fmt: skip
        if len(prompt) + decoding.max_new_tokens > 4096:
            raise ModelError(f"chat too long for {path.name}: {len(prompt)} tokens")
        # The processors transformers' generate builds for these settings, in its order, then the row sampler;
        # called directly (a LogitsProcessorList inspects every processor's signature at every token).
        processors: list = []
        if decoding.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(decoding.repetition_penalty))
        if decoding.no_repeat_ngram_size > 0:
            processors.append(NoRepeatNGramLogitsProcessor(decoding.no_repeat_ngram_size))
        if boost := word_boost(tokenizer, len(prompt), [decoding]):
            processors.append(boost)
        if decoding.temperature > 0:
            processors += row_sampler([seed], decoding.temperature, decoding.top_p)
        stops = row_limits(tokenizer, len(prompt), [decoding])
        ids = torch.tensor([prompt], dtype=torch.long)
        logits = self._prefill(messages, prompt)
        new: list[int] = []
        while len(new) < decoding.max_new_tokens:
            scores = logits
            for processor in processors:
                scores = processor(ids, scores)
            token = int(scores.argmax(dim=-1))  # the row sampler's perturbed scores: their argmax is the sample
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            if token == tokenizer.eos_token_id or bool(stops(ids, scores)[0]):
                break
            logits = self._decode([token], ids.shape[1] - 1)
        tokens = len(new)
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        return Generation(text=text, new_tokens=tokens, seconds=round(time.perf_counter() - started, 3))

    def _prefill(self, messages: list[dict[str, str]], prompt: list[int]):  # noqa: ANN202 - torch is lazy
        """The prompt's KV in llama.cpp's memory and the logits after it, reusing what the previous chat left there.

        Always computed the same way, so that an answer does not depend on what came before it: the chat's system
        turn in one decode, then the rest. A retry of the same chat (Stage 1 asks again after a guard refused an
        answer) reuses all of it; another chat with the same system turn reuses that. llama.cpp places new tokens
        right after what `llama_memory_seq_rm` keeps, so reused and fresh caches are laid out alike, and
        `tests/test_llm_llamacpp.py` checks the answers are the same either way.
        """
        import llama_cpp

        tokenizer, _, context, _, _, _ = self._loaded
        head: list[int] = []
        if messages[0]["role"] == "system":
            head = tokenizer.apply_chat_template([messages[:1]], return_dict=True)["input_ids"][0]
            if prompt[: len(head)] != head or len(head) >= len(prompt):
                head = []
        memory = llama_cpp.llama_get_memory(context)
        kept, logits = self._state or ([], None)
        self._state = None  # until the memory holds what it says
        if kept == prompt:
            llama_cpp.llama_memory_seq_rm(memory, 0, len(prompt), -1)
        else:
            if head and kept[: len(head)] == head:
                llama_cpp.llama_memory_seq_rm(memory, 0, len(head), -1)
            else:
                llama_cpp.llama_memory_clear(memory, True)
                if head:
                    self._decode(head, 0)
            logits = self._decode(prompt[len(head) :], len(head))
        self._state = (list(prompt), logits)
        return logits.clone()  # the processors write into their scores

    def _decode(self, tokens: Sequence[int], position: int):  # noqa: ANN202 - torch is imported lazily
        """Feed `tokens` at `position` onwards; the next token's logits, (1, vocab) float32."""
        import llama_cpp
        import numpy as np
        import torch

        _, _, context, batch, vocab, path = self._loaded
        last = None
        for start in range(0, len(tokens), 512):
            chunk = tokens[start : start + 512]
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = position + start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = start + i == len(tokens) - 1
            if llama_cpp.llama_decode(context, batch) != 0:
                raise ModelError(f"llama.cpp failed to decode with {path.name}")
            last = len(chunk) - 1
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(context, last), shape=(vocab,))
        return torch.from_numpy(row.copy()).unsqueeze(0)
