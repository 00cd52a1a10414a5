"""`rapo optimize --ray`: the same batch fanned out over a Ray cluster, every prompt done exactly once.

    driver (the `rapo` process)                     Ray cluster
    ─ opens the run and the shared store            ─ one generator worker (actor) per GPU, num_gpus=1: loads the
    ─ hands each idle worker the next prompt          pipeline and the LLM once, runs one prompt's SSPO graph at a
      not done; a worker that died gets its           time from its thread's last checkpoint (so a prompt picks up
      prompt back (bounded retries), after that       where any dead worker left it), claims every video in the
      the prompt is recorded failed with why          store before making it
    ─ writes best_prompts.jsonl at the end          ─ critics as CPU tasks (num_cpus=1), anywhere in the cluster

The trajectory store and the checkpoints are shared: a `postgresql://` store for a cluster, or the SQLite files
in the run dir when every worker is on one machine. The run dir must be one folder that every worker sees.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from langchain_core.tools import BaseTool, StructuredTool

from rapo.agent.runs.optimize import PromptItem, RunInfo, checkpointer, finish_run, run_prompt
from rapo.agent.runs.run_spec import RunSpec, build_context
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.common import RapoError, progress_bar, quiet_libraries, stderr
from rapo.tools.lc_tools import CritiqueArgs

MAX_ATTEMPTS = 3
"""Times a prompt is handed out again after its worker died, before it is recorded as failed."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RapoError("--ray needs Ray: pip install 'rapo[scale]'") from None
    return ray


def connect(address: str | None, needs_gpu: bool) -> tuple[int, float]:
    """Join the Ray cluster at `address` (None: start a local instance; `auto`: the one on this machine).

    Returns (generator workers, GPUs per worker): one per GPU; on a cluster without GPUs, one CPU worker for a
    tiny generator. Fails with one line before any work when the cluster cannot be reached, or has no GPU while
    the generator is a real model.
    """
    ray = _ray()
    if not ray.is_initialized():
        if address not in (None, "auto"):
            _check_reachable(address)
        # rapo owns stderr (progress, one-line errors); Ray's start-up notices would break both.
        logging.getLogger("ray").setLevel(logging.ERROR)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RapoError(f"cannot reach the Ray cluster at {address}: {first[:200]}") from None
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        return gpus, 1.0
    if needs_gpu:
        raise RapoError(f"the Ray cluster at {address or 'local'} has no GPU; the generator needs one per worker")
    return 1, 0.0


def _check_reachable(address: str) -> None:
    """A TCP connection to HOST:PORT of `ray://HOST:PORT` or `HOST:PORT`, so a wrong address fails in seconds."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or 10001
    except ValueError:
        raise RapoError(f"--ray {address!r}: expected auto, ray://HOST:PORT or HOST:PORT") from None
    if not host:
        raise RapoError(f"--ray {address!r}: expected auto, ray://HOST:PORT or HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise RapoError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


@lru_cache(maxsize=8)
def _critic(name: str, options: tuple[tuple[str, str], ...]) -> Any:
    from rapo.tools.critics.registry import make_critic

    return make_critic(name, **dict(options))


def _score(name: str, options: tuple[tuple[str, str], ...], video: str, prompt: str, meta: dict | None) -> dict:
    """A critic's verdict on one video: the body of the CPU task."""
    from rapo.tools.video import read_video

    return _critic(name, options).score(read_video(Path(video)), prompt, meta).model_dump(mode="json")


def remote_critic_tool(name: str, options: dict[str, str] | None = None) -> BaseTool:
    """`critic_<name>` as the single-process run has it, scoring in a Ray CPU task instead of in the worker."""
    ray = _ray()
    task = ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS)(_score)
    frozen = tuple(sorted((options or {}).items()))
    return StructuredTool.from_function(
        func=lambda video, prompt, meta=None: ray.get(task.remote(name, frozen, video, prompt, meta)),
        name=f"critic_{name}",
        description=f"Score a video with the {name} critic: a score from 0 to 1 (higher is better), its raw "
        "measurements and feedback text.",
        args_schema=CritiqueArgs,
    )


class GeneratorWorker:
    """A Ray actor: the generator pipeline and the LLM, loaded once; one prompt's SSPO graph at a time.

    One prompt at a time because the LLM seeds torch's global generator before sampling: two prompts in one
    process would interleave their seeds and lose reproducibility.
    """

    def __init__(self, spec: RunSpec, run_id: str, claim_lease_s: float) -> None:
        from rapo.agent.loop.graph import builder
        from rapo.agent.runs.claims import ClaimedGenerator, VideoClaims

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        quiet_libraries()
        self.started = time.time()
        self.run_id = run_id
        self.store = TrajectoryStore(spec.store or spec.run_dir / "trajectory.sqlite")
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.generator = ClaimedGenerator(
            spec.generator,
            VideoClaims(self.store, run_id, owner, lease_s=claim_lease_s),
            cpu_offload=spec.cpu_offload,
            vae_tiling=spec.vae_tiling,
        )
        self.generator.load()
        critics = [remote_critic_tool(n, spec.critic_options.get(n)) for n in spec.critics]
        self.ctx = build_context(spec, generator=self.generator, critic_tools=critics)
        self.graph = builder.compile(checkpointer=checkpointer(spec.run_dir, spec.store))

    def pid(self) -> int:
        """This worker's process id (tests kill it)."""
        return os.getpid()

    def optimize(self, prompt_id: int, prompt: PromptItem) -> int:
        """Run (or resume) one prompt; its outcome, failure included, is in the store. Returns `prompt_id`."""
        run_prompt(self.graph, self.store, self.run_id, prompt_id, prompt, self.ctx, lambda _: None)
        return prompt_id

    def stats(self) -> dict:
        """Generator time (the GPU-busy time), what video requests found, and seconds since the worker started."""
        return {
            "busy_s": self.generator.busy_s,
            "outcomes": dict(self.generator.outcomes),
            "alive_s": time.time() - self.started,
            "pid": os.getpid(),
        }


def start_workers(spec: RunSpec, run_id: str, workers: int, gpus: float, claim_lease_s: float = 60.0) -> list:
    """`workers` generator actors, each restarted by Ray if its process dies (its task is not retried by Ray)."""
    ray = _ray()
    actor = ray.remote(GeneratorWorker).options(num_gpus=gpus, num_cpus=0, max_restarts=-1, max_task_retries=0)
    return [actor.remote(spec, run_id, claim_lease_s) for _ in range(workers)]


def optimize_on_ray(
    prompts: list[PromptItem], info: RunInfo, spec: RunSpec, workers: list, max_attempts: int = MAX_ATTEMPTS
) -> list[dict]:
    """Every prompt not done, on the given workers; a worker that dies gives its prompt back (bounded retries).

    A worker whose task failed is probed until Ray has restarted it, and only then gets the next prompt; a worker
    Ray gave up on is dropped. Returns the rows of `best_prompts.jsonl`, written when the batch ends, as the
    single-process run does.
    """
    ray = _ray()
    store = TrajectoryStore(spec.store or spec.run_dir / "trajectory.sqlite")
    store.start_run(info.run_id, info.settings, [p.text for p in prompts], [p.meta for p in prompts])
    status = {row.prompt_id: row.status for row in store.prompts(info.run_id)}
    pending = deque(i for i in range(len(prompts)) if status[i] != "done")
    idle = list(range(len(workers)))
    in_flight: dict[Any, tuple[int, int | None, Any]] = {}  # ObjectRef -> (worker, prompt id or None for a probe, bar)

    def fail(prompt_id: int, reason: str) -> None:
        store.set_status(info.run_id, prompt_id, "failed", reason)
        stderr.print(f"prompt {prompt_id}: failed: {reason}", markup=False, highlight=False)

    with progress_bar() as bar:
        overall = bar.add_task("prompts", total=len(prompts), completed=len(prompts) - len(pending))
        while pending or any(prompt_id is not None for _, prompt_id, _ in in_flight.values()):
            while pending and idle:
                worker, prompt_id = idle.pop(0), pending.popleft()
                task = bar.add_task(f"  #{prompt_id} {prompts[prompt_id].text[:40]} (worker {worker})", total=None)
                in_flight[workers[worker].optimize.remote(prompt_id, prompts[prompt_id])] = (worker, prompt_id, task)
            if not in_flight:  # prompts left, and every worker is gone
                for prompt_id in pending:
                    fail(prompt_id, "no worker left: Ray could not restart any")
                    bar.advance(overall)
                break
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            worker, prompt_id, task = in_flight.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died or is restarting: probe it until it answers
                if prompt_id is None:
                    if isinstance(exc, ray.exceptions.ActorDiedError):
                        continue  # Ray gave up on it (its constructor failed): drop it
                    time.sleep(1.0)
                else:
                    reason = f"worker died: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
                    if store.add_attempt(info.run_id, prompt_id, reason) < max_attempts:
                        pending.appendleft(prompt_id)
                    else:
                        fail(prompt_id, f"{max_attempts} attempts; last: {reason}")
                        bar.advance(overall)
                in_flight[workers[worker].pid.remote()] = (worker, None, None)
            else:
                idle.append(worker)
                if prompt_id is not None:
                    bar.advance(overall)
            if task is not None:
                bar.remove_task(task)
    return finish_run(store, info.run_id, spec.run_dir)
