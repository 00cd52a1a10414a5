"""Physics critic: the video's optical-flow statistics judged against the prompt's physical law.

The reference SSPO code hands flow statistics and the law to an LLM; so does this critic when it has a judge (any
served chat model, `openai:URL#MODEL`). Without one it applies deterministic rules that read the law for what it
implies about motion (gravity pulls down, equilibrium is still, a collision is a sudden event, diffusion is gradual)
and check the flow for it. The rules are a heuristic, stated in the result; a served judge is the better measure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rapo.common import ServiceError
from rapo.prompts.loader import load_template
from rapo.tools.critics.base import CriticResult
from rapo.tools.critics.flow import SampledFlow, motion_summary, sampled_flow
from rapo.tools.llm import ChatLLM, Decoding
from rapo.tools.video import Video

TEMPLATE = "physics_judge"
LAW_KEYS = ("physical_laws", "physical_law", "phys_law", "law")
_REPLY_SCORE = re.compile(r"score\s*[:=]?\s*([1-5](?:\.\d+)?)\s*(?:/\s*5)?", re.IGNORECASE)
_REPLY_FEEDBACK = re.compile(r"feedback\s*[:=]\s*(.+)", re.IGNORECASE | re.DOTALL)


def physical_law(meta: Mapping[str, object] | None) -> str | None:
    """The physical law a prompt file gives for a prompt (PhyGenBench's `physical_laws`, RAPO's `phys_law`)."""
    for key in LAW_KEYS:
        value = (meta or {}).get(key)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True)
class Rule:
    """What a law implies for the motion, the words that say so, and what to ask for when the video disagrees."""

    name: str
    words: tuple[str, ...]
    expects: str
    ask: str


RULES = (
    Rule("downward", ("gravit", "fall", "pour", "drop", "cascad", "downward", "sink", "drip"),
         "motion mostly downward", "show it moving downward, falling or pouring under gravity"),
    Rule("still", ("equilibrium", "at rest", "static", "balanced", "stationary", "motionless"),
         "little motion", "show it hanging or resting still, settled in balance"),
    Rule("vigorous", ("splash", "wave", "turbulen", "agitat", "whip", "shak", "vibrat", "explo", "burst", "momentum"),
         "clear, sustained motion", "show vigorous, clearly visible motion"),
    Rule("event", ("break", "fractur", "shatter", "crack", "collision", "collid", "impact", "crash", "bounce"),
         "a sudden motion event", "show the moment of impact or breaking as a distinct, sudden event"),
    Rule("gradual", ("diffus", "dispers", "mix", "spread", "dissolv", "melt", "evaporat", "expand", "grow"),
         "gradual, smooth change", "show the change happening gradually and continuously"),
)  # fmt: skip


class PhysicsCritic:
    """Scores whether a video's motion fits the physical law given with its prompt.

    With a `judge`, the law, the prompt, the motion summary and the flow figures go to the model with the
    `physics_judge` template; its reply's `Score: N` (1-5) becomes `(N - 1) / 4` and its `Feedback:` sentence the
    feedback. A reply without a readable score is a failed critique (ServiceError), never an invented score.

    Without a judge, the rules of `RULES` whose words the law contains each score the flow in [0, 1] (mean of those
    that apply; an equilibrium law overrides the motion its words also name): `downward` the share of motion
    pointing down, `still` how far the motion stays under VBench's dynamic threshold, `vigorous` the share of
    required moving pairs that move, `event` how far the strongest pair stands out from the median (peak / median
    - 1, halved, capped at 1), `gradual` motion smoothness (0 when nothing moves). With no law, or a law no rule
    reads, the score is continuity alone: motion smoothness.

    Args:
        judge: a served chat model (`openai:URL[#MODEL]`, or any `ChatLLM`); None applies the rules.
        max_side: longer side, in pixels, of the frames flow is computed on.
    """

    name = "physics"

    def __init__(self, judge: str | ChatLLM | None = None, max_side: int | None = 256) -> None:
        # 1. Check inputs
        if max_side is not None and max_side < 16:
            raise ValueError(f"`max_side` must be None or at least 16, got {max_side}")
        self._judge_spec = judge
        self.max_side = max_side
        self.decoding = Decoding(max_new_tokens=96, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)

    @cached_property
    def judge(self) -> ChatLLM | None:
        """The judge model, connected on first use (a spec string becomes an `OpenAILLM`)."""
        if isinstance(self._judge_spec, str):
            from rapo.tools.llm_openai import OpenAILLM

            return OpenAILLM(self._judge_spec)
        return self._judge_spec

    def score(self, video: Video, prompt: str, meta: Mapping[str, object] | None = None) -> CriticResult:
        """Judge the motion of `video` against the physical law in `meta` (continuity alone without one)."""
        start = time.perf_counter()
        # 1. Flow statistics, as the flow critic measures them
        flow = sampled_flow(video, self.max_side)
        law = physical_law(meta)
        figures = _figures(flow)
        raw: dict[str, float | str | list[float]] = {**figures, "law": law or "", "summary": _summary(flow)}
        # 2. The judge's verdict, or the rules'
        if self.judge is not None and law:
            score, feedback = self._ask(prompt, law, raw)
            raw["judge"] = self.judge.model_id
        else:
            score, feedback, applied = _rules(law, figures)
            raw["judge"] = "rules: " + (", ".join(applied) or "continuity")
        return CriticResult(
            critic=self.name, score=score, raw=raw, feedback=feedback, seconds=time.perf_counter() - start
        )

    def _ask(self, prompt: str, law: str, raw: Mapping[str, object]) -> tuple[float, str]:
        figures = ", ".join(f"{k} {v:.2f}" for k, v in raw.items() if isinstance(v, float))
        messages = load_template(TEMPLATE).messages(prompt=prompt, law=law, summary=raw["summary"], figures=figures)
        reply = self.judge.generate(messages, 0, self.decoding).text
        found = _REPLY_SCORE.search(reply)
        if not found:
            raise ServiceError(f"physics judge {self.judge.model_id}: no 'Score: N' (1-5) in its reply {reply[:120]!r}")
        said = _REPLY_FEEDBACK.search(reply)
        feedback = (said[1] if said else reply[found.end() :]).strip().splitlines()[0:1]
        return (float(found[1]) - 1.0) / 4.0, (feedback[0] if feedback else f"The physical law: {law}").strip()

    @property
    def template_id(self) -> str:
        """`name@version` of the judge's instruction template."""
        return load_template(TEMPLATE).id


def _figures(flow: SampledFlow) -> dict[str, float]:
    """The flow figures the rules and the judge read: px per video frame, shares and ratios."""
    top, vectors = flow.stats["top"] / flow.interval, flow.stats["vector"] / flow.interval  # (P,), (P, 2)
    moving = top > flow.threshold / flow.interval
    speed = np.hypot(vectors[:, 0], vectors[:, 1]) + 1e-9  # (P,)
    weights = top if top.sum() > 0 else np.ones_like(top)
    median = float(np.median(top))
    return {
        "top5_px_per_frame": float(top.mean()),
        "threshold_px_per_frame": flow.threshold / flow.interval,
        "moving_share": float(moving.mean()),
        "moving_required_share": min(1.0, float(moving.sum()) / flow.required),
        "downward_share": float(np.sum(weights * np.clip(vectors[:, 1] / speed, 0.0, 1.0)) / weights.sum()),
        "peak_to_median": float(top.max() / median) if median > 1e-6 else 1.0,
        "smoothness": float(np.mean(flow.stats["smooth"])) if len(flow.stats["smooth"]) else 1.0,
    }


def _summary(flow: SampledFlow) -> str:
    return motion_summary(flow.stats, flow.index, flow.interval, flow.threshold, segments=4)


def _rules(law: str | None, figures: Mapping[str, float]) -> tuple[float, str, list[str]]:
    """The rules' score, feedback and the names of the rules that applied."""
    text = (law or "").lower()
    applied = [rule for rule in RULES if any(word in text for word in rule.words)]
    if any(rule.name == "still" for rule in applied):  # "gravity balanced by tension": the law is the balance
        applied = [rule for rule in applied if rule.name not in ("downward", "vigorous")]
    if not applied:
        smooth = figures["smoothness"]
        why = "no physical law was given" if not law else "no rule reads this law"
        feedback = f"Judged on continuity only ({why}): motion smoothness {smooth:.2f}" + (
            "; ask for steady, continuous motion." if smooth < 0.6 else "."
        )
        return smooth, feedback, []
    scores = {
        "downward": figures["downward_share"],
        "still": max(0.0, 1.0 - figures["top5_px_per_frame"] / max(figures["threshold_px_per_frame"], 1e-6)),
        "vigorous": figures["moving_required_share"],
        "event": min(1.0, max(0.0, (figures["peak_to_median"] - 1.0) / 2.0)),
        "gradual": figures["smoothness"] if figures["moving_share"] > 0 else 0.0,
    }
    verdicts = [(rule, scores[rule.name]) for rule in applied]
    score = float(np.mean([s for _, s in verdicts]))
    misses = [f"the law implies {rule.expects} but the video scores {s:.2f} on it: {rule.ask}" for rule, s in verdicts
              if s < 0.5]  # fmt: skip
    if misses:
        said = "; ".join(misses)
        return score, f"Physical law: {law} {said[0].upper()}{said[1:]}.", [r.name for r in applied]
    expects = " and ".join(rule.expects for rule in applied)
    return score, f"The motion fits the law ({expects}): {law}", [r.name for r in applied]
