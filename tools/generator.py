"""Text-to-video generation with diffusers pipelines, cached by content hash.

A `VideoGenerator` wraps one pipeline, loaded once: a tiny random one (`tiny-wan`, `tiny-cogvideox`, `tiny-latte`,
`tiny-ltx`, `tiny-hunyuan`) for tests and smoke runs, or a local folder holding a diffusers text-to-video pipeline.
Each video is keyed by a hash of (model id, prompt, seed, parameters):

    out_dir/videos/<key>.mp4         the video, written atomically
    out_dir/videos/<key>.json        its `GeneratedVideo` record, written atomically after the mp4
    out_dir/videos/generation.log    one JSON line per pipeline call whose video was saved (an audit log)
    out_dir/videos/.locks/<key>.lock an advisory lock held while the video is looked up or made

so a resumed run never generates the same video twice, even across processes. A run killed after the mp4 was
renamed into place but before its record was written loses nothing: the record is rebuilt on the next request.
Neither dtype nor device is part of the key: a video made in bfloat16 on a GPU is reused by a float32 CPU run.

Pipelines name their arguments differently, so `CALL_MAPS` says, per class, which `__call__` arguments take the
frames, size, steps, guidance and negative prompt, and what sizes the class accepts (read from diffusers 0.42):

    WanPipeline, SkyReelsV2Pipeline  num_frames = 4k+1, 16-pixel sides; Wan2.2's `guidance_scale_2` left None
    CogVideoXPipeline                num_frames = 4k+1, 16-pixel sides
    LTXPipeline                      num_frames = 8k+1, 32-pixel sides; `frame_rate` left at 25
    HunyuanVideoPipeline             num_frames = 4k+1, 16-pixel sides; `guidance_scale` is embedded guidance and
                                     true CFG stays off, so a negative prompt is refused
    MochiPipeline                    num_frames = 6k+1, 16-pixel sides
    LattePipeline                    `video_length` = the transformer's `video_length` (16); `clean_caption=False`

A class not in the map is driven through its signature, which must take `REQUIRED_CALL_ARGS`. A size the class
would round or reject gets a ValueError naming it, never a silently changed value.

    generator = VideoGenerator("tiny-wan")
    video = generator.generate("a cat on a sofa", seed=0, params=GenerationParams(), out_dir=Path("run"))
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from rapo.common import ModelError
from rapo.tools.tiny_pipelines import TINY_NOTE, TINY_SPECS, build_tiny_pipeline, read_tiny_marker
from rapo.tools.video import write_video

logger = logging.getLogger(__name__)

REQUIRED_CALL_ARGS = ("prompt", "num_frames", "height", "width", "num_inference_steps", "guidance_scale", "generator")
"""What the `__call__` of a pipeline class not in `CALL_MAPS` must accept for `VideoGenerator` to drive it."""


@dataclass(frozen=True)
class CallMap:
    """Which `__call__` arguments of one pipeline class take `GenerationParams`' values, and the sizes it accepts."""

    frames: str = "num_frames"
    height: str = "height"
    width: str = "width"
    steps: str = "num_inference_steps"
    guidance: str = "guidance_scale"
    negative_prompt: str | None = "negative_prompt"
    """None: a negative prompt is refused, for the reason in `note`."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Arguments always passed."""
    temporal: tuple[str, ...] = ("vae_scale_factor_temporal", "vae_temporal_compression_ratio")
    """Pipeline attributes holding the VAE's temporal factor t (the first int wins): num_frames must be t*k + 1."""
    frames_from: str | None = None
    """A transformer config field num_frames must equal, instead of the temporal rule (Latte: `video_length`)."""
    spatial: tuple[str, ...] = ("vae_scale_factor_spatial", "vae_spatial_compression_ratio")
    """Pipeline attributes holding the VAE's spatial factor: sides are multiples of it times the transformer patch."""
    multiple: int = 1
    """What the pipeline's own `check_inputs` asks the sides to be multiples of."""
    frame_rate: str | None = None
    """An argument the model conditions on the frame rate with, left at its default (not `fps`: see the README)."""
    needs: tuple[str, ...] = ()
    """Packages the pipeline calls without checking they are installed."""
    note: str = ""

    def names(self) -> list[str]:
        """Every argument name this map passes; each must be in the class's `__call__`."""
        names = [self.frames, self.height, self.width, self.steps, self.guidance, *self.fixed]
        return names + [name for name in (self.negative_prompt, self.frame_rate) if name]


CALL_MAPS: dict[str, CallMap] = {
    "WanPipeline": CallMap(
        temporal=("vae_scale_factor_temporal",), spatial=("vae_scale_factor_spatial",), multiple=16,
        note="Wan2.1 and Wan2.2; Wan2.2 A14B's low-noise expert takes `guidance_scale_2`, left None (= guidance_scale)",
    ),
    "SkyReelsV2Pipeline": CallMap(
        temporal=("vae_scale_factor_temporal",), spatial=("vae_scale_factor_spatial",), multiple=16, needs=("ftfy",),
        note="the Wan2.1 architecture; its prompt cleaning needs the ftfy package",
    ),
    "CogVideoXPipeline": CallMap(
        temporal=("vae_scale_factor_temporal",), spatial=("vae_scale_factor_spatial",), multiple=8,
        note="`use_dynamic_cfg` left False",
    ),
    "LTXPipeline": CallMap(
        temporal=("vae_temporal_compression_ratio",), spatial=("vae_spatial_compression_ratio",), multiple=32,
        frame_rate="frame_rate", note="conditions on `frame_rate` (default 25), which the mp4's `fps` does not set",
    ),
    "HunyuanVideoPipeline": CallMap(
        negative_prompt=None, temporal=("vae_scale_factor_temporal",), spatial=("vae_scale_factor_spatial",),
        multiple=16,
        note="`guidance_scale` is its embedded (distilled) guidance, and a negative prompt is used only with true "
        "CFG (`true_cfg_scale` > 1), which the generator leaves off",
    ),
    "MochiPipeline": CallMap(
        temporal=("vae_temporal_scale_factor",), spatial=("vae_spatial_scale_factor",), multiple=8,
        note="its VAE's temporal factor is fixed at 6",
    ),
    "LattePipeline": CallMap(
        frames="video_length", frames_from="video_length", temporal=(), spatial=("vae_scale_factor",), multiple=8,
        fixed={"clean_caption": False},
        note="an image VAE; the transformer's temporal embedding fixes the frame count; `clean_caption=False` passes "
        "the prompt as given, whether or not bs4 and ftfy are installed",
    ),
}  # fmt: skip
"""Per pipeline class (by name): the arguments it takes our values as, and its size rules."""

FALLBACK = CallMap()
"""For a class not in `CALL_MAPS`: the common names, checked against its signature (`REQUIRED_CALL_ARGS`)."""

DTYPES = {"auto": "auto", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
          "float32": "float32", "fp32": "float32"}  # fmt: skip


class GenerationParams(BaseModel):
    """Generation parameters, recorded with every video; part of its cache key."""

    num_frames: int = Field(9, ge=1, description="Frames per video; most video VAEs need 4k+1 (Wan: 81; LTX: 8k+1).")
    height: int = Field(64, ge=8, description="Height in pixels; a multiple of the VAE and patch size (Wan: 16).")
    width: int = Field(64, ge=8, description="Width in pixels; a multiple of the VAE and patch size (Wan: 16).")
    num_inference_steps: int = Field(2, ge=1, description="Denoising steps.")
    guidance_scale: float = Field(5.0, ge=0.0, description="Classifier-free guidance, <= 1: off (Hunyuan: embedded).")
    fps: int = Field(8, ge=1, description="Frame rate of the written mp4.")
    negative_prompt: str | None = Field(None, description="What to steer away from; None: the pipeline's default.")


class GeneratedVideo(BaseModel):
    """One generated (or cached) video and everything needed to make it again."""

    path: Path = Field(description="The mp4.")
    key: str = Field(description="Content hash of (model_id, prompt, seed, params).")
    model_id: str = Field(description="A tiny-* spec or the absolute path of the pipeline folder.")
    prompt: str
    seed: int
    params: GenerationParams
    seconds: float = Field(description="Time of the pipeline call; 0 when cached.")
    cached: bool = Field(description="True when the cache had the video and no pipeline call happened.")
    real_model: bool = Field(description="False for tiny random pipelines, whose frames are noise.")
    note: str = ""
    dtype: str = Field("", description="Weights dtype the video was made with, e.g. 'bfloat16'.")
    device: str = Field("", description="Device the pipeline ran on, e.g. 'cuda'.")


def video_key(model_id: str, prompt: str, seed: int, params: GenerationParams) -> str:
    """The cache key: 20 hex digits of SHA-256 over the canonical JSON of the inputs (dtype and device excluded)."""
    payload = {"model_id": model_id, "prompt": prompt, "seed": seed, "params": params.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:20]


class VideoGenerator:
    """Makes mp4s from prompts with one diffusers pipeline, loaded once (on `load()` or the first miss).

    Args:
        spec: `tiny-wan`, `tiny-cogvideox`, or a local folder saved by `save_pretrained` (it has `model_index.json`).
        dtype: `auto` (bfloat16 on CUDA, float32 on CPU), `bfloat16`, `float16` or `float32`.
        cpu_offload: keep components on the CPU and move each to the GPU while it runs (CUDA only).
        vae_tiling: decode the VAE in tiles, for large videos on small GPUs.
        device: `cuda`, `cuda:1`, `cpu`, ...; default CUDA when available, else CPU.

    Raises:
        ValueError: an unknown `tiny-*` spec or dtype.
        ModelError: `spec` is a path that does not exist or holds no diffusers pipeline.
    """

    def __init__(
        self,
        spec: str,
        *,
        dtype: str = "auto",
        cpu_offload: bool = False,
        vae_tiling: bool = False,
        device: str | None = None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.spec = spec
        self.cpu_offload = cpu_offload
        self.vae_tiling = vae_tiling
        self.device: str | None = device  # resolved by load()
        self.dtype: str = DTYPES[dtype]  # resolved by load()
        self._folder: Path | None = None
        self._call_kwargs: dict[str, Any] = {}  # extra __call__ arguments a tiny pipeline needs
        self._pipe: Any = None
        self._accepts: set[str] | None = None  # __call__'s argument names; None: it takes **kwargs
        self._call: CallMap = FALLBACK  # how this pipeline class names our arguments; set by load()
        self._fps_warned = False
        self._lock = threading.RLock()
        marker = None
        if spec in TINY_SPECS:
            self.model_id = spec
        elif spec.startswith("tiny-") and not Path(spec).exists():
            raise ValueError(f"unknown tiny generator {spec!r}; valid: {', '.join(TINY_SPECS)} or a pipeline folder")
        else:
            folder = Path(spec).expanduser()
            if not folder.exists():
                raise ModelError(f"video model not found: {folder}")
            if not (folder / "model_index.json").is_file():
                raise ModelError(f"not a diffusers pipeline folder (no model_index.json): {folder}")
            self._folder = folder.resolve()
            self.model_id = str(self._folder)
            try:
                marker = read_tiny_marker(self._folder)
            except (OSError, ValueError) as exc:
                raise ModelError(f"unreadable tiny-pipeline marker in {folder}: {exc}") from None
            self._call_kwargs = dict(marker["call_kwargs"]) if marker else {}
        self.real_model = spec not in TINY_SPECS and marker is None
        self.note = "" if self.real_model else TINY_NOTE

    def load(self) -> None:
        """Build or load the pipeline and put it on its device; later calls do nothing."""
        with self._lock:
            if self._pipe is not None:
                return
            import torch

            # 1. Resolve device and dtype
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = self.dtype
            if dtype == "auto":
                dtype = "bfloat16" if device.startswith("cuda") else "float32"
            if self.cpu_offload and not device.startswith("cuda"):
                raise ValueError(f"`cpu_offload` needs a CUDA device, got device {device!r}")
            torch_dtype = getattr(torch, dtype)

            # 2. Build or load the pipeline
            started = time.perf_counter()
            if self._folder is None:
                tiny = build_tiny_pipeline(self.spec)
                pipe, self._call_kwargs = tiny.pipeline, dict(tiny.call_kwargs)
                if torch_dtype != torch.float32:
                    _cast(pipe, torch_dtype)
            else:
                pipe = _load_folder(self._folder, torch_dtype)

            # 3. Check that it makes videos from our arguments
            self._call, self._accepts = _call_map(pipe, self.model_id)

            # 4. Memory options, then the device
            if self.vae_tiling:
                vae = getattr(pipe, "vae", None)
                if vae is not None and hasattr(vae, "enable_tiling"):
                    vae.enable_tiling()
                else:
                    logger.warning("vae_tiling: %s has no VAE with enable_tiling(); decoding untiled", self.model_id)
            if self.cpu_offload:
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
            pipe.set_progress_bar_config(disable=True)  # the caller's progress display owns the terminal
            self._pipe, self.device, self.dtype = pipe, device, dtype
            logger.info("loaded %s (%s, %s) in %.1f s", self.model_id, device, dtype, time.perf_counter() - started)

    def check_inputs(self, prompt: str, seed: int, params: GenerationParams) -> None:
        """Raise ValueError naming the first bad argument; pipeline-specific sizes are checked once it is loaded."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"`prompt` must be a non-empty string, got {prompt!r}")
        if not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"`seed` must be an integer in [0, 2**63), got {seed!r}")
        if not isinstance(params, GenerationParams):
            raise ValueError(f"`params` must be GenerationParams, got {type(params).__name__}")
        if self._pipe is None:
            return
        name, call = type(self._pipe).__name__, self._call
        temporal = _first_int(self._pipe, *call.temporal)
        if call.frames_from:
            config = getattr(getattr(self._pipe, "transformer", None), "config", None)
            exact = getattr(config, call.frames_from, None)
            if isinstance(exact, int) and params.num_frames != exact:
                raise ValueError(
                    f"`num_frames` must be {exact} for {name} (its transformer's `{call.frames_from}`), "
                    f"got {params.num_frames}"
                )
        if temporal and (params.num_frames - 1) % temporal:
            below = (params.num_frames - 1) // temporal * temporal + 1
            raise ValueError(
                f"`num_frames` must be {temporal}k+1 for {name} (e.g. {below} or {below + temporal}), "
                f"got {params.num_frames}"
            )
        multiple = _spatial_multiple(self._pipe, call)
        for arg in ("height", "width"):
            value = getattr(params, arg)
            if multiple and value % multiple:
                raise ValueError(f"`{arg}` must be a multiple of {multiple} for {name}, got {value}")
        accepts = self._accepts is None or call.negative_prompt in self._accepts
        if params.negative_prompt is not None and not (call.negative_prompt and accepts):
            reason = f": {call.note}" if call.negative_prompt is None else ""
            raise ValueError(f"`negative_prompt` is not supported by {name}{reason}; leave it None")

    def generate(self, prompt: str, seed: int, params: GenerationParams, out_dir: Path) -> GeneratedVideo:
        """Render `prompt` into `out_dir/videos/<key>.mp4`, or return the cached video for the same inputs."""
        # 1. Check inputs
        self.check_inputs(prompt, seed, params)

        # 2. Look the video up in the cache, holding its key's lock so two processes (or threads) never both make it
        key = video_key(self.model_id, prompt, seed, params)
        videos = Path(out_dir) / "videos"
        mp4, sidecar, log = videos / f"{key}.mp4", videos / f"{key}.json", videos / "generation.log"
        with _file_lock(videos / ".locks" / f"{key}.lock"):
            if mp4.is_file():
                return self._cached(key, mp4, sidecar, log, prompt, seed, params)
            # 3-5. Render, one pipeline call at a time in this process
            with self._lock:
                frames, seconds = self._render(prompt, seed, params)

            # 6. Write the mp4, the audit-log line, then the record (its presence completes the cache entry). Outside
            # the pipeline's lock: under `rapo optimize --overlap` the next video renders meanwhile (the write of a
            # 480x832, 81-frame mp4 takes about 1.4 s).
            write_video(frames, mp4, fps=params.fps)
            line = {"key": key, "model_id": self.model_id, "prompt": prompt, "seed": seed, "seconds": round(seconds, 4),
                    "pid": os.getpid(), "time": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
            with log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
            video = self._record(key, mp4, prompt, seed, params, seconds, cached=False)
            _write_json(sidecar, video)
            return video

    def _render(self, prompt: str, seed: int, params: GenerationParams):  # noqa: ANN202 - numpy is lazy
        """Load the pipeline (once), check the sizes it needs, call it; (frames (F, H, W, 3), seconds)."""
        self.load()
        self.check_inputs(prompt, seed, params)

        # Prepare the call, in the names this pipeline class uses
        import torch

        call = self._call
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            call.frames: params.num_frames,
            call.height: params.height,
            call.width: params.width,
            call.steps: params.num_inference_steps,
            call.guidance: params.guidance_scale,
            "generator": torch.Generator(self.device).manual_seed(seed),
            **call.fixed,
            **self._call_kwargs,
        }
        if params.negative_prompt is not None and call.negative_prompt:
            kwargs[call.negative_prompt] = params.negative_prompt
        self._warn_frame_rate(params)
        if self._accepts is None or "output_type" in self._accepts:
            kwargs["output_type"] = "np"

        # Denoise and decode
        started = time.perf_counter()
        frames = _frames_of(self._pipe(**kwargs), self.model_id)  # (F, H, W, 3)
        seconds = time.perf_counter() - started
        if frames.shape[:3] != (params.num_frames, params.height, params.width):
            logger.warning(
                "%s returned %s frames of %sx%s for num_frames=%s, %sx%s; the mp4 keeps what it returned",
                self.model_id, *frames.shape[:3], params.num_frames, params.height, params.width,
            )  # fmt: skip
        return frames, seconds

    def _warn_frame_rate(self, params: GenerationParams) -> None:
        """Say once when the model is told a frame rate other than the mp4's (LTX: `frame_rate`, left at 25)."""
        name = self._call.frame_rate
        if name is None or self._fps_warned:
            return
        parameter = inspect.signature(self._pipe.__call__).parameters.get(name)
        default = parameter.default if parameter is not None else None
        if default is not None and default != params.fps:
            logger.warning("%s conditions on `%s`=%s, its default; the mp4 is written at fps=%s",
                           self.model_id, name, default, params.fps)  # fmt: skip
        self._fps_warned = True

    def _record(
        self, key: str, mp4: Path, prompt: str, seed: int, params: GenerationParams, seconds: float, cached: bool
    ) -> GeneratedVideo:
        return GeneratedVideo(
            path=mp4, key=key, model_id=self.model_id, prompt=prompt, seed=seed, params=params, seconds=seconds,
            cached=cached, real_model=self.real_model, note=self.note,
            dtype=self.dtype if self._pipe is not None else "", device=self.device if self._pipe is not None else "",
        )  # fmt: skip

    def _cached(
        self, key: str, mp4: Path, sidecar: Path, log: Path, prompt: str, seed: int, params: GenerationParams
    ) -> GeneratedVideo:
        """The cached record of `mp4`, rebuilt if a killed run wrote the mp4 but not its record."""
        try:
            video = GeneratedVideo.model_validate_json(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # The mp4 is complete (renamed into place) and named by its inputs' hash: only the record is missing.
            logger.warning("rebuilding the missing or unreadable record %s", sidecar)
            video = self._record(key, mp4, prompt, seed, params, _logged_seconds(log, key), cached=False)
            _write_json(sidecar, video)
        return video.model_copy(update={"path": mp4, "seconds": 0.0, "cached": True})


def _load_folder(folder: Path, torch_dtype: Any) -> Any:
    """`DiffusionPipeline.from_pretrained(folder)`, with a one-line ModelError when it cannot be loaded."""
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(folder, dtype=torch_dtype)
    except Exception as exc:  # a broken folder fails in many ways: missing shards, unknown classes, bad configs
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelError(f"cannot load a diffusers pipeline from {folder}: {type(exc).__name__}: {first}") from exc


def _cast(pipe: Any, torch_dtype: Any) -> None:
    """Cast a pipeline built in float32 to `torch_dtype`, keeping each model's `_keep_in_fp32_modules` in float32.

    What `from_pretrained(dtype=...)` does; `pipe.to(dtype)` would cast those modules too (and warn).
    """
    import torch

    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        keep = getattr(component, "_keep_in_fp32_modules", None) or []
        for name, tensor in [*component.named_parameters(), *component.named_buffers()]:
            if tensor.is_floating_point():
                fp32 = any(module in name.split(".") for module in keep)
                tensor.data = tensor.data.to(torch.float32 if fp32 else torch_dtype)


def _call_map(pipe: Any, model_id: str) -> tuple[CallMap, set[str] | None]:
    """The pipeline class's `CallMap` (`FALLBACK` if unmapped) and `__call__`'s argument names (None: **kwargs).

    Raises:
        ModelError: the signature lacks an argument the map names (a diffusers upgrade renamed it?), or, for an
            unmapped class, one of `REQUIRED_CALL_ARGS`.
    """
    name = type(pipe).__name__
    call = CALL_MAPS.get(name)
    if call is None:
        return FALLBACK, _call_arguments(pipe, model_id)
    absent = [package for package in call.needs if find_spec(package) is None]
    if absent:
        raise ModelError(f"{name} in {model_id} needs {', '.join(absent)}: pip install {' '.join(absent)}")
    parameters = inspect.signature(pipe.__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return call, None
    missing = [arg for arg in ["prompt", "generator", *call.names()] if arg not in parameters]
    if missing:
        raise ModelError(
            f"{name} in {model_id}: its __call__ has no {', '.join(f'`{m}`' for m in missing)} argument, which "
            f"tools/generator.py CALL_MAPS[{name!r}] passes; the installed diffusers may have renamed it"
        )
    return call, set(parameters)


def _call_arguments(pipe: Any, model_id: str) -> set[str] | None:
    """The argument names of `pipe.__call__` (None when it takes **kwargs); ModelError if one we need is missing."""
    parameters = inspect.signature(pipe.__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    missing = [name for name in REQUIRED_CALL_ARGS if name not in parameters]
    if missing:
        raise ModelError(
            f"{type(pipe).__name__} in {model_id} is not a text-to-video pipeline: its __call__ has no "
            f"{', '.join(f'`{m}`' for m in missing)} argument (needs {', '.join(REQUIRED_CALL_ARGS)})"
        )
    return set(parameters)


def _first_int(obj: Any, *names: str) -> int | None:
    """The first of `obj`'s attributes `names` that is an int (pipelines name their VAE factors differently)."""
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _spatial_multiple(pipe: Any, call: CallMap) -> int | None:
    """Pixels per latent token side (VAE factor x transformer patch: Wan2.1 8 x 2), lcm'd with the class's own rule."""
    spatial = _first_int(pipe, *call.spatial)
    if spatial is None:
        return call.multiple if call.multiple > 1 else None
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    patch = getattr(config, "patch_size", None) or 1
    if isinstance(patch, list | tuple):  # Wan: (t, h, w)
        patch = patch[-1]
    return math.lcm(spatial * int(patch), call.multiple)


def _frames_of(output: Any, model_id: str) -> np.ndarray:
    """The first video of a pipeline output as (F, H, W, 3): float in [0, 1] or uint8."""
    frames = output.frames if hasattr(output, "frames") else output[0]
    video = frames[0]  # the batch holds one video
    if hasattr(video, "detach"):  # a torch tensor
        video = video.detach().float().cpu().numpy()
    if isinstance(video, list):  # PIL images, from pipelines without `output_type`
        video = np.stack([np.asarray(image.convert("RGB")) for image in video])
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ModelError(f"{model_id} returned frames of shape {video.shape}, expected (F, H, W, 3)")
    return video


def _logged_seconds(log: Path, key: str) -> float:
    """The generation time the audit log recorded for `key`, else 0."""
    if log.is_file():
        for line in reversed(log.read_text(encoding="utf-8").splitlines()):
            if f'"{key}"' in line:
                try:
                    return float(json.loads(line)["seconds"])
                except (ValueError, KeyError, TypeError):
                    break
    return 0.0


def _write_json(path: Path, video: GeneratedVideo) -> None:
    """Write `video` as JSON through a temporary name and a rename, so a reader never sees half a record."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(video.model_dump_json(indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed), released on exit, also by a killed process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
