"""Train the sentence verifier (`rapo.tools.verifier`). Reads top to bottom, nanoGPT style.

A softmax regression over all-MiniLM-L6-v2 features of (user prompt, added sentence) says ok, contradicts,
off_topic or nonsense. The features are the embedder's own vectors (the one Stage 1 has loaded already), so a check
costs one embedding of each sentence and a matrix product: no second model, no torch at check time.

    .venv/bin/python -m rapo.finetune.verifier --labels finetune/data/verifier_labels.jsonl --out OUT
    # OUT: tools/verifiers/minilm-judge is the one Stage 1 ships

Data:
- judged rows (`--labels`, from `bench/judge.py labels`): a blind judge's flags on the sentences that rapo and the
  reference rewriters added to training prompts. Split by prompt group: `--val-fraction` of the groups is held out,
  and the threshold and the figures in `verifier.json` come from those held-out rows only;
- weak rows built from the benchmarks' training prompts (`rapo.finetune.benchmarks`, never the dev split), weighted
  `--weak-weight`: a reference's own sentence as ok, a sentence of another prompt's reference as off_topic, and a
  reference sentence whose relation, direction, count or outcome word is flipped ("left" -> "right") as contradicts.

The threshold is the least p(ok) at which the held-out sentences rapo wrote (the ones the verifier meets in use)
that reach it are at least `--precision` ok, with at least `--min-kept` of them kept; the highest held-out p(ok) of
those sentences when no threshold reaches it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

from rapo.finetune import benchmarks
from rapo.finetune.default_adapter import group_of
from rapo.graph_db.embeddings import Embedder
from rapo.tools.verifier import LABELS, features, sentences

# Word flips that turn a faithful sentence into one that contradicts (applied to whole words, both ways).
FLIPS = [("left", "right"), ("above", "below"), ("in front of", "behind"), ("inside", "outside"),
         ("rises", "falls"), ("melts", "freezes"), ("opens", "closes"), ("two", "three"), ("slowly", "rapidly"),
         ("empty", "full"), ("towards", "away from"), ("sinks", "floats"), ("increases", "decreases"),
         ("expands", "shrinks"), ("wet", "dry"), ("sunrise", "sunset"), ("upward", "downward")]  # fmt: skip


def say(line: str) -> None:
    """One line of progress on stderr."""
    sys.stderr.write(line + "\n")


def flip(sentence: str, rng: random.Random) -> str | None:
    """`sentence` with one of its FLIPS words swapped for its opposite, or None when it has none."""
    found = [(a, b) for a, b in FLIPS for w in (a, b) if re.search(rf"\b{w}\b", sentence, re.I)]
    if not found:
        return None
    a, b = rng.choice(found)
    swap = {a: b, b: a}
    return re.sub(rf"\b({a}|{b})\b", lambda m: swap[m[0].lower()], sentence, count=1, flags=re.I)


def weak_rows(n_prompts: int, seed: int) -> list[dict]:
    """Ok, off_topic and contradicts rows from `n_prompts` training prompts' references (see the module doc)."""
    rng = random.Random(seed)
    prompts = [p for b in ("vbench", "vbench2", "videophy") for p in benchmarks.load(b) if p.split == "train"]
    prompts = rng.sample(prompts, k=min(n_prompts, len(prompts)))
    pool = [(p.key, s) for p in prompts for text in p.references.values() for s in sentences(text)]
    rows = []
    for p in prompts:
        own = [s for text in p.references.values() for s in sentences(text)]
        if not own:
            continue
        s = rng.choice(own)
        rows.append({"prompt": p.prompt, "sentence": s, "label": "ok", "source": "weak"})
        if (flipped := flip(s, rng)) is not None:
            rows.append({"prompt": p.prompt, "sentence": flipped, "label": "contradicts", "source": "weak"})
        other_key, other = rng.choice(pool)
        if other_key != p.key:
            rows.append({"prompt": p.prompt, "sentence": other, "label": "off_topic", "source": "weak"})
    return rows


def is_val(prompt: str, fraction: float, seed: int) -> bool:
    """Whether the prompt's group is held out: a seeded hash of `group_of(prompt)`, below `fraction`."""
    digest = hashlib.sha256(f"{seed}:{group_of(prompt)}".encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF < fraction


def choose_threshold(p_ok: np.ndarray, ok: np.ndarray, precision: float, min_kept: int) -> float:
    """The least p(ok) whose kept rows number `min_kept` or more and are `precision` ok (see the module doc)."""
    for t in np.sort(np.unique(p_ok)):
        kept = ok[p_ok >= t]
        if len(kept) < min_kept:
            break
        if kept.mean() >= precision:
            return float(t)
    return float(p_ok.max()) + 1e-6


def main() -> None:  # noqa: D103 - the module doc is the command's doc
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--weak-prompts", type=int, default=1500, help="Training prompts that weak rows come from.")
    parser.add_argument("--weak-weight", type=float, default=0.3)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--precision", type=float, default=0.8)
    parser.add_argument("--min-kept", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()

    # 1. Data: judged rows split by prompt group; weak rows only ever train
    judged = [json.loads(line) for line in args.labels.read_text(encoding="utf-8").splitlines() if line.strip()]
    dev = benchmarks.dev_texts()
    if leaked := [r["prompt"] for r in judged if " ".join(r["prompt"].lower().split()) in dev]:
        sys.exit(f"{args.labels}: {len(leaked)} rows are on dev prompts (e.g. {leaked[0]!r}); label training prompts")
    val = [r for r in judged if is_val(r["prompt"], args.val_fraction, args.seed)]
    held = {r["prompt"] for r in val}
    weak = [r for r in weak_rows(args.weak_prompts, args.seed) if r["prompt"] not in held]
    train = [r for r in judged if r["prompt"] not in held] + weak
    weight = np.array([args.weak_weight if r["source"] == "weak" else 1.0 for r in train])
    counts = {name: {label: sum(r["label"] == label for r in rows) for label in LABELS}
              for name, rows in (("judged train", [r for r in judged if r["prompt"] not in held]),
                                 ("weak train", weak), ("judged val", val))}  # fmt: skip
    say(f"rows: {counts}")

    # 2. Features: the embedder's vectors of prompt and sentence (tools/verifier.py `features`)
    embedder = Embedder()

    def matrix(rows: list[dict]) -> np.ndarray:
        return features(embedder.encode([r["prompt"] for r in rows]), embedder.encode([r["sentence"] for r in rows]))

    x, x_val = matrix(train), matrix(val)  # (N, F), (V, F)
    y = np.array([LABELS.index(r["label"]) for r in train])
    onehot = np.eye(len(LABELS))[y]  # (N, 4)

    # 3. Train: full-batch gradient descent on the weighted cross-entropy, classes balanced, L2 on the weights
    freq = np.array([weight[y == k].sum() for k in range(len(LABELS))])
    sample_w = weight * (freq.sum() / np.maximum(freq, 1e-9) / len(LABELS))[y]  # (N,)
    w = np.zeros((x.shape[1], len(LABELS)))
    b = np.zeros(len(LABELS))
    for step in range(1, args.steps + 1):
        logits = x @ w + b  # (N, 4)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) * sample_w[:, None] / sample_w.sum()  # (N, 4)
        w -= args.lr * (x.T @ grad + args.l2 * w)
        b -= args.lr * grad.sum(0)
        if step % 500 == 0 or step == args.steps:
            loss = -(np.log(p[np.arange(len(y)), y] + 1e-12) * sample_w).sum() / sample_w.sum()
            say(f"step {step}/{args.steps} loss {loss:.4f}")

    # 4. Held-out figures and the threshold (on the sentences rapo wrote)
    logits = x_val @ w + b
    p_val = np.exp(logits - logits.max(1, keepdims=True))
    p_ok = p_val[:, 0] / p_val.sum(1)
    ok = np.array([r["label"] == "ok" for r in val])
    mine = np.array(["rapo" in r["source"] for r in val])
    threshold = choose_threshold(p_ok[mine], ok[mine], args.precision, args.min_kept)

    def auc(scores: np.ndarray, good: np.ndarray) -> float:
        return float((scores[good][:, None] > scores[~good][None, :]).mean())

    def figures(rows: np.ndarray) -> dict[str, float]:
        kept = rows & (p_ok >= threshold)
        return {"sentences": int(rows.sum()), "ok": int(ok[rows].sum()), "auc": round(auc(p_ok[rows], ok[rows]), 4),
                "kept": int(kept.sum()), "kept_ok": int(ok[kept].sum()),
                "precision": round(float(ok[kept].mean()), 4) if kept.any() else None,
                "recall": round(float(ok[kept].sum() / max(1, ok[rows].sum())), 4)}  # fmt: skip

    held_out = {"rapo's sentences": figures(mine), "reference sentences": figures(~mine), "all": figures(mine | ~mine)}
    say(f"threshold {threshold:.4f}; held out: {json.dumps(held_out)}")

    # 5. Save the weights and verifier.json
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "weights.npz", w=w.astype(np.float32), b=b.astype(np.float32))
    config = {
        "threshold": round(threshold, 6), "labels": list(LABELS), "embedder": embedder.model_id,
        "held_out": held_out, "target_precision": args.precision, "rows": counts,
        "labels_file": str(args.labels), "labels_sha256": hashlib.sha256(args.labels.read_bytes()).hexdigest(),
        "command": "python -m rapo.finetune.verifier " + " ".join(sys.argv[1:]),
        "args": {k: str(v) for k, v in vars(args).items()}, "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (args.out / "verifier.json").write_text(json.dumps(config, indent=2))
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
