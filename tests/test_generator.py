"""The video generator: tiny pipelines, a saved pipeline folder, the content-hash cache, its log, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rapo_common import ModelError
from tools.generator import GeneratedVideo, GenerationParams, VideoGenerator, _call_arguments, video_key
from tools.tiny_pipelines import TINY_MARKER, TINY_NOTE, save_tiny_pipeline
from tools.video import read_video

PARAMS = GenerationParams()  # 9 frames, 64x64, 2 steps


def cpu(spec: str) -> VideoGenerator:
    """Pinned to the CPU in float32, so frames compare equal on machines with a GPU too."""
    return VideoGenerator(spec, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On a shared 2-core machine two torch threads spin against each other: one thread ran these tests ~5x faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def generators() -> dict[str, VideoGenerator]:
    """Each tiny generator, loaded once for the module."""
    loaded = {spec: cpu(spec) for spec in ("tiny-wan", "tiny-cogvideox")}
    for generator in loaded.values():
        generator.load()
    return loaded


def log_lines(out: Path) -> list[dict]:
    path = out / "videos" / "generation.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class Explodes:
    """Stands in for a pipeline that must not be called."""

    def __call__(self, **kwargs):
        raise AssertionError("the pipeline was called on a cache hit")


@pytest.mark.parametrize("spec", ["tiny-wan", "tiny-cogvideox"])
def test_tiny_pipeline_writes_a_readable_mp4_with_the_requested_shape(generators, spec, tmp_path):
    params = GenerationParams(num_frames=9, height=32, width=48, fps=6)
    video = generators[spec].generate("a red car drives along a coast road", 3, params, tmp_path)

    decoded = read_video(video.path)
    assert decoded.frames.shape == (9, 32, 48, 3)
    assert decoded.fps == pytest.approx(6)
    assert video.path == tmp_path / "videos" / f"{video.key}.mp4"
    assert video.key == video_key(spec, "a red car drives along a coast road", 3, params)
    assert not video.cached and video.seconds > 0
    assert video.model_id == spec and video.device == "cpu" and video.dtype == "float32"
    assert video.real_model is False and video.note == TINY_NOTE


def test_same_seed_same_frames_different_seed_different_frames(generators, tmp_path):
    fresh = cpu("tiny-wan")  # built again: the tiny weights are seeded, not random per process
    a = read_video(generators["tiny-wan"].generate("a cat", 7, PARAMS, tmp_path / "a").path).frames
    b = read_video(fresh.generate("a cat", 7, PARAMS, tmp_path / "b").path).frames
    c = read_video(fresh.generate("a cat", 8, PARAMS, tmp_path / "b").path).frames
    d = read_video(fresh.generate("a dog", 7, PARAMS, tmp_path / "b").path).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)  # the byte-level tokenizer lets the prompt reach the frames


def test_cache_hit_skips_the_pipeline_and_the_log_has_one_line_per_key(generators, tmp_path):
    generator = cpu("tiny-cogvideox")
    first = generator.generate("a cat", 0, PARAMS, tmp_path)
    other = generator.generate("a cat", 1, PARAMS, tmp_path)
    generator._pipe = Explodes()

    again = generator.generate("a cat", 0, PARAMS, tmp_path)
    assert again.cached and again.seconds == 0
    assert again.path == first.path and again.key == first.key
    assert generator.generate("a cat", 1, PARAMS, tmp_path).cached
    lines = log_lines(tmp_path)
    assert [line["key"] for line in lines] == [first.key, other.key]
    assert set(lines[0]) == {"key", "model_id", "prompt", "seed", "seconds", "pid", "time"}
    assert lines[0]["model_id"] == "tiny-cogvideox" and lines[0]["prompt"] == "a cat" and lines[0]["seed"] == 0


def test_cache_key_covers_model_prompt_seed_and_every_parameter():
    keys = {
        video_key("tiny-wan", "a cat", 0, PARAMS),
        video_key("tiny-cogvideox", "a cat", 0, PARAMS),
        video_key("tiny-wan", "a cat.", 0, PARAMS),
        video_key("tiny-wan", "a cat", 1, PARAMS),
        video_key("tiny-wan", "a cat", 0, PARAMS.model_copy(update={"guidance_scale": 1.0})),
        video_key("tiny-wan", "a cat", 0, PARAMS.model_copy(update={"negative_prompt": "blur"})),
        video_key("tiny-wan", "a cat", 0, PARAMS.model_copy(update={"fps": 16})),
    }
    assert len(keys) == 7
    assert video_key("tiny-wan", "a cat", 0, GenerationParams()) == video_key("tiny-wan", "a cat", 0, PARAMS)


def test_sidecar_records_the_video_and_a_lost_sidecar_is_rebuilt_without_generating(generators, tmp_path):
    video = generators["tiny-wan"].generate("a cat", 0, PARAMS, tmp_path)
    sidecar = video.path.with_suffix(".json")
    record = GeneratedVideo.model_validate_json(sidecar.read_text())
    assert record == video
    assert record.real_model is False and record.note == TINY_NOTE and record.seconds > 0
    assert not list((tmp_path / "videos").glob("*.partial*"))

    # a run killed between the mp4 and its record: the mp4 is complete, so only the record is rebuilt
    sidecar.unlink()
    generator = cpu("tiny-wan")  # never loaded: a cache hit must not need the pipeline
    again = generator.generate("a cat", 0, PARAMS, tmp_path)
    assert again.cached and generator._pipe is None
    rebuilt = GeneratedVideo.model_validate_json(sidecar.read_text())
    assert rebuilt.seconds == pytest.approx(video.seconds, abs=1e-3)  # taken from the audit log
    assert len(log_lines(tmp_path)) == 1


def test_two_processes_asking_for_the_same_video_generate_it_once(tmp_path):
    script = (
        "import sys; from pathlib import Path; from tools.generator import VideoGenerator, GenerationParams; "
        "v = VideoGenerator('tiny-wan').generate('a cat', 0, GenerationParams(), Path(sys.argv[1])); print(v.cached)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for _ in range(2)
    ]
    outputs = sorted(proc.communicate(timeout=120)[0].strip() for proc in procs)
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs == ["False", "True"]
    assert len(log_lines(tmp_path)) == 1


def test_pipeline_folder_loads_by_path_like_a_real_model(generators, tmp_path):
    folder = save_tiny_pipeline("tiny-wan", tmp_path / "tiny-wan-folder")
    assert (folder / "model_index.json").is_file()
    generator = VideoGenerator(str(folder), device="cpu")
    video = generator.generate("a cat", 5, PARAMS, tmp_path / "run")
    assert video.model_id == str(folder.resolve())
    assert video.real_model is False and video.note == TINY_NOTE  # the marker keeps it labelled as noise
    built = generators["tiny-wan"].generate("a cat", 5, PARAMS, tmp_path / "built")
    assert np.array_equal(read_video(video.path).frames, read_video(built.path).frames)

    # without the marker it is any diffusers folder: loaded through DiffusionPipeline, taken as real
    (folder / TINY_MARKER).unlink()
    plain = VideoGenerator(str(folder), device="cpu")
    unmarked = plain.generate("a cat", 5, PARAMS, tmp_path / "plain")
    assert type(plain._pipe).__name__ == "WanPipeline"
    assert unmarked.real_model is True and unmarked.note == ""
    assert read_video(unmarked.path).frames.shape == (9, 64, 64, 3)


def test_missing_or_unusable_model_paths_fail_at_construction(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match="no-such-model"):
        VideoGenerator(str(missing))
    with pytest.raises(ModelError, match="model_index.json"):
        VideoGenerator(str(tmp_path))
    with pytest.raises(ValueError, match="tiny-wan, tiny-cogvideox"):
        VideoGenerator("tiny-sora")
    with pytest.raises(ValueError, match="`dtype`"):
        VideoGenerator("tiny-wan", dtype="int8")


def test_bad_sizes_name_the_parameter_and_generate_nothing(generators, tmp_path):
    wan = generators["tiny-wan"]
    with pytest.raises(ValueError, match=r"`num_frames` must be 4k\+1 .*\(e.g. 5 or 9\), got 8"):
        wan.generate("a cat", 0, GenerationParams(num_frames=8), tmp_path)
    with pytest.raises(ValueError, match="`height` must be a multiple of 16 .*got 40"):
        wan.generate("a cat", 0, GenerationParams(height=40), tmp_path)
    with pytest.raises(ValueError, match="`prompt`"):
        wan.generate("  ", 0, PARAMS, tmp_path)
    with pytest.raises(ValueError, match="num_frames"):
        GenerationParams(num_frames=0)
    with pytest.raises(ValueError, match=r"`num_frames` must be 4k\+1 .*got 11"):  # checked after a lazy load too
        cpu("tiny-cogvideox").generate("a cat", 0, GenerationParams(num_frames=11), tmp_path)
    assert not list((tmp_path / "videos").glob("*.mp4")) and not log_lines(tmp_path)


def test_cpu_offload_needs_cuda():
    with pytest.raises(ValueError, match="`cpu_offload` needs a CUDA device"):
        VideoGenerator("tiny-wan", cpu_offload=True, device="cpu").load()


def test_a_pipeline_whose_call_lacks_an_argument_is_refused_by_name():
    class ImagePipeline:
        def __call__(self, prompt, height, width, num_inference_steps, guidance_scale, generator, output_type="np"):
            return None

    with pytest.raises(ModelError, match="has no `num_frames` argument"):
        _call_arguments(ImagePipeline(), "/models/sdxl")

    class AnyArgs:
        def __call__(self, prompt, **kwargs):
            return None

    assert _call_arguments(AnyArgs(), "/models/custom") is None
