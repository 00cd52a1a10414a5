"""The video generator: tiny pipelines, a saved pipeline folder, the content-hash cache, its log, bad input, and each
pipeline class's argument map."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from rapo.common import ModelError
from rapo.tools.generator import (
    CALL_MAPS,
    FALLBACK,
    REQUIRED_CALL_ARGS,
    GeneratedVideo,
    GenerationParams,
    VideoGenerator,
    _call_arguments,
    _call_map,
    video_key,
)
from rapo.tools.tiny_pipelines import TINY_MARKER, TINY_NOTE, TINY_SPECS, build_tiny_pipeline, save_tiny_pipeline
from rapo.tools.video import read_video

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
    loaded = {spec: cpu(spec) for spec in TINY_SPECS}
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
    # pinned: videos cached before the per-class argument maps keep their keys
    assert video_key("tiny-wan", "a cat", 0, PARAMS) == "29e36bdf71559e550bda"
    wan = GenerationParams(num_frames=81, height=480, width=832, num_inference_steps=20)
    assert video_key("/models/Wan2.1-T2V-1.3B-Diffusers", "a red car at night", 3, wan) == "743ea88eaef034f0489e"


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
        "import sys; from pathlib import Path; from rapo.tools.generator import VideoGenerator, GenerationParams; "
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
    with pytest.raises(ValueError, match="tiny-wan, tiny-cogvideox, tiny-latte, tiny-ltx, tiny-hunyuan"):
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


# Per tiny class: a size it accepts (frames, height, width), a frame count and a side it must refuse, and its rules.
CLASS_SIZES = {
    "tiny-latte": (9, 32, 48, 8, r"must be 9 for LattePipeline \(its transformer's `video_length`\), got 8", 40, 16),
    "tiny-ltx": (17, 32, 64, 13, r"must be 8k\+1 for LTXPipeline \(e.g. 9 or 17\), got 13", 48, 32),
    "tiny-hunyuan": (9, 32, 48, 7, r"must be 4k\+1 for HunyuanVideoPipeline \(e.g. 5 or 9\), got 7", 40, 16),
}


@pytest.mark.parametrize("spec", list(CLASS_SIZES))
def test_each_mapped_class_makes_the_asked_frames_and_size_and_refuses_its_own_bad_sizes(generators, spec, tmp_path):
    frames, height, width, bad_frames, frames_error, bad_side, multiple = CLASS_SIZES[spec]
    generator = generators[spec]
    params = GenerationParams(num_frames=frames, height=height, width=width)
    video = generator.generate("a red car drives along a coast road", 3, params, tmp_path)

    assert read_video(video.path).frames.shape == (frames, height, width, 3)
    assert video.key == video_key(spec, "a red car drives along a coast road", 3, params)
    assert generator._call is CALL_MAPS[type(generator._pipe).__name__]
    with pytest.raises(ValueError, match=f"`num_frames` {frames_error}"):
        generator.generate("a cat", 0, params.model_copy(update={"num_frames": bad_frames}), tmp_path)
    with pytest.raises(ValueError, match=f"`height` must be a multiple of {multiple} .*got {bad_side}"):
        generator.generate("a cat", 0, params.model_copy(update={"height": bad_side}), tmp_path)
    assert len(log_lines(tmp_path)) == 1


def test_latte_takes_video_length_and_the_prompt_as_given(generators, tmp_path):
    latte = generators["tiny-latte"]
    assert (latte._call.frames, latte._call.fixed) == ("video_length", {"clean_caption": False})
    a = read_video(latte.generate("a cat", 0, PARAMS, tmp_path).path).frames
    b = read_video(latte.generate("a dog", 0, PARAMS, tmp_path).path).frames
    c = latte.generate("a cat", 0, PARAMS.model_copy(update={"negative_prompt": "blur"}), tmp_path)
    assert not np.array_equal(a, b) and not c.cached


def test_a_saved_tiny_hunyuan_keeps_its_prompt_template_and_makes_the_same_video(generators, tmp_path):
    folder = save_tiny_pipeline("tiny-hunyuan", tmp_path / "hunyuan")  # the marker carries a dict call argument
    video = VideoGenerator(str(folder), device="cpu").generate("a cat", 5, PARAMS, tmp_path / "run")
    built = generators["tiny-hunyuan"].generate("a cat", 5, PARAMS, tmp_path / "built")
    assert np.array_equal(read_video(video.path).frames, read_video(built.path).frames)


def test_hunyuan_refuses_a_negative_prompt_its_guidance_would_ignore(generators, tmp_path):
    params = PARAMS.model_copy(update={"negative_prompt": "blur"})
    with pytest.raises(ValueError, match=r"`negative_prompt` is not supported by HunyuanVideoPipeline: .*true_cfg"):
        generators["tiny-hunyuan"].generate("a cat", 0, params, tmp_path)
    assert not log_lines(tmp_path)


def test_ltx_says_once_that_its_frame_rate_is_not_the_mp4s(caplog, tmp_path):
    ltx = cpu("tiny-ltx")
    with caplog.at_level(logging.WARNING, logger="rapo.tools.generator"):
        ltx.generate("a cat", 0, PARAMS, tmp_path)
        ltx.generate("a cat", 1, PARAMS, tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        "tiny-ltx conditions on `frame_rate`=25, its default; the mp4 is written at fps=8"
    ]


def test_a_mapped_class_built_in_the_test_loads_from_a_folder_and_follows_its_map(tmp_path):
    """MochiPipeline builds offline too, but stays out of TINY_SPECS: its 6k+1 rule is read from another attribute."""
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel

    from rapo.tools.tiny_pipelines import _seeded, _t5, tiny_tokenizer

    transformer = _seeded(0, lambda: MochiTransformer3DModel(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=1, pooled_projection_dim=16,
        in_channels=12, qk_norm="rms_norm", text_embed_dim=32, time_embed_dim=4, activation_fn="swiglu",
        max_sequence_length=16,
    ))  # fmt: skip
    vae = _seeded(0, lambda: AutoencoderKLMochi(
        latent_channels=12, encoder_block_out_channels=(32,) * 4, decoder_block_out_channels=(32,) * 4,
        layers_per_block=(1,) * 5,
    ))  # fmt: skip
    pipe = MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_t5(0),
        tokenizer=tiny_tokenizer(256),
        transformer=transformer,
    )
    folder = tmp_path / "tiny-mochi"
    pipe.save_pretrained(folder)
    (folder / TINY_MARKER).write_text(json.dumps({"spec": "mochi", "call_kwargs": {"max_sequence_length": 16}}))

    generator = VideoGenerator(str(folder), device="cpu")
    video = generator.generate("a cat", 0, GenerationParams(num_frames=7, height=32, width=48), tmp_path / "run")
    assert read_video(video.path).frames.shape == (7, 32, 48, 3)
    with pytest.raises(ValueError, match=r"`num_frames` must be 6k\+1 for MochiPipeline \(e.g. 7 or 13\), got 9"):
        generator.generate("a cat", 0, PARAMS, tmp_path / "run")


@pytest.mark.skipif(find_spec("ftfy") is None, reason="SkyReelsV2Pipeline cleans prompts with ftfy: not installed")
def test_skyreels_v2_runs_on_tiny_wan_components(tmp_path):
    from diffusers import SkyReelsV2Pipeline, SkyReelsV2Transformer3DModel, UniPCMultistepScheduler

    wan = build_tiny_pipeline("tiny-wan").pipeline
    transformer = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )  # fmt: skip
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0)
    pipe = SkyReelsV2Pipeline(
        tokenizer=wan.tokenizer,
        text_encoder=wan.text_encoder,
        transformer=transformer,
        vae=wan.vae,
        scheduler=scheduler,
    )
    pipe.save_pretrained(tmp_path / "sky")
    (tmp_path / "sky" / TINY_MARKER).write_text(json.dumps({"call_kwargs": {"max_sequence_length": 16}}))
    video = VideoGenerator(str(tmp_path / "sky"), device="cpu").generate("a cat", 0, PARAMS, tmp_path / "run")
    assert read_video(video.path).frames.shape == (9, 64, 64, 3)


@pytest.mark.skipif(find_spec("ftfy") is not None, reason="ftfy is installed")
def test_skyreels_v2_without_ftfy_is_refused_with_what_to_install():
    from diffusers import SkyReelsV2Pipeline

    pipe = type("SkyReelsV2Pipeline", (), {"__call__": SkyReelsV2Pipeline.__call__})()
    with pytest.raises(ModelError, match="SkyReelsV2Pipeline in /models/sky needs ftfy: pip install ftfy"):
        _call_map(pipe, "/models/sky")


# Mapped classes a test above builds and runs (TINY_SPECS and Mochi), and those it cannot, with what is missing
BUILT = {"WanPipeline", "CogVideoXPipeline", "LattePipeline", "LTXPipeline", "HunyuanVideoPipeline", "MochiPipeline"}
NOT_BUILT = {"SkyReelsV2Pipeline": "the ftfy package, unless installed (test_skyreels_v2_runs_on_tiny_wan_components)"}


@pytest.mark.parametrize("name", list(CALL_MAPS))
def test_every_map_names_arguments_the_installed_diffusers_class_takes(name):
    """A diffusers upgrade that renames a mapped argument fails here, not in a run."""
    import diffusers

    parameters = inspect.signature(getattr(diffusers, name).__call__).parameters
    call = CALL_MAPS[name]
    assert {"prompt", "generator", "output_type", *call.names()} <= set(parameters)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if call.frame_rate:
        assert parameters[call.frame_rate].default == 25  # LTX: the rate the warning names
    if name == "HunyuanVideoPipeline":  # true CFG exists and is off by default: a negative prompt would do nothing
        assert parameters["true_cfg_scale"].default == 1.0 and call.negative_prompt is None
    if name == "WanPipeline":  # Wan2.2's second guidance follows the first when left None
        assert parameters["guidance_scale_2"].default is None
    assert name in BUILT | set(NOT_BUILT)  # a new map comes with a tiny pipeline test, or says what is missing


def test_a_map_that_names_an_argument_the_class_lacks_is_refused_by_name():
    def old_call(self, prompt, num_frames, height, width, num_inference_steps, guidance_scale, generator=None):
        return None

    renamed = type("LattePipeline", (), {"__call__": old_call})
    with pytest.raises(ModelError, match=r"LattePipeline in /models/latte: its __call__ has no `video_length`"):
        _call_map(renamed(), "/models/latte")
    unmapped = type("SoraPipeline", (), {"__call__": old_call})
    assert _call_map(unmapped(), "/models/sora") == (FALLBACK, set(REQUIRED_CALL_ARGS))  # today's check
