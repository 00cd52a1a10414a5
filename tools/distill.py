"""The distilled rewriter's request format, shared by training (finetune/) and Stage 1 (tools/stage1.py).

The answer is forced to start with the user's prompt ("a dog on a beach" -> "A dog on a beach. ..."): the model
continues after it, so every word the user wrote is kept by construction rather than checked afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapo.prompts.loader import load_template
from rapo.tools import guards

TEMPLATE = "distill_rewrite"


def answer_prefix(prompt: str) -> str:
    """The user's prompt as the first sentence of the answer: capitalised, ending with a full stop."""
    prompt = " ".join(prompt.split()).rstrip(" ,;:")
    if not prompt:
        return ""
    prompt = prompt[0].upper() + prompt[1:]
    return prompt if prompt.endswith((".", "!", "?")) else prompt + "."


def details_line(details: Sequence[str]) -> str:
    """The user-message suffix that names phrases to weave in, or "" for none."""
    return "\nInclude: " + "; ".join(details) if details else ""


def messages(prompt: str, details: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat turns for one rewrite, ending with the forced start of the assistant's answer."""
    turns = load_template(TEMPLATE).messages(prompt=" ".join(prompt.split()), details=details_line(details))
    return turns + [{"role": "assistant", "content": answer_prefix(prompt)}]


def with_prefix(prompt: str, target: str) -> str:
    """A training target that starts with the answer prefix: `target` itself when it already does.

    A target whose first sentence only restates the prompt loses that sentence, which would otherwise teach the
    model to say the prompt twice.
    """
    prefix = answer_prefix(prompt)
    target = " ".join(target.split())
    if target.lower().startswith(prefix.lower()):
        return target
    first, _, rest = target.partition(". ")
    if rest and {guards.stem(w) for w in guards.content_words(first)} <= {
        guards.stem(w) for w in guards.content_words(prompt)
    }:
        target = rest
    return f"{prefix} {target}"
