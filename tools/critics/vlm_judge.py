"""VLM judge: sampled frames and prompt-derived questions sent to any OpenAI-compatible chat endpoint."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from rapo.common import ServiceError
from rapo.prompts.loader import load_template
from rapo.tools.critics.base import CriticResult
from rapo.tools.critics.questions import derive_questions
from rapo.tools.video import Video

TEMPLATE = "vlm_judge"
COMPARE_TEMPLATE = "vlm_compare"
_WINNER = re.compile(r"winner\s*[:=]?\s*(?:video\s*)?\b([AB])\b", re.IGNORECASE)
_REASON = re.compile(r"reason\s*[:=]\s*(.+)", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_SCORE = re.compile(r"\b([1-5](?:\.\d+)?|one|two|three|four|five)\b(?:\s*/\s*5)?", re.IGNORECASE)
_LABELLED = re.compile(r"(?:score|rating)\s*[:=]?\s*([1-5](?:\.\d+)?|one|two|three|four|five)\b", re.IGNORECASE)
_LINE = re.compile(r"^\W*(?:q(?:uestion)?\s*)?(\d{1,2})\s*[.):\-]\s*(.*)$", re.IGNORECASE)
_MISALIGNMENT = re.compile(r"misalign\w*\W+(.+)", re.IGNORECASE)


@dataclass
class Verdict:
    """What could be read from one judge reply."""

    scores: dict[int, float] = field(default_factory=dict)  # question number (from 1) -> 1..5
    issues: dict[int, str] = field(default_factory=dict)
    misalignment: str = ""


class VlmJudge:
    """Asks a vision-language model 1-5 questions about the prompt's content, over frames of the video.

    Works with any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, OpenAI): `num_frames`
    evenly spaced frames go as base64 JPEG image parts with the `vlm_judge` template and questions from
    `tools.critics.questions.derive_questions`. Replies are parsed leniently (`parse_reply`); a question without a
    readable score is recorded as unparsed. Score: `(mean - 1) / 4` over the parsed 1-5 scores, so 1 -> 0 and
    5 -> 1. A reply with no readable score at all raises ServiceError: a failed critique, never an invented score.

    Args:
        base_url: the endpoint's base URL, e.g. "http://127.0.0.1:8000/v1".
        model: the served model's name.
        api_key: the key; default $OPENAI_API_KEY, else "EMPTY" (what vLLM accepts).
        num_frames: how many frames to send.
        max_side: frames are resized so their longer side is at most this many pixels.
        max_questions: upper bound on questions per prompt.
        timeout: seconds per request.
        max_retries: retries on connection errors, timeouts, 429 and 5xx (the client backs off between them).
        max_tokens: reply length bound.
    """

    name = "vlm"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        num_frames: int = 4,
        max_side: int = 512,
        max_questions: int = 8,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_tokens: int = 512,
    ) -> None:
        # 1. Check inputs
        if not re.match(r"https?://", base_url or ""):
            raise ValueError(f"`base_url` must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("`model` must not be empty")
        for label, value, low in (
            ("num_frames", num_frames, 1),
            ("max_side", max_side, 16),
            ("max_questions", max_questions, 1),
            ("max_retries", max_retries, 0),
            ("max_tokens", max_tokens, 16),
        ):
            if value < low:
                raise ValueError(f"`{label}` must be at least {low}, got {value}")
        if timeout <= 0:
            raise ValueError(f"`timeout` must be positive, got {timeout}")
        self.base_url, self.model = base_url, model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.num_frames, self.max_side, self.max_questions = num_frames, max_side, max_questions
        self.timeout, self.max_retries, self.max_tokens = timeout, max_retries, max_tokens
        self.template = load_template(TEMPLATE)

    @cached_property
    def _client(self):  # noqa: ANN202 - openai is imported lazily
        try:
            from openai import OpenAI
        except ImportError:
            raise ImportError("the VLM judge needs the `openai` package: pip install openai") from None
        return OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries)

    def score(self, video: Video, prompt: str, meta: Mapping[str, object] | None = None) -> CriticResult:
        """Ask the judge about `video` against `prompt`; raises ServiceError when the endpoint fails."""
        start = time.perf_counter()
        # 1. Check inputs
        if not prompt.strip():
            raise ValueError("`prompt` must not be empty")
        if len(video.frames) < 1:
            raise ValueError("`video` has no frames")
        # 2. Questions and messages
        questions = derive_questions(prompt, self.max_questions)
        index = np.unique(np.linspace(0, len(video.frames) - 1, self.num_frames).round().astype(int))
        listed = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
        messages = self.template.messages(prompt=prompt.strip(), questions=listed, num_frames=str(len(index)))
        images = [{"type": "image_url", "image_url": {"url": _data_url(video.frames[i], self.max_side)}} for i in index]
        messages[-1] = {"role": "user", "content": [{"type": "text", "text": messages[-1]["content"]}, *images]}
        # 3. Ask
        reply = self._ask(messages)
        # 4. Parse and score
        verdict = parse_reply(reply, len(questions))
        parsed = [verdict.scores[i] for i in sorted(verdict.scores)]
        unparsed = [i for i in range(1, len(questions) + 1) if i not in verdict.scores]
        if not parsed:
            # No score is better than an invented one: the caller records a failed critique and goes on.
            raise ServiceError(f"VLM judge at {self.base_url} gave no readable score; reply began {reply[:120]!r}")
        score = (float(np.mean(parsed)) - 1.0) / 4.0
        raw = {
            "questions": "\n".join(questions),
            "question_scores": [verdict.scores.get(i, 0.0) for i in range(1, len(questions) + 1)],
            "parsed": float(len(parsed)),
            "unparsed": ", ".join(map(str, unparsed)),
            "mean_1_to_5": float(np.mean(parsed)) if parsed else 0.0,
            "misalignment": verdict.misalignment,
            "model": self.model,
            "template": self.template.id,
            "frames_sampled": [float(i) for i in index],
            "reply": reply[:2000],
        }
        return CriticResult(
            critic=self.name,
            score=float(np.clip(score, 0.0, 1.0)),
            raw=raw,
            feedback=_feedback(questions, verdict, unparsed),
            seconds=time.perf_counter() - start,
        )

    def compare(self, video_a: Video, video_b: Video, prompt: str) -> tuple[str, str]:
        """Which of two videos matches `prompt` better: ("A" or "B", the judge's reason).

        Frames of A, then of B, go with the `vlm_compare` template. A reply that names no winner raises
        ServiceError: the caller keeps its own order rather than an invented verdict.
        """
        if not prompt.strip():
            raise ValueError("`prompt` must not be empty")
        template = load_template(COMPARE_TEMPLATE)
        parts = []
        for label, video in (("A", video_a), ("B", video_b)):
            index = np.unique(np.linspace(0, len(video.frames) - 1, self.num_frames).round().astype(int))
            parts.append({"type": "text", "text": f"Video {label}:"})
            parts += [
                {"type": "image_url", "image_url": {"url": _data_url(video.frames[i], self.max_side)}} for i in index
            ]
        messages = template.messages(prompt=prompt.strip(), num_frames=str(self.num_frames))
        messages[-1] = {"role": "user", "content": [{"type": "text", "text": messages[-1]["content"]}, *parts]}
        reply = self._ask(messages)
        found = _WINNER.search(reply)
        if not found:
            raise ServiceError(f"VLM judge at {self.base_url} named no winner; reply began {reply[:120]!r}")
        reason = _REASON.search(reply)
        return found[1].upper(), reason[1].strip().splitlines()[0] if reason else ""

    def _ask(self, messages: list[dict]) -> str:
        import openai

        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=0.0, max_tokens=self.max_tokens
            )
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            attempts = self.max_retries + 1
            reason = f"{exc} {exc.__cause__}".strip() if exc.__cause__ else str(exc)
            raise ServiceError(
                f"VLM judge cannot reach {self.base_url} ({reason}) after {attempts} attempt{'s' * (attempts > 1)}: "
                "start an OpenAI-compatible server there or pass another base_url"
            ) from None
        except openai.APIStatusError as exc:
            raise ServiceError(
                f"VLM judge at {self.base_url} answered HTTP {exc.status_code} for model {self.model!r}: "
                f"{str(exc).splitlines()[0][:200]}"
            ) from None
        choices = getattr(response, "choices", None) or []
        return (choices[0].message.content or "") if choices else ""


def parse_reply(reply: str, num_questions: int) -> Verdict:
    """Read per-question 1-5 scores, issues and the misalignment text from a judge reply, never raising.

    Tries, in order: JSON in a code fence, the first JSON object or list anywhere in the text (an {"answers":
    [...]} object, a list of answers, or a {"1": 4, ...} mapping), then numbered lines ("2. score: four - ...",
    "Q3: 4/5"). Scores may be numbers, numeric strings, "4/5" or words one..five; values outside 1..5 and
    question numbers outside 1..num_questions are ignored.
    """
    verdict = Verdict()
    for data in _json_candidates(reply):
        _read_json(data, num_questions, verdict)
        if verdict.scores:
            break
    if not verdict.scores:
        for line in reply.splitlines():
            match = _LINE.match(line.strip())
            if match and 1 <= int(match.group(1)) <= num_questions:
                rest = match.group(2).rsplit("?", 1)[-1]  # skip an echoed question: "Are there two cars? 4"
                found = _LABELLED.search(rest) or _SCORE.search(rest)
                value = _score(found.group(1)) if found else None
                if value is not None:
                    verdict.scores.setdefault(int(match.group(1)), value)
    if not verdict.misalignment and (match := _MISALIGNMENT.search(reply)):
        verdict.misalignment = match.group(1).strip().strip('"').strip()[:500]
    return verdict


def _json_candidates(text: str) -> list:
    """Parsed JSON values found in code fences first, then at each '{' or '[' of the text."""
    found = []
    decoder = json.JSONDecoder()
    for chunk in [*_FENCE.findall(text), text]:
        for i, char in enumerate(chunk):
            if char in "{[":
                try:
                    value, _ = decoder.raw_decode(chunk, i)
                except ValueError:
                    continue
                if isinstance(value, dict | list) and value:
                    found.append(value)
                    break
    return found


def _read_json(data: dict | list, num_questions: int, verdict: Verdict) -> None:
    items = data.get("answers", data.get("scores", data)) if isinstance(data, dict) else data
    if isinstance(data, dict):
        text = data.get("misalignment") or data.get("misalignments") or data.get("issues") or ""
        verdict.misalignment = (text if isinstance(text, str) else "; ".join(map(str, text)))[:500]
    if isinstance(items, dict):  # {"1": 4, "Q2": "five"} or {"1": {"score": 4}}
        items = [{"id": key, **(v if isinstance(v, dict) else {"score": v})} for key, v in items.items()]
    if not isinstance(items, list):
        return
    for position, item in enumerate(items, 1):
        if isinstance(item, dict):
            number = _number(item.get("id", item.get("question", position)), position)
            value = _score(item.get("score", item.get("rating")))
            issue = item.get("issue") or item.get("misalignment") or item.get("reason") or ""
        else:
            number, value, issue = position, _score(item), ""
        if value is not None and 1 <= number <= num_questions:
            verdict.scores.setdefault(number, value)
            if issue and isinstance(issue, str):
                verdict.issues.setdefault(number, issue[:300])


def _number(value: object, default: int) -> int:
    match = re.search(r"\d+", str(value))
    return int(match.group()) if match else default


def _score(value: object) -> float | None:
    """A 1-5 score from a number, "4", "4/5", "Score: four" and the like; None when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        found = _LABELLED.search(str(value)) or _SCORE.search(str(value))
        if not found:
            return None
        token = found.group(1).lower()
        number = float(_WORDS.get(token, token))
    return number if 1.0 <= number <= 5.0 else None


def _data_url(frame: np.ndarray, max_side: int) -> str:
    """A frame as a base64 JPEG data URL, resized so its longer side is at most `max_side`."""
    import cv2

    height, width = frame.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        frame = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError(f"`video` frame of shape {frame.shape} could not be encoded as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _feedback(questions: list[str], verdict: Verdict, unparsed: list[int]) -> str:
    mean = float(np.mean(list(verdict.scores.values())))
    weakest = sorted(verdict.scores, key=verdict.scores.get)[:2]
    parts = [f"VLM judge: mean {mean:.1f}/5 over {len(verdict.scores)} questions"]
    for i in weakest:
        if verdict.scores[i] < 4:
            issue = f" ({verdict.issues[i]})" if i in verdict.issues else ""
            parts.append(f"'{questions[i - 1]}' scored {verdict.scores[i]:g}/5{issue}")
    if verdict.misalignment:
        parts.append(f"misalignment: {verdict.misalignment}")
    if unparsed:
        parts.append(f"no score read for question(s) {', '.join(map(str, unparsed))}")
    return "; ".join(parts) + "."
