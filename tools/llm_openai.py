"""An LLM backend for any OpenAI-compatible chat endpoint, vLLM first: `--llm openai:URL#MODEL`.

The `openai` client does the HTTP, the timeouts and the retries (exponential backoff on connection errors,
timeouts, 429 and 5xx); this module adds the spec, a check at start-up of what the server serves, a limit on
requests in flight, and one-line errors.
"""

from __future__ import annotations

import copy
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from pydantic import BaseModel, Field

from rapo.common import ModelError, ServiceError
from rapo.tools.llm import Decoding, Generation, per_chat

SPEC_PREFIX = "openai:"
_SPEC = re.compile(r"^openai:(https?://[^\s#/]+(?:/[^\s#]*)?)(?:#(\S+))?$")


class Endpoint(BaseModel):
    """Where the model is served: `openai:http://127.0.0.1:8000/v1#MODEL`; no model means the only one served."""

    base_url: str = Field(description="The API root, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = Field(None, description="The served model's name.")

    @classmethod
    def parse(cls, spec: str) -> Endpoint:
        """The endpoint of a spec; a ModelError that shows the expected form when it is not one."""
        match = _SPEC.match(spec.strip())
        if not match:
            raise ModelError(f"--llm {spec!r}: expected openai:http://HOST:PORT/v1[#MODEL]")
        return cls(base_url=match[1].rstrip("/"), model=match[2])


def is_endpoint_spec(spec: object) -> bool:
    """Whether an `--llm` value names a served model rather than a local folder."""
    return isinstance(spec, str) and spec.startswith(SPEC_PREFIX)


def api_key() -> str:
    """$OPENAI_API_KEY, else "EMPTY" (what a vLLM server without `--api-key` accepts)."""
    return os.environ.get("OPENAI_API_KEY") or "EMPTY"


class OpenAILLM:
    """A chat model behind an OpenAI-compatible endpoint; checked at construction, so a bad one fails at start-up.

    `adapter` names a LoRA module the server serves (vLLM: `--enable-lora --lora-modules NAME=DIR`); requests then
    ask for that name instead of the base model. Sampling: temperature, top_p, the seed and max tokens are sent;
    `repetition_penalty` goes as vLLM's extra parameter when it is not 1; `no_repeat_ngram_size` has no equivalent
    and is not sent. At most `concurrency` requests are in flight from this object, whatever the threads.

    Args:
        spec: `openai:URL[#MODEL]`.
        adapter: a served LoRA module's name, or None.
        timeout: seconds per request.
        max_retries: retries per request, with the client's exponential backoff.
        concurrency: requests in flight at most.
    """

    dtype = "server"

    def __init__(
        self,
        spec: str,
        adapter: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        concurrency: int = 8,
    ) -> None:
        from openai import OpenAI

        if concurrency < 1:
            raise ValueError(f"`concurrency` must be >= 1, got {concurrency}")
        self.endpoint = Endpoint.parse(spec)
        self.client = OpenAI(
            base_url=self.endpoint.base_url, api_key=api_key(), timeout=timeout, max_retries=max_retries
        )
        self.concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.peak_in_flight = 0
        bases, adapters = self._served()
        if self.endpoint.model is None:
            if len(bases) != 1:
                raise ModelError(f"--llm {spec}: name the model with #MODEL; the server serves {', '.join(bases)}")
            self.endpoint.model = bases[0]
        elif self.endpoint.model not in bases + adapters:
            raise ModelError(
                f"--llm {spec}: the server does not serve {self.endpoint.model!r} (it serves {', '.join(bases)})"
            )
        if adapter and adapter not in adapters:
            raise ModelError(
                f"--adapter {adapter!r}: {self.endpoint.base_url} serves no such LoRA module "
                f"({', '.join(adapters) or 'none'}; start vLLM with --enable-lora --lora-modules {adapter}=DIR)"
            )
        self.adapter = adapter
        self.model = self.endpoint.model

    @property
    def model_id(self) -> str:
        """The spec with the model resolved: `openai:URL#MODEL`."""
        return f"{SPEC_PREFIX}{self.endpoint.base_url}#{self.model}"

    @property
    def adapter_id(self) -> str | None:
        """The LoRA module's name, or None."""
        return self.adapter

    def plain(self) -> OpenAILLM:
        """This client asking the base model instead of the LoRA module (itself when there is none)."""
        if self.adapter is None:
            return self
        other = copy.copy(self)
        other.adapter = None
        return other

    def load(self) -> None:
        """Nothing to load: the server holds the model."""

    def _served(self) -> tuple[list[str], list[str]]:
        """(base model names, LoRA module names) from /models; vLLM lists a LoRA module with its base as `parent`."""
        with self._errors():
            models = self.client.with_options(max_retries=0, timeout=10.0).models.list().data
        bases = [m.id for m in models if not getattr(m, "parent", None)]
        adapters = [m.id for m in models if getattr(m, "parent", None)]
        return bases, adapters

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The client's errors as one-line ServiceErrors naming the endpoint."""
        import openai

        try:
            yield
        except openai.APIConnectionError as exc:  # includes timeouts
            raise ServiceError(f"LLM endpoint {self.endpoint.base_url} cannot be reached ({exc.message})") from None
        except openai.APIStatusError as exc:
            detail = str(exc.message).splitlines()[0][:300]
            raise ServiceError(f"LLM endpoint {self.endpoint.base_url} answered {exc.status_code}: {detail}") from None

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self._slots:
            with self._lock:
                self._in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self._in_flight -= 1

    def generate(self, messages: list[dict[str, str]], seed: int, decoding: Decoding) -> Generation:
        """Answer a chat; the same messages, seed and decoding give the same text on the same server and model."""
        extra: dict[str, object] = {}
        if decoding.repetition_penalty != 1.0:
            extra["repetition_penalty"] = decoding.repetition_penalty
        if messages and messages[-1]["role"] == "assistant":
            # A forced start of the answer (vLLM's chat extension): the reply is only what follows it.
            extra |= {"continue_final_message": True, "add_generation_prompt": False}
        started = time.perf_counter()
        with self._slot(), self._errors():
            reply = self.client.chat.completions.create(
                model=self.adapter or self.model,
                messages=messages,
                max_tokens=decoding.max_new_tokens,
                temperature=decoding.temperature,
                top_p=decoding.top_p if decoding.temperature > 0 else 1.0,
                seed=seed,
                extra_body=extra or None,
            )
        text = (reply.choices[0].message.content or "").strip() if reply.choices else ""
        tokens = reply.usage.completion_tokens if reply.usage else 0
        return Generation(text=text, new_tokens=tokens, seconds=round(time.perf_counter() - started, 3))

    def generate_many(
        self,
        conversations: Sequence[list[dict[str, str]]],
        seeds: Sequence[int],
        decoding: Decoding | Sequence[Decoding],
    ) -> list[Generation]:
        """Answer many chats with up to `concurrency` requests in flight; answers in input order.

        `decoding` is one for all, or one per chat.
        """
        decodings = per_chat(conversations, seeds, decoding)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self.generate, conversations, seeds, decodings))

    def chat_model(self, temperature: float = 0.0, seed: int = 0):  # noqa: ANN201 - langchain-openai is optional
        """The same endpoint and model as a LangChain chat model, for tool calling (the `llm` controller)."""
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            base_url=self.endpoint.base_url,
            api_key=api_key(),
            model=self.adapter or self.model,
            temperature=temperature,
            seed=seed,
            timeout=self.client.timeout,
            max_retries=self.client.max_retries,
        )
