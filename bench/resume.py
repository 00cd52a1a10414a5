"""Benchmark the resume guarantee: SIGKILL `rapo optimize` at random points, resume, and check the outcome.

Each trial starts a run of VBench prompts with the tiny random Wan pipeline on the CPU, kills it with SIGKILL
after a random number of videos (and a random extra delay, so the kill lands in any node), resumes it with
`--resume`, and checks that every prompt is done, that no video was generated twice (the generation log), and
that the best prompts equal those of one uninterrupted run with the same seeds:

    .venv/bin/python bench/resume.py                  # 10 trials, 5 prompts
    .venv/bin/python bench/resume.py --trials 30 --seed 7

Prints a line per trial and the totals; writes `bench/.work/resume.json`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RAPO = [sys.executable, "-m", "rapo"]


def optimize(prompts: Path, run_dir: Path, *extra: str) -> list[str]:
    """The `rapo optimize` command line of every run of this benchmark."""
    return [*RAPO, "optimize", str(prompts), "--out", str(run_dir), "--generator", "tiny-wan",
            "--critics", "temporal,imaging", "--max-iters", "1", "--candidates", "1", *extra]  # fmt: skip


def outcome(run_dir: Path) -> dict:
    """Statuses, best prompts and the most times one video key was generated, from a finished run dir."""
    rows = [json.loads(line) for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
    log = run_dir / "videos" / "generation.log"
    made = Counter(json.loads(line)["key"] for line in log.read_text().splitlines()) if log.is_file() else Counter()
    return {
        "statuses": [r["status"] for r in rows],
        "best": [r["best_prompt"] for r in rows],
        "errors": [r["error"] for r in rows if r["status"] != "done"],
        "most_made": max(made.values(), default=0),
    }


def main() -> None:
    """Run the trials and print what each found."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill points.")
    parser.add_argument("--work", type=Path, default=Path("bench/.work"))
    args = parser.parse_args()

    # 1. Prompts, and one uninterrupted run to compare with
    source = SHARED / "benchmarks" / "vbench" / "prompts" / "all_dimension.txt"
    if not source.is_file():
        raise SystemExit(f"{source} not found: this benchmark reads ../shared/data")
    work = args.work / "resume"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prompts = work / "prompts.txt"
    prompts.write_text("".join(line for _, line in zip(range(args.prompts), source.open(), strict=False)))
    started = time.perf_counter()
    subprocess.run(optimize(prompts, work / "uninterrupted"), check=True, capture_output=True)
    uninterrupted_s = time.perf_counter() - started
    expected = outcome(work / "uninterrupted")
    print(f"uninterrupted run: {uninterrupted_s:.1f} s, {expected['statuses'].count('done')} done", flush=True)

    # 2. Trials: kill after N videos plus a random delay, resume, compare
    chance = random.Random(args.seed)
    results = []
    for trial in range(args.trials):
        run_dir = work / f"trial-{trial}"
        log = run_dir / "videos" / "generation.log"
        videos, delay = chance.randint(1, 2 * args.prompts - 1), chance.uniform(0.0, 1.5)
        proc = subprocess.Popen(optimize(prompts, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not (log.is_file() and len(log.read_text().splitlines()) >= videos):
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is not None:
            print(f"trial {trial}: the run finished before the kill", flush=True)
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        made_before = len(log.read_text().splitlines()) if log.is_file() else 0
        resumed = subprocess.run(optimize(prompts, run_dir, "--resume"), capture_output=True, text=True)
        found = (
            outcome(run_dir) if resumed.returncode == 0 else {"statuses": [], "best": [], "errors": [], "most_made": 0}
        )
        ok = {
            "resumed": resumed.returncode == 0,
            "all_done": found["statuses"] == ["done"] * args.prompts,
            "no_video_twice": found["most_made"] == 1,
            "same_best_prompts": found["best"] == expected["best"],
        }
        stderr = "" if ok["resumed"] else resumed.stderr[-500:]
        results.append({"trial": trial, "videos_before_kill": made_before, "delay_s": round(delay, 3), **ok,
                        "errors": found["errors"], "stderr": stderr})  # fmt: skip
        verdict = "ok" if all(ok.values()) else "FAILED " + ", ".join(k for k, v in ok.items() if not v)
        print(f"trial {trial}: killed after {made_before} videos (+{delay:.2f} s): {verdict}", flush=True)

    # 3. Totals
    totals = {
        key: sum(r[key] for r in results) for key in ("resumed", "all_done", "no_video_twice", "same_best_prompts")
    }
    print(f"{len(results)} killed runs: " + ", ".join(f"{key} {n}/{len(results)}" for key, n in totals.items()))
    report = {"trials": results, "totals": totals, "uninterrupted_s": round(uninterrupted_s, 1), "seed": args.seed}
    (args.work / "resume.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
