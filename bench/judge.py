"""The blind judge: the project's measure of what Stage 1 writes, beside the unchanged prompt and reference rewrites.

A sheet holds, per dev prompt (`rapo.finetune.benchmarks`: prompts no training sees), the unchanged prompt, each
system's rewrite and the benchmark's reference rewrites, shuffled under letters; identical texts share one letter.
The key (letter -> systems) is written to a separate file that a judge never sees. A judge answers per item with
flags per candidate (contradicts + why, off_topic, nonsense, conveys_intent 1-5) and a full ranking without ties
(`prompts/templates/judge_rubric.toml`): an OpenAI-compatible model (`judge`), or a person or another program that
writes the same JSON. `score` turns key and verdicts into the README's table.

    .venv/bin/python bench/judge.py rewrite --name rapo --out /tmp/judge/rapo.jsonl            # Stage 1 on dev
    .venv/bin/python bench/judge.py rewrite --name rapo-unverified --verify off --out /tmp/judge/old.jsonl
    .venv/bin/python bench/judge.py sheet --system /tmp/judge/rapo.jsonl --system /tmp/judge/old.jsonl --parts 4 --out S
    # S/sheet.json, S/sheet-1.json .. S/sheet-4.json for four judges, and S/key.json that no judge may see
    .venv/bin/python bench/judge.py judge --sheet /tmp/judge/sheet/sheet.json --judge openai:URL#MODEL
    .venv/bin/python bench/judge.py score --key /tmp/judge/sheet/key.json --verdicts /tmp/judge/sheet/verdicts-*.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import time
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

# Run as a script, this file's folder comes first on sys.path: keep it from hiding installed packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from rapo.finetune import benchmarks  # noqa: E402

UNCHANGED = "unchanged prompt"


class CandidateVerdict(BaseModel):
    """The judge's flags on one candidate."""

    contradicts: bool
    why: str = ""
    off_topic: bool
    nonsense: bool
    conveys_intent: int = Field(ge=1, le=5)


class Verdict(BaseModel):
    """The judge's answer on one item: flags per letter and a ranking of every letter, best first."""

    item: int
    candidates: dict[str, CandidateVerdict]
    ranking: list[str]
    note: str = ""

    @model_validator(mode="after")
    def _full_ranking(self) -> Verdict:
        if sorted(self.ranking) != sorted(self.candidates):
            raise ValueError(f"item {self.item}: ranking {self.ranking} is not every candidate once")
        return self


class SheetItem(BaseModel):
    """What a judge sees: the prompt and lettered candidates, nothing else."""

    item: int
    user_prompt: str
    candidates: dict[str, str]


class KeyItem(BaseModel):
    """What a judge never sees: where the item comes from and which systems wrote each letter."""

    item: int
    key: str = Field(description="bench:line of the prompt.")
    letters: dict[str, list[str]]


class Output(BaseModel):
    """One system's rewrite of one dev prompt (a line of `rewrite`'s JSONL)."""

    key: str
    prompt: str
    text: str
    rejected: list[str] = Field(default_factory=list)
    seconds: float | None = None


def read_outputs(path: Path) -> tuple[str, dict[str, Output]]:
    """(system name, outputs by prompt key) of a `rewrite` file; its first line names the system."""
    lines = path.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[0])
    return head["system"], {o.key: o for o in (Output.model_validate_json(line) for line in lines[1:] if line)}


def rewrite(args: argparse.Namespace) -> None:
    """Stage 1 as shipped (or with --verify off / other settings) on the dev prompts; one JSON line per prompt."""
    from rapo.agent.runs.refine import open_graph, stage1_pipeline
    from rapo.agent.settings import Settings
    from rapo.common import progress_bar, quiet_libraries
    from rapo.tools.stage1 import Stage1Settings

    quiet_libraries()
    benches = tuple(args.benches.split(","))
    found = [p for b in benches for p in benchmarks.load(b) if p.split == args.split]
    prompts = pick(found, args.limit)
    if args.facets_only:  # what Stage 1 answers when no added sentence passes, without running it
        from rapo.tools.facets import with_facets
        from rapo.tools.profiles import DEFAULT_TARGET, profile

        limit = profile(DEFAULT_TARGET).max_words
        lines = [json.dumps({"system": args.name, "settings": {"facets_only": True}})]
        lines += [Output(key=p.key, prompt=p.prompt, text=with_facets(p.prompt, p.prompt,
                         max(limit, len(p.prompt.split())))[0]).model_dump_json() for p in prompts]  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(prompts)} prompts with their facets to {args.out}")
        return
    changes = json.loads(args.settings) if args.settings else {}
    if args.verify == "off":
        changes["verify"] = False
    settings = Settings()
    stage1 = stage1_pipeline(
        open_graph(None, settings), None, settings.llm_dtype, Stage1Settings(**changes), args.adapter
    )
    stage1.load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out, progress_bar() as bar:
        out.write(json.dumps({"system": args.name, "settings": changes, "models": stage1.models()}) + "\n")
        task = bar.add_task(args.name, total=len(prompts))
        for p in prompts:
            started = time.perf_counter()
            result = stage1.run(p.prompt, args.seed)
            rejected = [f"{r.step}: {r.reason}" for r in result.rejected]
            line = Output(key=p.key, prompt=p.prompt, text=result.prompt, rejected=rejected,
                          seconds=round(time.perf_counter() - started, 3))  # fmt: skip
            out.write(line.model_dump_json() + "\n")
            out.flush()
            bar.advance(task)
    print(f"wrote {len(prompts)} rewrites to {args.out}")


def pick(prompts: list[benchmarks.BenchPrompt], limit: int) -> list[benchmarks.BenchPrompt]:
    """`limit` prompts spread evenly over the list, each bench taking its share (all of them for 0)."""
    if not limit or limit >= len(prompts):
        return prompts
    by_bench: dict[str, list[benchmarks.BenchPrompt]] = defaultdict(list)
    for p in prompts:
        by_bench[p.bench].append(p)
    share = -(-limit // len(by_bench))
    picked = [rows[i * len(rows) // share] for rows in by_bench.values() for i in range(min(share, len(rows)))]
    return picked[:limit]


def sheet(args: argparse.Namespace) -> None:
    """Write sheet.json (and --parts smaller sheets) for the judges, and key.json for `score`."""
    systems = [read_outputs(path) for path in args.system]
    dev = {p.key: p for p in benchmarks.dev_prompts(tuple(args.benches.split(",")))}
    keys = [k for k in pick(list(dev.values()), args.limit) if all(k.key in outs for _, outs in systems)]
    rng = random.Random(args.seed)
    rng.shuffle(keys)
    items, key_items = [], []
    for n, p in enumerate(keys, start=1):
        texts: dict[str, list[str]] = defaultdict(list)  # text -> systems that wrote it
        texts[p.prompt].append(UNCHANGED)
        for name, outs in systems:
            texts[outs[p.key].text].append(name)
        refs = sorted(p.references)
        for name in [refs[(n + i) % len(refs)] for i in range(min(args.references, len(refs)))]:
            texts[p.references[name]].append(name)
        order = list(texts)
        rng.shuffle(order)
        letters = dict(zip(string.ascii_uppercase, order, strict=False))
        items.append(SheetItem(item=n, user_prompt=p.prompt, candidates=letters))
        key_items.append(KeyItem(item=n, key=p.key, letters={k: texts[t] for k, t in letters.items()}))
    args.out.mkdir(parents=True, exist_ok=True)
    dump = [i.model_dump() for i in items]
    (args.out / "sheet.json").write_text(json.dumps(dump, indent=1, ensure_ascii=False))
    for part in range(1, args.parts + 1 if args.parts > 1 else 1):
        chunk = dump[(part - 1) * len(dump) // args.parts : part * len(dump) // args.parts]
        (args.out / f"sheet-{part}.json").write_text(json.dumps(chunk, indent=1, ensure_ascii=False))
    key = {"seed": args.seed, "systems": [n for n, _ in systems], "items": [k.model_dump() for k in key_items]}
    (args.out / "key.json").write_text(json.dumps(key, indent=1))
    print(f"wrote {len(items)} items to {args.out}/sheet.json (key: {args.out}/key.json, keep it from the judge)")


def sentences(args: argparse.Namespace) -> None:
    """A labelling sheet: per training prompt, the sentences rewrites added (rapo's and a reference's), shuffled.

    Labels of these sheets (`prompts/templates/sentence_labels.toml`) train the sentence verifier; `labels` joins
    them with the key into its training rows.
    """
    from rapo.tools.distill import answer_prefix
    from rapo.tools.verifier import added_sentences
    from rapo.tools.verifier import sentences as split_sentences

    systems = [read_outputs(path) for path in args.system]
    found = {p.key: p for b in args.benches.split(",") for p in benchmarks.load(b) if p.split == "train"}
    keys = sorted({k for _, outs in systems for k in outs if k in found})
    rng = random.Random(args.seed)
    rng.shuffle(keys)
    items, key_items = [], []
    for n, key in enumerate(keys[: args.limit or None], start=1):
        p = found[key]
        rows: dict[str, str] = {}  # sentence -> source
        for name, outs in systems:
            for sentence in added_sentences(answer_prefix(p.prompt), outs[key].text) if key in outs else []:
                rows.setdefault(sentence, name)
        refs = sorted(p.references)
        if refs and args.references:
            ref = refs[n % len(refs)]
            ref_sentences = split_sentences(p.references[ref])
            for sentence in rng.sample(ref_sentences, k=min(args.references, len(ref_sentences))):
                rows.setdefault(sentence, ref)
        order = list(rows)
        rng.shuffle(order)
        items.append({"item": n, "user_prompt": p.prompt, "sentences": {str(i): s for i, s in enumerate(order, 1)}})
        key_items.append({"item": n, "key": key, "sources": {str(i): rows[s] for i, s in enumerate(order, 1)}})
    args.out.mkdir(parents=True, exist_ok=True)
    for part in range(1, args.parts + 1):
        chunk = items[(part - 1) * len(items) // args.parts : part * len(items) // args.parts]
        (args.out / f"sentences-{part}.json").write_text(json.dumps(chunk, indent=1, ensure_ascii=False))
    (args.out / "sentences.json").write_text(json.dumps(items, indent=1, ensure_ascii=False))
    (args.out / "sentences-key.json").write_text(json.dumps({"seed": args.seed, "items": key_items}, indent=1))
    total = sum(len(i["sentences"]) for i in items)
    print(f"wrote {len(items)} prompts, {total} sentences to {args.out}/sentences-*.json (key apart)")


def labels(args: argparse.Namespace) -> None:
    """Join a `sentences` sheet, its key and the labellers' answers into the verifier's rows (JSONL)."""
    from rapo.tools.verifier import LABELS

    sheet = {i["item"]: i for i in json.loads(args.sheet.read_text(encoding="utf-8"))}
    key = {i["item"]: i for i in json.loads(args.key.read_text(encoding="utf-8"))["items"]}
    rows = []
    for path in args.answers:
        for answer in json.loads(path.read_text(encoding="utf-8")):
            item = sheet[answer["item"]]
            for number, flags in answer["labels"].items():
                label = next((name for name in LABELS[1:] if flags.get(name)), "ok")
                rows.append({"key": key[item["item"]]["key"], "prompt": item["user_prompt"],
                             "sentence": item["sentences"][number], "source": key[item["item"]]["sources"][number],
                             "label": label, "why": flags.get("why", "")})  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts = {name: sum(r["label"] == name for r in rows) for name in LABELS}
    print(f"wrote {len(rows)} labelled sentences to {args.out}: {counts}")


def judge(args: argparse.Namespace) -> None:
    """Ask an OpenAI-compatible model for each item's verdict; answers already in --out are kept (resumable)."""
    from openai import OpenAI

    from rapo.prompts.loader import load_template
    from rapo.tools.llm_openai import Endpoint, api_key

    endpoint = Endpoint.parse(args.judge)
    client = OpenAI(base_url=endpoint.base_url, api_key=api_key(), timeout=args.timeout)
    model = endpoint.model or client.models.list().data[0].id
    rubric = load_template("judge_rubric")
    items = [SheetItem.model_validate(i) for i in json.loads(args.sheet.read_text(encoding="utf-8"))]
    out = args.out or args.sheet.with_name(f"verdicts-{args.sheet.stem}.json")
    done = {v["item"]: v for v in (json.loads(out.read_text()) if out.exists() else [])}
    for item in items:
        if item.item in done:
            continue
        messages = rubric.messages(item=item.model_dump_json())
        for attempt in range(args.attempts):
            reply = client.chat.completions.create(
                model=model, messages=messages, temperature=0, seed=attempt, max_tokens=args.max_tokens,
                response_format={"type": "json_object"},
            )  # fmt: skip
            try:
                verdict = Verdict.model_validate_json(reply.choices[0].message.content or "")
            except ValidationError as error:
                print(f"item {item.item}, attempt {attempt + 1}: {str(error).splitlines()[0]}", file=sys.stderr)
                continue
            if sorted(verdict.candidates) == sorted(item.candidates):
                done[item.item] = verdict.model_dump() | {"item": item.item, "judge": f"{model} ({rubric.id})"}
                break
        out.write_text(json.dumps(sorted(done.values(), key=lambda v: v["item"]), indent=1))
    print(f"{len(done)} of {len(items)} items judged by {model}: {out}")


def read_verdicts(paths: list[Path]) -> dict[int, Verdict]:
    """Every verdict of the files by item; a one-line error names a file and item that break the schema."""
    verdicts: dict[int, Verdict] = {}
    for path in paths:
        for raw in json.loads(path.read_text(encoding="utf-8")):
            try:
                verdict = Verdict.model_validate(raw)
            except ValidationError as error:
                raise SystemExit(f"{path}: item {raw.get('item')}: {str(error).splitlines()[0]}") from None
            verdicts[verdict.item] = verdict
    return verdicts


def scores(key: dict, verdicts: dict[int, Verdict]) -> dict[str, dict[str, float]]:
    """Per system: flag rates, any-error rate, mean intent, mean rank, and shares ranked above / below others.

    A system that wrote the same text as another shares its letter, its flags and its rank: against each other
    they tie. "above reference" counts the items where the system is ranked above every reference rewrite shown
    with it (`above any reference`: above at least one).
    """
    refs = {r for item in key["items"] for systems in item["letters"].values() for r in systems} - set(key["systems"])
    refs.discard(UNCHANGED)
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for item in key["items"]:
        verdict = verdicts.get(item["item"])
        if verdict is None:
            continue
        if sorted(verdict.candidates) != sorted(item["letters"]):
            raise SystemExit(f"item {item['item']}: the verdict's letters differ from the key's")
        rank = {letter: i + 1 for i, letter in enumerate(verdict.ranking)}
        letter_of = {s: letter for letter, systems in item["letters"].items() for s in systems}
        shown_refs = [letter_of[r] for r in refs if r in letter_of]
        for system, letter in letter_of.items():
            flags = verdict.candidates[letter]
            row = rows[system]
            row["contradicts"].append(flags.contradicts)
            row["off_topic"].append(flags.off_topic)
            row["nonsense"].append(flags.nonsense)
            row["any_error"].append(flags.contradicts or flags.off_topic or flags.nonsense)
            row["intent"].append(flags.conveys_intent)
            row["rank"].append(rank[letter])
            row["candidates"].append(len(rank))
            if system != UNCHANGED:
                other = letter_of[UNCHANGED]
                row["above_unchanged"].append(rank[letter] < rank[other])
                row["same_as_unchanged"].append(letter == other)
                row["below_unchanged"].append(rank[letter] > rank[other])
            if shown_refs and system not in refs:
                row["above_any_reference"].append(any(rank[letter] < rank[r] for r in shown_refs))
                row["above_every_reference"].append(all(rank[letter] < rank[r] for r in shown_refs))
    return {
        system: {"n": len(row["rank"])} | {name: statistics.mean(values) for name, values in row.items()}
        for system, row in rows.items()
    }


def score(args: argparse.Namespace) -> None:
    """Print the table of `scores` (Markdown) and write it as JSON beside the key."""
    key = json.loads(args.key.read_text(encoding="utf-8"))
    verdicts = read_verdicts(args.verdicts)
    table = scores(key, verdicts)
    judged = len([i for i in key["items"] if i["item"] in verdicts])
    print(f"{judged} of {len(key['items'])} items judged ({args.judge_name})\n")
    header = ["candidate", "n", "contradicts", "off-topic", "nonsense", "any error", "intent (1-5)", "mean rank",
              "above unchanged", "same as unchanged", "below unchanged", "above a reference"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    order = [UNCHANGED, *key["systems"], *sorted(set(table) - {UNCHANGED, *key["systems"]})]
    for system in [s for s in order if s in table]:
        row = table[system]

        def pct(name: str, row: dict = row) -> str:
            return f"{row[name]:.0%}" if name in row else ""

        cells = [system, str(row["n"]), pct("contradicts"), pct("off_topic"), pct("nonsense"), pct("any_error"),
                 f"{row['intent']:.2f}", f"{row['rank']:.2f} of {row['candidates']:.1f}", pct("above_unchanged"),
                 pct("same_as_unchanged"), pct("below_unchanged"), pct("above_any_reference")]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    (args.key.with_name("scores.json")).write_text(json.dumps({"judge": args.judge_name, "scores": table}, indent=1))


def main() -> None:
    """Parse the subcommand and run it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("rewrite", help=rewrite.__doc__)
    p.add_argument("--name", required=True, help="The system's name in the key and the table.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--benches", default="vbench,vbench2")
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adapter", default=None, help="Stage 1's adapter (default: the shipped one; none: plain).")
    p.add_argument("--split", choices=["dev", "train"], default="dev", help="train: for the verifier's labels.")
    p.add_argument("--verify", choices=["on", "off"], default="on")
    p.add_argument("--facets-only", action="store_true", help="The prompt and its facets, no LLM.")
    p.add_argument("--settings", default="", help="Other Stage 1 settings as JSON, e.g. '{\"max_modifiers\": 0}'.")
    p.set_defaults(run=rewrite)
    p = sub.add_parser("sheet", help=sheet.__doc__)
    p.add_argument("--system", type=Path, action="append", default=[], help="A `rewrite` JSONL; repeat.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--benches", default="vbench,vbench2")
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--references", type=int, default=1, help="Reference rewrites per item (rotating).")
    p.add_argument("--parts", type=int, default=1, help="Also split the sheet into this many files.")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=sheet)
    p = sub.add_parser("sentences", help=sentences.__doc__)
    p.add_argument("--system", type=Path, action="append", default=[], help="A `rewrite --split train` JSONL.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--benches", default="vbench,vbench2,videophy")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--references", type=int, default=2, help="Sentences of one reference rewrite per prompt.")
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=sentences)
    p = sub.add_parser("labels", help=labels.__doc__)
    p.add_argument("--sheet", type=Path, required=True, help="sentences.json")
    p.add_argument("--key", type=Path, required=True, help="sentences-key.json")
    p.add_argument("--answers", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=labels)
    p = sub.add_parser("judge", help=judge.__doc__)
    p.add_argument("--sheet", type=Path, required=True)
    p.add_argument("--judge", required=True, help="openai:URL#MODEL")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--attempts", type=int, default=3, help="Answers asked per item before it is left unjudged.")
    p.add_argument("--max-tokens", type=int, default=2048, help="The longest answer asked for.")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(run=judge)
    p = sub.add_parser("score", help=score.__doc__)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--verdicts", type=Path, nargs="+", required=True)
    p.add_argument("--judge-name", default="judge not named", help="Which judge wrote the verdicts (the table says).")
    p.set_defaults(run=score)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
