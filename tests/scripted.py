"""Scripted stand-ins for the LLM, for tests whose point is the plumbing around it."""

from rapo.tools.llm import Generation


class DistillLLM:
    """A distilled rewriter's stand-in: continues the forced answer start with scripted text, per branch.

    The rapo branch's request names the modifiers to weave in ("Include: ..."), the naive branch's does not.
    """

    model_id, dtype, adapter_id = "scripted", "float32", "mine"

    def __init__(self, rapo: list[str], naive: list[str]):
        self.answers = {"rapo": rapo, "naive": naive}
        self.requests: list[list[dict]] = []
        self.decodings: list = []  # the Decoding of each request

    def load(self):
        pass

    def generate(self, messages, seed, decoding):
        return self.generate_many([messages], [seed], decoding)[0]

    def generate_many(self, conversations, seeds, decoding):
        out = []
        decodings = decoding if isinstance(decoding, list) else [decoding] * len(conversations)
        for messages, one in zip(conversations, decodings, strict=True):
            self.requests.append(messages)
            self.decodings.append(one)
            branch = "rapo" if "Include:" in messages[-2]["content"] else "naive"
            answers = self.answers[branch]
            asked = sum(("Include:" in m[-2]["content"]) == (branch == "rapo") for m in self.requests)
            text = answers[min(asked - 1, len(answers) - 1)]
            out.append(Generation(text=text, new_tokens=len(text.split()), seconds=0.0))
        return out
