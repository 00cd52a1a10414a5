"""Claims on videos in the store, so that two workers of a distributed run never generate the same video.

The video cache is keyed by content hash in the run dir (`tools/generator.py`), which distributed workers share
(a network folder). Its per-key file lock only holds on one machine, so a worker first claims the key in the
store: a row in `video_claims` whose primary key is (run id, video key), taken by an INSERT in a transaction.
The worker that inserts the row generates the video and marks the claim done; any other waits until then and
takes the video from the cache. A claim is a lease, renewed while its video is being made: when its holder dies
(a SIGKILL, a lost node) the lease runs out and the next worker that asks takes the claim over; the cache still
holds any mp4 the dead worker finished, so nothing is made twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from rapo.agent.runs.db import Cursor
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.common import RapoError
from rapo.tools.generator import GeneratedVideo, GenerationParams, VideoGenerator, video_key

Outcome = Literal["mine", "done"]


class VideoClaims:
    """One worker's claims on the video keys of one run.

    Args:
        store: the run's trajectory store (shared by every worker).
        run_id: the run whose videos are claimed.
        owner: this worker's name, unique in the run (host, pid and a random suffix).
        lease_s: how long a claim outlives its last renewal; renewed every third of it while a video is made.
        poll_s: how often a waiting worker looks again.
    """

    def __init__(
        self, store: TrajectoryStore, run_id: str, owner: str, lease_s: float = 60.0, poll_s: float = 0.2
    ) -> None:
        self.store, self.run_id, self.owner = store, run_id, owner
        self.lease_s, self.poll_s = lease_s, poll_s

    def acquire(self, key: str) -> Outcome:
        """Block until the video is this worker's to make ("mine") or another worker made it ("done")."""
        while True:
            outcome = self.store.db.run(lambda cur: self._try(cur, key))
            if outcome != "wait":
                return outcome
            time.sleep(self.poll_s)

    def _try(self, cur: Cursor, key: str) -> Outcome | Literal["wait"]:
        now = time.time()
        where = (self.run_id, key)
        cur.execute(
            "INSERT INTO video_claims VALUES (?, ?, ?, 'claimed', ?, ?) ON CONFLICT DO NOTHING",
            (*where, self.owner, now, now + self.lease_s),
        )
        owner, state, expires_at = cur.execute(
            "SELECT owner, state, expires_at FROM video_claims WHERE run_id = ? AND video_key = ?", where
        ).fetchone()
        if state == "done":
            return "done"
        if owner == self.owner:
            return "mine"
        if expires_at >= now:
            return "wait"
        # The holder stopped renewing (it died): take the claim over, unless another worker just did.
        cur.execute(
            "UPDATE video_claims SET owner = ?, claimed_at = ?, expires_at = ? "
            "WHERE run_id = ? AND video_key = ? AND owner = ? AND state = 'claimed'",
            (self.owner, now, now + self.lease_s, *where, owner),
        )
        row = cur.execute("SELECT owner FROM video_claims WHERE run_id = ? AND video_key = ?", where).fetchone()
        return "mine" if row[0] == self.owner else "wait"

    @contextmanager
    def renewing(self, key: str) -> Iterator[None]:
        """Renew this worker's lease on `key` in the background while the body runs."""
        stop = threading.Event()

        def renew() -> None:
            sql = "UPDATE video_claims SET expires_at = ? WHERE run_id = ? AND video_key = ? AND owner = ?"
            while not stop.wait(self.lease_s / 3):
                args = (time.time() + self.lease_s, self.run_id, key, self.owner)
                self.store.db.run(lambda cur, args=args: cur.execute(sql, args))

        thread = threading.Thread(target=renew, name=f"claim-{key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def done(self, key: str, generated_seconds: float | None) -> None:
        """Mark the claim done; with `generated_seconds`, also log the real pipeline call that made the video."""
        call_id = uuid.uuid4().hex  # the log row's key: a transaction run again after a reconnect adds no twin

        def work(cur: Cursor) -> None:
            cur.execute("UPDATE video_claims SET state = 'done' WHERE run_id = ? AND video_key = ?", (self.run_id, key))
            if generated_seconds is not None:
                cur.execute(
                    "INSERT INTO video_generations VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (call_id, self.run_id, key, self.owner, generated_seconds, time.time()),
                )

        self.store.db.run(work)

    def release(self, key: str) -> None:
        """Give a claim back (generation failed), so another worker may try."""
        self.store.db.run(
            lambda cur: cur.execute(
                "DELETE FROM video_claims WHERE run_id = ? AND video_key = ? AND owner = ? AND state = 'claimed'",
                (self.run_id, key, self.owner),
            )
        )


def generation_counts(store: TrajectoryStore, run_id: str) -> dict[str, int]:
    """Video key -> real pipeline calls recorded in the store for a run (1 for every video made once)."""
    rows = store.db.run(
        lambda cur: cur.execute(
            "SELECT video_key, count(*) FROM video_generations WHERE run_id = ? GROUP BY video_key", (run_id,)
        ).fetchall()
    )
    return {key: int(n) for key, n in rows}


class ClaimedGenerator(VideoGenerator):
    """A `VideoGenerator` that claims each video in the store before making it.

    `outcomes` counts what each request found: `generated`, `reused` (another worker made it) or
    `cached`; `busy_s` is the time spent in pipeline calls (the GPU-busy time).
    """

    def __init__(self, spec: str, claims: VideoClaims, **kwargs: object) -> None:
        super().__init__(spec, **kwargs)  # type: ignore[arg-type]
        self.claims = claims
        self.outcomes: Counter[str] = Counter()
        self.busy_s = 0.0

    def generate(self, prompt: str, seed: int, params: GenerationParams, out_dir: Path) -> GeneratedVideo:
        """Claim the video's key, then make it or take it from the cache; see `VideoGenerator.generate`."""
        self.check_inputs(prompt, seed, params)
        key = video_key(self.model_id, prompt, seed, params)
        mp4 = Path(out_dir) / "videos" / f"{key}.mp4"
        if self.claims.acquire(key) == "done":
            if not mp4.is_file():
                raise RapoError(
                    f"video {key} is done in the store but not in {mp4.parent}: every worker needs the same --out "
                    "(a shared folder)"
                )
            self.outcomes["reused"] += 1
            return super().generate(prompt, seed, params, out_dir)
        try:
            with self.claims.renewing(key):
                video = super().generate(prompt, seed, params, out_dir)
        except BaseException:
            self.claims.release(key)
            raise
        self.outcomes["cached" if video.cached else "generated"] += 1
        self.busy_s += video.seconds
        self.claims.done(key, None if video.cached else video.seconds)
        return video
