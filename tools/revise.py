"""The SSPO revision step: new candidate prompts from the history of attempts and the critics' feedback."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from rapo.prompts.loader import load_template
from rapo.tools import guards
from rapo.tools.llm import ChatLLM, Decoding
from rapo.tools.profiles import TargetProfile, profile
from rapo.tools.stage1 import Rejection
from rapo.tools.verifier import Verifier


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


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` is for a BPE tokenizer: one per 4 characters (English averages 4-4.5)."""
    return len(text) // 4 + 1


def attempt_line(number: int, attempt: Attempt, best: bool) -> str:
    """One attempt as the reviser reads it: number, prompt, scores, feedback, and whether it is among the best."""
    scores = ", ".join(f"{name} {score:.2f}" for name, score in sorted(attempt.scores.items()))
    return (
        f'{number}. "{attempt.prompt}" | {scores or "not scored"}'
        + (f" | {attempt.feedback}" if attempt.feedback else "")
        + (" | best so far" if best else "")
    )


def select_history(history: list[Attempt], budget_tokens: int, best: int = 2) -> list[str]:
    """The lines of the attempts the reviser sees: the `best` highest-scoring and then the latest, within a budget.

    The best attempts (by mean score) come first in the budget, then the others from the latest back, as long as
    their lines fit `budget_tokens` (estimated); the latest attempt is always shown. Lines keep their attempt numbers
    and are listed oldest first.
    """
    scored = [i for i, a in enumerate(history) if a.scores]
    top = sorted(scored, key=lambda i: (-sum(history[i].scores.values()) / len(history[i].scores), -i))[:best]
    chosen: dict[int, str] = {}
    spent = 0
    for i in [*top, *reversed(range(len(history)))]:
        if i in chosen:
            continue
        line = attempt_line(i + 1, history[i], i in top)
        if chosen and spent + estimate_tokens(line) > budget_tokens:
            continue
        chosen[i] = line
        spent += estimate_tokens(line)
    if history and len(history) - 1 not in chosen:  # the latest attempt, whatever the budget
        chosen[len(history) - 1] = attempt_line(len(history), history[-1], len(history) - 1 in top)
    return [chosen[i] for i in sorted(chosen)]


class PromptReviser:
    """Asks the LLM for `k` new prompts; each must pass the guards against the original prompt and be new.

    Args:
        llm: the model that writes the revisions.
        target: the video model's prompt profile: its `max_words` bounds a revision (the guards reject longer
            ones) and sets the token budget of an answer (1.6 tokens a word, plus 16).
        decoding: sampling parameters; by default from `target`.
        history_tokens: the estimated tokens the attempts may take in the instruction (`select_history`).
        attempts: samples per wanted candidate before giving up.
        verifier: checks each sentence of a revision against the original prompt (`tools/verifier.py`) and drops
            those that fail before the guards run; None: no check.
        verify_threshold: the verifier's least p(ok), or None for its own.
    """

    template = "revise_prompt"

    def __init__(
        self,
        llm: ChatLLM,
        target: TargetProfile | None = None,
        decoding: Decoding | None = None,
        history_tokens: int = 1200,
        attempts: int = 2,
        verifier: Verifier | None = None,
        verify_threshold: float | None = None,
    ) -> None:
        self.llm = llm
        self.verifier = verifier
        self.verify_threshold = verify_threshold
        self.target = target or profile("wan")
        self.max_words = self.target.max_words
        self.decoding = decoding or Decoding(
            max_new_tokens=int(self.max_words * 1.6) + 16, temperature=0.7, repetition_penalty=1.0,
            no_repeat_ngram_size=0,
        )  # fmt: skip
        self.history_tokens = history_tokens
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
            history: earlier attempts, oldest first; the best and the latest go into the instruction, within
                `history_tokens` (`select_history`).
            k: candidates wanted.
            seed: base seed; sample i uses seed * 100 + i.
            instructions: extra guidance, e.g. from a person or the llm controller.
            meta: what the prompt file says about the prompt (a physical law, a benchmark dimension), shown to the
                model as what the video must show.
        """
        lines = "\n".join(select_history(history, self.history_tokens))
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
            if self.verifier is not None:
                text, dropped = self.verifier.keep(original, text, self.verify_threshold)
                rejected += Rejection.dropped(dropped, sample_seed, self.decoding.temperature)
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
