"""Logged runs → training pairs for `finetune/`, which never imports agent (tests/test_layers.py).

`pairs_from_runs` reads each run's (user prompt → best prompt) pairs for `finetune.dataset.build_dataset`, and
`branch_pairs` reads SSPO round 0's two Stage 1 branches for `finetune.discriminator.train_discriminator`; both
return finetune's types, with what they left out and why.
"""

from __future__ import annotations

import re
from pathlib import Path

from rapo.agent.loop.selection import mean_ranks
from rapo.agent.runs.trajectory import open_run_dir
from rapo.finetune.dataset import Pair, RunPairs, mean_score, norm, skip
from rapo.finetune.discriminator import BranchPair, RunBranchPairs
from rapo.tools.profiles import profile

_BRANCH = re.compile(r"^(rapo|naive): ")


def pairs_from_runs(run_dirs: list[Path], margin: float = 0.01) -> RunPairs:
    """(input → best prompt) for every finished prompt whose best beat its first candidate by `margin` or more.

    The first candidate is iteration 0, index 0 (Stage 1's choice); scores are compared by their mean.
    A best prompt equal to the first candidate (a gain of 0) is never kept, whatever the margin.
    """
    pairs: list[Pair] = []
    skipped: dict[str, int] = {}
    for run_dir in run_dirs:
        store, run_id = open_run_dir(run_dir)
        try:
            for row in store.prompts(run_id):
                if row.status != "done" or not row.best_prompt:
                    skip(skipped, f"status {row.status}")
                    continue
                first = next(
                    (e for e in store.evaluations(run_id, row.prompt_id) if (e.iteration, e.index) == (0, 0)), None
                )
                first_mean, best_mean = mean_score(first.scores if first else None), mean_score(row.best_scores)
                if first is None or first_mean is None or best_mean is None:
                    skip(skipped, "no scored first candidate")
                    continue
                gain = best_mean - first_mean
                if norm(row.best_prompt) == norm(first.prompt) or gain <= 0 or gain < margin:
                    skip(skipped, "below margin")
                    continue
                source = {
                    "run_dir": str(run_dir), "run_id": run_id, "prompt_id": row.prompt_id,
                    "first_prompt": first.prompt, "first_scores": first.scores, "best_scores": row.best_scores,
                }  # fmt: skip
                pairs.append(Pair(input=row.input, target=row.best_prompt, gain=round(gain, 6), source=source))
        finally:
            store.close()
    return RunPairs(runs=[str(r) for r in run_dirs], margin=margin, pairs=pairs, skipped=skipped)


def branch_pairs(run_dirs: list[Path]) -> RunBranchPairs:
    """One pair per prompt whose round 0 rendered and scored two different candidates with a clear winner."""
    pairs: list[BranchPair] = []
    skipped: dict[str, int] = {}
    for run_dir in run_dirs:
        store, run_id = open_run_dir(run_dir)
        try:
            config = store.run_config(run_id) or {}
            target = profile(str((config.get("stage1") or {}).get("target") or "wan")).target_words
            for row in store.prompts(run_id):
                if row.status != "done":
                    skip(skipped, f"status {row.status}")
                    continue
                first = [e for e in store.evaluations(run_id, row.prompt_id) if e.iteration == 0 and e.scores]
                ranks = mean_ranks(first[:2])
                why = (
                    "round 0 did not score two branches"
                    if len(first) < 2 or first[0].prompt == first[1].prompt
                    else ("a tie" if ranks[0] == ranks[1] else None)
                )
                if why:
                    skip(skipped, why)
                    continue
                calls = store.tool_calls(run_id, row.prompt_id)
                chosen = next((c.summary for c in calls if c.tool == "refine_prompt"), "")
                found = _BRANCH.match(chosen or "")
                branch_a = found[1] if found else "unknown"
                branch_b = {"rapo": "naive", "naive": "rapo"}.get(branch_a, "unknown")
                pairs.append(BranchPair(
                    input=row.input, a=first[0].prompt, b=first[1].prompt, branch_a=branch_a, branch_b=branch_b,
                    winner=int(ranks[1] < ranks[0]), target_words=target,
                    source={"run_dir": str(run_dir), "run_id": run_id, "prompt_id": row.prompt_id,
                            "scores": [first[0].scores, first[1].scores]},
                ))  # fmt: skip
        finally:
            store.close()
    return RunBranchPairs(runs=[str(r) for r in run_dirs], pairs=pairs, skipped=skipped)
