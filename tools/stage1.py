"""Stage 1 (RAPO): retrieve modifiers, merge them into the prompt, refactor it to caption form, and choose.

Every LLM step is guarded (tools/guards.py): a rejected answer is recorded with its reason and the
step retries with the next seed, then falls back to a safe candidate, so the result never loses
what the user asked for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from rapo.common import PromptError
from rapo.prompts.loader import load_template
from rapo.tools import distill, guards
from rapo.tools.discriminator import LearnedDiscriminator, LoraDiscriminator, hand_score, length_fit
from rapo.tools.facets import with_facets
from rapo.tools.llm import ChatLLM, Decoding
from rapo.tools.profiles import DEFAULT_TARGET, TargetName, TargetProfile, profile
from rapo.tools.retrieval import GraphLookup, Modifier, Retrieval
from rapo.tools.verifier import SentenceCheck, Verifier, sentences

MAX_PROMPT_CHARS = 2000
Branch = Literal["rapo", "naive"]
TOKENS_PER_WORD = 1.5  # SmolLM2's tokenizer on VBench's GPT-4o rewrites: 1.3; the rest is room to end a sentence


def check_prompt(prompt: str) -> str:
    """The prompt with its whitespace collapsed; raises PromptError if it is empty or over-long."""
    prompt = " ".join(prompt.split())
    if not prompt:
        raise PromptError("prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError(f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt


class Stage1Settings(BaseModel):
    """Knobs of one Stage 1 run, recorded in its result."""

    top_k: int = Field(3, ge=1, le=50, description="Scenes to expand.")
    threshold: float = Field(0.5, ge=-1, le=1, description="Minimum modifier–prompt cosine similarity.")
    max_modifiers: int = Field(3, ge=0, le=10, description="Modifiers merged, at most one per kind.")
    attempts: int = Field(2, ge=1, le=5, description="Samples per LLM step before it falls back.")
    max_words: int = Field(80, ge=5, description="Length bound on every candidate of the plain model's steps.")
    target: TargetName = Field(DEFAULT_TARGET, description="The video model whose prompt length to write for.")
    both_branches: bool = Field(
        False,
        description="With an adapter, write the naive branch even when the rapo branch passed: SSPO's round 0 "
        "renders both, which is the label a learned discriminator trains on.",
    )
    weave_boost: float = Field(
        3.0,  # chosen on held-out VBench prompts that bench/quality.py does not score (README, "Weaving")
        ge=0,
        le=10,
        description="With an adapter: the logit added to the first token of each modifier word the rapo answer has "
        "not written yet, so that it weaves the modifiers in more often (`tools.llm.word_boost`); 0 turns it off.",
    )
    verify: bool = Field(
        True,
        description="Check every sentence Stage 1 adds against the prompt (the distilled rewriter's answers; the plain "
        "model's after their first sentence) and drop those the verifier (`tools/verifier.py`) does not pass; a "
        "distilled answer left with nothing added is asked again, and when none survives the result is the prompt.",
    )
    added_words: int = Field(
        40,
        ge=4,
        le=200,
        description="About the most words a distilled answer adds after the prompt: the target profile's length is "
        "a ceiling, never a floor, and most of a small model's added sentences fail the verifier, so a short answer "
        "costs less per attempt.",
    )
    facets: bool = Field(
        True,
        description="Append the camera, light, look and motion facets the prompt is silent on (`tools/facets.py`), "
        "within the target's length, to every candidate.",
    )
    verify_threshold: float | None = Field(
        None, ge=0, le=1, description="The least p(ok) a kept sentence has; None: the verifier's own (verifier.json)."
    )
    decoding: Decoding = Field(
        # Copying the prompt is the task, so no repetition penalty (it would punish the prompt's own words).
        default_factory=lambda: Decoding(
            max_new_tokens=64, temperature=0.2, repetition_penalty=1.0, no_repeat_ngram_size=0
        )
    )
    distill_decoding: Decoding = Field(
        # The answer after the forced prompt is free text: mild controls keep a 135M model from looping.
        # max_new_tokens here is a ceiling; the target profile sets the length actually asked for.
        default_factory=lambda: Decoding(
            max_new_tokens=256, temperature=0.5, top_p=0.9, repetition_penalty=1.1, no_repeat_ngram_size=4
        ),
        description="Decoding of the distilled rewriter (an LLM with a Stage 3 adapter).",
    )


class Candidate(BaseModel):
    """A finished candidate prompt and how the discriminator scored it."""

    branch: Branch
    text: str
    step: Literal["refactor", "augment", "naive", "distill", "input"] = Field(
        description="The step whose output this is."
    )
    score: float
    similarity: float = Field(description="Cosine similarity to the user's prompt.")
    length_fit: float = Field(description="min(words, target) / max(words, target).")
    coverage: float = Field(description="Share of the merged modifiers' content words present.")


class Rejection(BaseModel):
    """An LLM answer a guard refused, or an added sentence the verifier dropped (step "verify")."""

    step: str
    text: str
    reason: str
    seed: int
    temperature: float

    @classmethod
    def dropped(cls, checks: list[SentenceCheck], seed: int, temperature: float) -> list[Rejection]:
        """The verifier's dropped sentences of one answer, each with its flaw and p(ok) as the reason."""
        return [
            cls(step="verify", text=c.sentence, reason=f"{c.flaw} (p_ok {c.p_ok:.2f})", seed=seed,
                temperature=temperature)
            for c in checks
        ]  # fmt: skip


class Stage1Result(BaseModel):
    """Everything Stage 1 did for one prompt; `prompt` is the chosen candidate's text."""

    input: str
    prompt: str
    branch: Branch
    why: str
    candidates: list[Candidate]
    facets: list[str] = Field(default_factory=list, description="Facets appended to the chosen candidate, by name.")
    modifiers: list[Modifier] = Field(description="Modifiers above the threshold, best first.")
    merged: list[str] = Field(description="The modifiers that were merged, in merge order.")
    scenes: list[tuple[str, float]]
    rejected: list[Rejection]
    timings: dict[str, float]
    seed: int
    settings: Stage1Settings
    target: TargetProfile = Field(description="The length profile the prompt was written for.")
    models: dict[str, object]


@dataclass
class _Job:
    """One prompt on its way through `Stage1.run_many`."""

    prompt: str
    timings: dict[str, float]
    started: float = 0.0
    retrieval: Retrieval | None = None
    chosen: list[Modifier] = field(default_factory=list)
    entries: list[tuple[str, str, str]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class _Ask:
    """One branch of one job for the distilled rewriter: its answer once one passes, and what was refused."""

    job: _Job
    branch: Branch
    details: list[str]
    prefix: str
    limit: int
    decoding: Decoding
    waits_for: _Ask | None = None
    text: str | None = None
    attempts: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def open(self, attempts: int) -> bool:
        """Whether it still needs an answer and may ask now (a waiting branch: once the other failed for good)."""
        if self.text is not None or self.attempts >= attempts:
            return False
        return self.waits_for is None or (self.waits_for.text is None and self.waits_for.attempts >= attempts)


class Stage1:
    """The Stage 1 pipeline over a graph lookup and an LLM; both load lazily and once."""

    def __init__(
        self,
        lookup: GraphLookup,
        llm: ChatLLM,
        settings: Stage1Settings | None = None,
        discriminator: LearnedDiscriminator | LoraDiscriminator | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.lookup = lookup
        self.llm = llm
        self.settings = settings or Stage1Settings()
        self.discriminator = discriminator  # None: the hand formula
        # The shipped verifier unless one is given (a server shares its loaded one); none with verify off
        self.verifier = (verifier or Verifier(embedder=lookup.embedder)) if self.settings.verify else None
        meta = lookup.store.meta()
        mean = meta.caption_words_mean
        self.target_words = int(min(60, max(20, mean))) if mean else 25

    def models(self) -> dict[str, object]:
        """Model ids, template versions and graph provenance, for the record."""
        meta = self.lookup.store.meta()
        return {
            "llm": self.llm.model_id,
            "adapter": getattr(self.llm, "adapter_id", None),
            "llm_dtype": self.llm.dtype,
            "decoding": self.settings.decoding.model_dump(),
            "embedder": self.lookup.embedder.model_id,
            "graph": {"location": self.lookup.store.location, "captions": meta.captions, "sources": len(meta.sources)},
            "templates": [load_template(n).id for n in self._templates()],
            "target": self.settings.target,
            "discriminator": self.discriminator.location if self.discriminator else "hand formula",
            "verifier": self.verifier.model_id(self.settings.verify_threshold) if self.verifier else None,
        }

    def _templates(self) -> tuple[str, ...]:
        if self.llm.adapter_id is not None:
            return (distill.TEMPLATE,)
        return ("merge_modifier", "refactor_caption", "naive_rewrite")

    @property
    def profile(self) -> TargetProfile:
        """The target model's length profile (settings.target)."""
        return profile(self.settings.target)

    def load(self) -> float:
        """Load the embedder and the LLM if they are not loaded yet; returns the seconds it took."""
        started = time.perf_counter()
        self.lookup.embedder.load()
        self.llm.load()
        if self.verifier is not None:
            self.verifier.load()
        return time.perf_counter() - started

    def run(self, prompt: str, seed: int = 0, pin: Sequence[str] = (), ban: Sequence[str] = ()) -> Stage1Result:
        """Optimise one prompt. Raises PromptError for an empty or over-long prompt.

        With a Stage 3 adapter on the LLM (the default), the distilled rewriter writes the rapo branch (the
        retrieved modifiers woven in), or the naive one (the prompt alone) when there are none or the rapo answers
        fail; each answer starts with the user's prompt (`_distill`). Without one, the plain model merges the
        modifiers one call at a time, refactors the result and rewrites the prompt plainly (`_plain`).

        Args:
            prompt: the user's prompt.
            seed: seed of every sampled LLM step.
            pin: retrieved modifiers (by text) that are merged whatever the ranking (a person's choice in chat).
            ban: retrieved modifiers (by text) that are never merged.

        Raises:
            ValueError: a pinned modifier is not among the retrieved ones.
        """
        return self.run_many([prompt], seed, pin, ban)[0]

    def run_many(
        self, prompts: Sequence[str], seed: int = 0, pin: Sequence[str] = (), ban: Sequence[str] = ()
    ) -> list[Stage1Result]:
        """`run` for several prompts, each with `seed`, its LLM answers generated in shared batches.

        Every prompt gets the result it gets alone (each answer samples from its own seeded generator, see
        `tools/llm.py`; exact in float32, while bfloat16 rounds a batch's matrix products differently); batching
        only shares the model's forward passes. The distilled rewriter's answers of every
        prompt (and, with `both_branches`, of both branches) go in one batch per attempt; the plain model's dependent
        steps run one prompt at a time. `timings` of a batched step are the batch's.

        Raises:
            PromptError: a prompt is empty or over-long (checked before any work).
        """
        # 1. Check inputs
        prompts = [check_prompt(p) for p in prompts]
        load = self.load()
        jobs = [_Job(prompt=p, timings={"load": load}) for p in prompts]

        # 2. Retrieve modifiers and pick at most one per kind, best first; pinned ones first, banned ones never
        for job in jobs:
            job.started = time.perf_counter()
            job.retrieval, job.chosen = self._retrieve(job.prompt, pin, ban)
            job.timings["retrieval"] = job.retrieval.seconds

        # 3-5. Write the candidates
        if self.llm.adapter_id is not None:
            self._distill(jobs, seed)
        else:
            # The plain model's steps depend on each other: one prompt at a time, or as many at once as a served
            # LLM takes (each prompt's requests in its own thread).
            def plain(job: _Job) -> None:
                step_seed = iter(range(seed * 1000, seed * 1000 + 1000))
                job.entries = self._plain(job.prompt, job.chosen, step_seed, job.rejected, job.timings)

            workers = min(getattr(self.llm, "concurrency", 1), len(jobs))
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(plain, jobs))
            else:
                for job in jobs:
                    plain(job)

        # 6. Discriminate
        return [self._result(job, seed) for job in jobs]

    def _result(self, job: _Job, seed: int) -> Stage1Result:
        t = time.perf_counter()
        added = " ".join(m.text for m in job.chosen)
        facets: dict[str, list[str]] = {}  # a candidate's final text -> the facets appended to it
        if self.settings.facets:
            limit = max(self.profile.max_words, len(job.prompt.split()))
            for i, (branch, text, step) in enumerate(job.entries):
                text, names = with_facets(text, job.prompt, limit)
                facets[text] = names
                job.entries[i] = (branch, text, step)
        candidates = self._score(job.prompt, added, job.entries)
        best = max(candidates, key=lambda c: (c.score, c.branch == "rapo"))
        job.timings["discriminate"] = time.perf_counter() - t
        job.timings["total"] = time.perf_counter() - job.started
        why = _explain(best, candidates, self._target_words(), self.discriminator)
        if best.step == "input" and job.rejected:
            verified = sum(r.step == "verify" for r in job.rejected)
            kept = "the prompt as written" + (", with the facets it is silent on" if facets.get(best.text) else "")
            why = (f"kept {kept}: no answer passed the guards and the verifier ({len(job.rejected)} rejections, "
                   f"{verified} of them added sentences the verifier dropped); " + why)  # fmt: skip
        return Stage1Result(
            input=job.prompt,
            prompt=best.text,
            branch=best.branch,
            why=why,
            candidates=candidates,
            facets=facets.get(best.text, []),
            modifiers=job.retrieval.modifiers,
            merged=[m.text for m in job.chosen],
            scenes=job.retrieval.scenes,
            rejected=job.rejected,
            timings={k: round(v, 4) for k, v in job.timings.items()},
            seed=seed,
            settings=self.settings,
            target=self.profile,
            models=self.models(),
        )

    def _retrieve(self, prompt: str, pin: Sequence[str], ban: Sequence[str]) -> tuple[Retrieval, list[Modifier]]:
        retrieval = self.lookup.retrieve(prompt, self.settings.top_k, self.settings.threshold)
        offered = [m for m in retrieval.modifiers if m.text not in ban]
        pinned = [m for m in offered if m.text in pin]
        if missing := sorted(set(pin) - {m.text for m in pinned}):
            raise ValueError(f"`pin` {missing} are not among the retrieved modifiers of {prompt!r}")
        ranked = pinned + [m for m in offered if m not in pinned][:30]
        vectors = self.lookup.embedder.encode([m.text for m in ranked])  # (M, dim)
        return retrieval, _pick_modifiers(prompt, ranked, vectors, self.settings.max_modifiers, len(pinned))

    def _plain(
        self, prompt: str, chosen: list[Modifier], step_seed, rejected: list[Rejection], timings: dict[str, float]
    ) -> list[tuple[str, str, str]]:  # noqa: ANN001 - step_seed is an iterator of ints
        """The plain model's steps 3-5: merge one modifier at a time, refactor, rewrite plainly."""
        # 3. Word augmentation: merge one modifier at a time, starting from the user's prompt
        t = time.perf_counter()
        augmented = prompt
        for modifier in chosen:
            merged = self._llm_step(
                "merge_modifier",
                dict(prompt=augmented, modifier=modifier.text),
                augmented,
                modifier.text,
                next(step_seed),
                rejected,
            )
            augmented = merged or f"{augmented}, {modifier.text}"  # the guarded fallback: a plain join
        timings["augment"] = time.perf_counter() - t

        # 4. Refactor into the training captions' form; 5. the plain rewrite branch
        t = time.perf_counter()
        added = " ".join(m.text for m in chosen)
        refactored = self._llm_step(
            "refactor_caption",
            dict(prompt=augmented, words=str(self._target_words())),
            prompt,
            added,
            next(step_seed),
            rejected,
        )
        timings["refactor"] = time.perf_counter() - t
        t = time.perf_counter()
        naive = self._llm_step("naive_rewrite", dict(prompt=prompt), prompt, "", next(step_seed), rejected)
        timings["naive"] = time.perf_counter() - t
        rapo_text, rapo_step = (refactored, "refactor") if refactored else (augmented, "augment" if chosen else "input")
        naive_text, naive_step = (naive, "naive") if naive else (prompt, "input")
        entries = [("rapo", rapo_text, rapo_step), ("naive", naive_text, naive_step)]
        if self.verifier is None:
            return entries
        # The sentences after the first (which carries the prompt and the merged modifiers) are verified
        verified = []
        for branch, text, step in entries:
            first = (sentences(text) or [text])[0]
            kept, dropped = self.verifier.keep(prompt, text, self.settings.verify_threshold, head=first)
            rejected += Rejection.dropped(dropped, seed=-1, temperature=0.0)  # the steps' seeds are theirs
            verified.append((branch, kept, step))
        return verified

    def _distill(self, jobs: list[_Job], seed: int) -> None:
        """The distilled steps 3-5 for every job: the rapo branch (modifiers woven in), else the naive one.

        One branch is written unless `both_branches`: an answer of about 100 words costs about 12 s on 2 CPU cores,
        and the discriminator prefers the branch that keeps the merged modifiers anyway. The naive branch is
        written when no modifier was retrieved or every rapo answer failed the guards. Each answer continues the
        forced prefix (the user's prompt), stops at a sentence end near the target profile's length, loses its
        sentences about smell, taste or sound, is cut to its maximum, and is guarded; a failed answer is asked
        again at a higher temperature. With every answer failed, the candidate is the prompt.

        Every (job, branch) whose turn it is answers in one batch per attempt: attempt k of every branch samples
        with seed * 10 + k, alone or batched.
        """
        t = time.perf_counter()
        target = self.profile
        base = self.settings.distill_decoding
        asks: list[_Ask] = []
        for job in jobs:
            prefix = distill.answer_prefix(job.prompt)
            room = min(max(target.max_words - len(prefix.split()), 8), self.settings.added_words + 8)
            decoding = base.model_copy(
                update={
                    "max_new_tokens": min(base.max_new_tokens, round(room * TOKENS_PER_WORD)),
                    "stop_after_words": min(
                        max(target.target_words - len(prefix.split()), 4), self.settings.added_words
                    ),
                    "boost": self.settings.weave_boost,
                }
            )
            limit = max(target.max_words, len(prefix.split()))
            details = [m.text for m in job.chosen]
            # The rapo answer is nudged towards the modifiers' words the prompt lacks (`tools.llm.word_boost`)
            weave = decoding.model_copy(update={"boost_words": guards.missing_words(" ".join(details), prefix)})
            branches = [("rapo", details, weave), ("naive", [], decoding)] if job.chosen else [("naive", [], decoding)]
            job_asks = [_Ask(job, b, d, prefix, limit, dec) for b, d, dec in branches]
            if len(job_asks) == 2 and not self.settings.both_branches:
                job_asks[1].waits_for = job_asks[0]  # the naive branch only when every rapo answer failed
            asks += job_asks
        while ready := [a for a in asks if a.open(self.settings.attempts)]:
            attempt = min(a.attempts for a in ready)
            self._answer([a for a in ready if a.attempts == attempt], seed * 10 + attempt, attempt)
        seconds = time.perf_counter() - t
        for job in jobs:
            mine = [a for a in asks if a.job is job]
            job.entries = [(a.branch, a.text, "distill") for a in mine if a.text is not None]
            job.entries = job.entries or [("naive", job.prompt, "input")]
            job.rejected += [r for a in mine for r in a.rejected]
            job.timings["distill"] = seconds

    def _answer(self, asks: list[_Ask], sample_seed: int, attempt: int) -> None:
        """One batched attempt for `asks`: each answer is cleaned, cut, guarded; accepted or recorded as rejected."""
        if not asks:
            return
        decodings = [
            a.decoding.model_copy(update={"temperature": a.decoding.temperature + 0.3 * attempt}) for a in asks
        ]
        outs = self.llm.generate_many(
            [distill.messages(a.job.prompt, a.details) for a in asks], [sample_seed] * len(asks), decodings
        )
        for ask, out, sampling in zip(asks, outs, decodings, strict=True):
            ask.attempts += 1
            text = guards.drop_non_visual(f"{ask.prefix} {guards.clean(out.text)}".strip(), keep=ask.prefix)
            text = guards.trim_to_words(text, ask.limit, keep=ask.prefix)
            if self.verifier is not None:
                text, dropped = self.verifier.keep(ask.job.prompt, text, self.settings.verify_threshold)
                ask.rejected += Rejection.dropped(dropped, sample_seed, sampling.temperature)
            reason = guards.check(ask.job.prompt, text, ask.limit, " ".join(ask.details))
            if reason is None and len(text.split()) <= len(ask.prefix.split()):
                reason = "adds nothing to the prompt" + (" that the verifier passed" if self.verifier else "")
            if reason is None:
                ask.text = text
                continue
            ask.rejected.append(
                Rejection(
                    step=f"{distill.TEMPLATE}:{ask.branch}", text=text, reason=reason, seed=sample_seed,
                    temperature=sampling.temperature,
                )
            )  # fmt: skip

    def _target_words(self) -> int:
        """The length the discriminator prefers: the profile's with an adapter, the graph captions' without."""
        return self.profile.target_words if self.llm.adapter_id is not None else self.target_words

    def _llm_step(
        self,
        template: str,
        values: dict[str, str],
        source: str,
        must_add: str,
        seed: int,
        rejected: list[Rejection],
        decoding: Decoding | None = None,
        max_words: int | None = None,
    ) -> str | None:
        """Ask the LLM up to `attempts` times; the first answer that passes the guards, else None."""
        messages = load_template(template).messages(**values)
        decoding = decoding or self.settings.decoding
        max_words = max_words or self.settings.max_words
        for attempt in range(self.settings.attempts):
            sample_seed = seed * 10 + attempt
            # A retry at the same low temperature tends to repeat the rejected answer: warm it up.
            sampling = decoding.model_copy(update={"temperature": decoding.temperature + 0.4 * attempt})
            out = self.llm.generate(messages, sample_seed, sampling)
            text = guards.clean(out.text)
            if out.new_tokens >= decoding.max_new_tokens:
                text = guards.trim_unfinished(text)
            reason = guards.check(source, text, max_words, must_add)
            if reason is None:
                return text
            rejected.append(
                Rejection(step=template, text=text, reason=reason, seed=sample_seed, temperature=sampling.temperature)
            )
        return None

    def _score(self, prompt: str, added: str, entries: list[tuple[str, str, str]]) -> list[Candidate]:
        """Score candidates with the learned discriminator, else the hand formula (`tools/discriminator.py`)."""
        vectors = self.lookup.embedder.encode([prompt] + [text for _, text, _ in entries])  # (1 + C, dim)
        similarities = vectors[1:] @ vectors[0]  # (C,)
        target = self._target_words()
        learned = (
            self.discriminator.scores(prompt, [(b, t) for b, t, _ in entries], vectors, target, self.llm)
            if self.discriminator
            else None
        )
        candidates = []
        for i, ((branch, text, step), similarity) in enumerate(zip(entries, similarities.tolist(), strict=True)):
            fit = length_fit(len(text.split()), target)
            coverage = guards.faithfulness(added, text) if added else 0.0
            score = learned[i] if learned is not None else hand_score(similarity, fit, coverage)
            candidates.append(
                Candidate(
                    branch=branch,
                    text=text,
                    step=step,
                    score=round(score, 4),
                    similarity=round(similarity, 4),
                    length_fit=round(fit, 4),
                    coverage=round(coverage, 4),
                )
            )
        return candidates


def _pick_modifiers(
    prompt: str, ranked: list[Modifier], vectors: np.ndarray, limit: int, pinned: int = 0
) -> list[Modifier]:
    """The best modifier of each kind, best first, skipping any that mostly repeats what is already there.

    The first `pinned` entries of `ranked` are taken as they are, even beyond `limit`.

    A modifier is passed over when more than half of its content words are in the prompt or in a modifier
    already picked, or when its embedding (a row of `vectors`) is a near-paraphrase (cosine >= 0.8) of one
    already picked: "holding onto a bar" adds nothing after "held onto a bar".
    """
    have = {guards.stem(w) for w in guards.content_words(prompt)}
    picked: list[int] = []
    for i, modifier in enumerate(ranked):
        stems = {guards.stem(w) for w in guards.content_words(modifier.text)}
        if i >= pinned and (
            modifier.kind in {ranked[j].kind for j in picked}
            or len(stems & have) * 2 > len(stems)
            or any(float(vectors[i] @ vectors[j]) >= 0.8 for j in picked)
        ):
            continue
        picked.append(i)
        have |= stems
    return [ranked[i] for i in picked[: max(limit, pinned)]]


def _explain(
    best: Candidate,
    candidates: list[Candidate],
    target: int,
    discriminator: LearnedDiscriminator | LoraDiscriminator | None,
) -> str:
    if discriminator:
        parts = [
            f"{c.branch} ({c.step}, {len(c.text.split())} words, similarity {c.similarity:.2f}): {c.score:.2f}"
            for c in candidates
        ]
        where = f"{discriminator.location} ({discriminator.kind})"
        return f"chose {best.branch} by the learned discriminator in {where}: " + "; ".join(parts)
    parts = [
        f"{c.branch} ({c.step}): similarity {c.similarity:.2f} + 0.5 x length fit {c.length_fit:.2f} "
        f"({len(c.text.split())} words, target {target}) + 0.25 x modifiers kept {c.coverage:.2f} = {c.score:.2f}"
        for c in candidates
    ]
    return f"chose {best.branch}: " + "; ".join(parts)
