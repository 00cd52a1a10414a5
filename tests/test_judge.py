"""bench/judge.py: sheets keep the key apart and share letters between identical texts; scores count what they say."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.judge import UNCHANGED, Output, Verdict, read_verdicts, scores, sheet
from rapo.finetune import benchmarks

JUDGE = Path(__file__).resolve().parents[1] / "bench" / "judge.py"


def verdict(item, flags, ranking):
    return {
        "item": item,
        "candidates": {
            letter: {"contradicts": c, "why": "", "off_topic": o, "nonsense": n, "conveys_intent": i}
            for letter, (c, o, n, i) in flags.items()
        },
        "ranking": ranking,
    }


KEY = {
    "systems": ["rapo"],
    "items": [
        {"item": 1, "key": "vbench:1", "letters": {"A": ["rapo"], "B": [UNCHANGED], "C": ["GPT-4o"]}},
        {"item": 2, "key": "vbench:2", "letters": {"A": [UNCHANGED, "rapo"], "B": ["Wan"]}},
        {"item": 3, "key": "vbench:3", "letters": {"A": [UNCHANGED], "B": ["rapo"], "C": ["Wan"]}},
    ],
}
VERDICTS = {
    1: Verdict.model_validate(verdict(1, {"A": (0, 0, 0, 5), "B": (0, 0, 0, 4), "C": (0, 0, 0, 5)}, ["C", "A", "B"])),
    2: Verdict.model_validate(verdict(2, {"A": (0, 0, 0, 4), "B": (0, 1, 0, 3)}, ["A", "B"])),
    3: Verdict.model_validate(verdict(3, {"A": (0, 0, 0, 4), "B": (1, 0, 1, 2), "C": (0, 0, 0, 5)}, ["C", "A", "B"])),
}


def test_scores_count_flags_ranks_and_ties():
    table = scores(KEY, VERDICTS)
    rapo = table["rapo"]
    assert rapo["n"] == 3
    assert rapo["contradicts"] == pytest.approx(1 / 3)
    assert rapo["nonsense"] == pytest.approx(1 / 3)
    assert rapo["any_error"] == pytest.approx(1 / 3)
    assert rapo["intent"] == pytest.approx((5 + 4 + 2) / 3)
    # above the unchanged prompt on item 1, the same text on item 2 (a tie), below it on item 3
    assert (rapo["above_unchanged"], rapo["same_as_unchanged"], rapo["below_unchanged"]) == pytest.approx(
        (1 / 3, 1 / 3, 1 / 3)
    )
    assert rapo["above_any_reference"] == pytest.approx(1 / 3)  # item 2: above Wan
    assert table[UNCHANGED]["n"] == 3 and "above_unchanged" not in table[UNCHANGED]
    assert table["Wan"]["off_topic"] == pytest.approx(0.5)


def test_a_verdict_must_rank_every_candidate_once(tmp_path):
    bad = verdict(1, {"A": (0, 0, 0, 5), "B": (0, 0, 0, 4)}, ["A", "A"])
    with pytest.raises(ValueError, match="not every candidate once"):
        Verdict.model_validate(bad)
    path = tmp_path / "v.json"
    path.write_text(json.dumps([bad]))
    with pytest.raises(SystemExit, match="item 1"):
        read_verdicts([path])


@pytest.mark.skipif(not benchmarks.exists(), reason="../shared/data/benchmarks is absent")
def test_sheet_hides_the_systems_and_shares_letters_between_identical_texts(tmp_path):
    dev = benchmarks.dev_prompts()[:6]
    outputs = tmp_path / "rapo.jsonl"
    lines = [json.dumps({"system": "rapo"})]
    for i, p in enumerate(dev):  # every other rewrite is the prompt itself
        text = p.prompt if i % 2 else p.prompt + " The camera holds still."
        lines.append(Output(key=p.key, prompt=p.prompt, text=text).model_dump_json())
    outputs.write_text("\n".join(lines) + "\n")
    args = argparse.Namespace(system=[outputs], benches="vbench,vbench2", limit=0, references=1, parts=2, seed=0,
                              out=tmp_path / "sheet")  # fmt: skip
    sheet(args)  # limit 0: every dev prompt that every system wrote, the six above

    items = json.loads((tmp_path / "sheet" / "sheet.json").read_text())
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())
    assert len(items) == 6 and key["systems"] == ["rapo"]
    assert sum(len(json.loads((tmp_path / "sheet" / f"sheet-{n}.json").read_text())) for n in (1, 2)) == 6
    assert "rapo" not in (tmp_path / "sheet" / "sheet.json").read_text()
    same_text = {p.key for i, p in enumerate(dev) if i % 2}
    for item, k in zip(items, key["items"], strict=True):
        assert set(item) == {"item", "user_prompt", "candidates"}
        assert len(set(item["candidates"].values())) == len(item["candidates"])  # no text twice
        shares = any({UNCHANGED, "rapo"} <= set(systems) for systems in k["letters"].values())
        assert shares == (k["key"] in same_text)
        assert len(k["letters"]) == (2 if shares else 3)  # the prompt, rapo's rewrite unless the same, a reference


@pytest.mark.vllm
def test_judge_asks_a_served_model_and_keeps_only_verdicts_that_fit_the_schema(tmp_path, vllm_spec):
    """SmolLM2 cannot write a valid verdict in 48 tokens: every item is asked `attempts` times and left unjudged."""
    items = [{"item": n, "user_prompt": "a red car", "candidates": {"A": "a red car", "B": "A red car at night."}}
             for n in (1, 2)]  # fmt: skip
    sheet_file = tmp_path / "sheet.json"
    sheet_file.write_text(json.dumps(items))
    proc = subprocess.run(
        [sys.executable, str(JUDGE), "judge", "--sheet", str(sheet_file), "--judge", vllm_spec, "--attempts", "2",
         "--max-tokens", "48"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "0 of 2 items judged" in proc.stdout
    assert json.loads((tmp_path / "verdicts-sheet.json").read_text()) == []
    assert proc.stderr.count("attempt") == 4  # two answers per item, each refused with its schema error
