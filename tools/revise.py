"""The SSPO revision step: new candidate prompts from the history of attempts and the critics' feedback."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from prompts.loader import load_template
from tools import guards
from tools.llm import ChatLLM, Decoding
from tools.stage1 import Rejection


class Attempt(BaseModel):
    """An earlier candidate as the reviser sees it."""

    prompt: str
    scores: dict[str, float] = Field(default_factory=dict)
    feedback: str = ""


def describe_meta(meta: Mapping[str, object] | None, max_chars: int = 400) -> str:
    """One line of a prompt's metadata for the LLM: `key: value; ...`, lists joined, cut at `max_chars`."""
    parts = []
    for key, value in sorted((meta or {}).items()):
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if isinstance(value, str | int | float) and str(value).strip():
            parts.append(f"{key.replace('_', ' ')}: {str(value).strip()}")
    line = "; ".join(parts)
    return line if len(line) <= max_chars else line[: max_chars - 3].rstrip() + "..."


class PromptReviser:
    """Asks the LLM for `k` new prompts; each must pass the guards against the original prompt and be new."""

    template = "revise_prompt"

    def __init__(self, llm: ChatLLM, decoding: Decoding | None = None, max_words: int = 80, attempts: int = 2) -> None:
        self.llm = llm
        self.decoding = decoding or Decoding(
            max_new_tokens=72, temperature=0.7, repetition_penalty=1.0, no_repeat_ngram_size=0
        )
        self.max_words = max_words
        self.attempts = attempts

    def revise(
        self,
        original: str,
        history: list[Attempt],
        k: int,
        seed: int,
        instructions: str = "",
        meta: Mapping[str, object] | None = None,
    ) -> tuple[list[str], list[Rejection]]:
        """Up to `k` new, guarded candidates (fewer if the model keeps failing) and the rejected answers.

        Args:
            original: the user's prompt; every new candidate keeps its content words.
            history: earlier attempts, oldest first; the last few go into the instruction.
            k: candidates wanted.
            seed: base seed; sample i uses seed * 100 + i.
            instructions: extra guidance, e.g. from a person or the llm controller.
            meta: what the prompt file says about the prompt (a physical law, a benchmark dimension), shown to the
                model as what the video must show.
        """
        lines = "\n".join(
            f'{i}. "{a.prompt}" | '
            + ", ".join(f"{name} {score:.2f}" for name, score in sorted(a.scores.items()))
            + (f" | {a.feedback}" if a.feedback else "")
            for i, a in enumerate(history[-4:], start=1)
        )
        messages = load_template(self.template).messages(
            original=original,
            history=lines or "(none yet)",
            instructions=f"Also: {instructions}\n" if instructions else "",
            task=f"The video must show: {task}\n" if (task := describe_meta(meta)) else "",
        )
        seen = {guards.clean(a.prompt).lower() for a in history}
        found: list[str] = []
        rejected: list[Rejection] = []
        for sample in range(k * self.attempts):
            if len(found) == k:
                break
            sample_seed = seed * 100 + sample
            out = self.llm.generate(messages, sample_seed, self.decoding)
            text = guards.clean(out.text)
            if out.new_tokens >= self.decoding.max_new_tokens:
                text = guards.trim_unfinished(text)
            reason = guards.check(original, text, self.max_words)
            if reason is None and text.lower() in seen:
                reason = "repeats an earlier candidate"
            if reason:
                rejected.append(
                    Rejection(
                        step=self.template,
                        text=text,
                        reason=reason,
                        seed=sample_seed,
                        temperature=self.decoding.temperature,
                    )
                )
                continue
            seen.add(text.lower())
            found.append(text)
        return found, rejected

    @property
    def template_id(self) -> str:
        """`name@version` of the instruction template."""
        return load_template(self.template).id
