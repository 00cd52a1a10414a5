"""Tiny, randomly initialised text-to-video pipelines for tests and smoke runs: no downloads, about 0.1 s a video.

Built from configs the way diffusers builds its own test dummies. Their frames are noise: every video made with
one says so (`TINY_NOTE`). The tokenizer, the only part that normally comes from the hub, is a byte-level one
built in memory, so different prompts still give different videos.

    pipe = build_tiny_pipeline("tiny-wan")
    frames = pipe.pipeline("a cat", num_frames=9, height=64, width=64, output_type="np", **pipe.call_kwargs).frames
    save_tiny_pipeline("tiny-wan", Path("models/tiny-wan"))  # a folder `VideoGenerator` loads like a real model
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TINY_SPECS = ("tiny-wan", "tiny-cogvideox")
TINY_NOTE = "tiny randomly initialised pipeline: NOT a real model; frames are noise"
TINY_MARKER = "rapo-tiny.json"
"""A file `save_tiny_pipeline` leaves in the folder, so a saved tiny pipeline is never mistaken for a real model."""

# The transformers' text-sequence length; CogVideoX's transformer accepts exactly this many text tokens.
_TEXT_TOKENS = 16


@dataclass(frozen=True)
class TinyPipeline:
    """A tiny pipeline and the extra `__call__` arguments its components need."""

    spec: str
    pipeline: Any = field(repr=False)
    call_kwargs: dict[str, Any] = field(default_factory=dict)


def build_tiny_pipeline(spec: str, seed: int = 0) -> TinyPipeline:
    """Build the tiny pipeline named `spec` (one of `TINY_SPECS`), in eval mode on the CPU, in float32.

    The weights depend only on `seed`: each component is initialised from `torch.manual_seed(seed)` inside a
    forked RNG, so building one neither depends on nor disturbs the caller's random state.
    """
    builders: dict[str, Callable[[int], Any]] = {"tiny-wan": _tiny_wan, "tiny-cogvideox": _tiny_cogvideox}
    if spec not in builders:
        raise ValueError(f"unknown tiny generator {spec!r}; valid: {', '.join(TINY_SPECS)}")
    pipeline = builders[spec](seed)
    pipeline.set_progress_bar_config(disable=True)
    return TinyPipeline(spec, pipeline, {"max_sequence_length": _TEXT_TOKENS})


def save_tiny_pipeline(spec: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny pipeline with `save_pretrained`, plus `TINY_MARKER` naming it; returns `folder`."""
    tiny = build_tiny_pipeline(spec, seed)
    tiny.pipeline.save_pretrained(folder)
    marker = {"spec": spec, "seed": seed, "note": TINY_NOTE, "call_kwargs": tiny.call_kwargs}
    (folder / TINY_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return folder


def read_tiny_marker(folder: Path) -> dict[str, Any] | None:
    """The marker `save_tiny_pipeline` wrote in `folder`, or None for any other folder."""
    path = folder / TINY_MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def tiny_tokenizer(model_max_length: int):
    """A T5-like byte-level tokenizer: one token per UTF-8 byte, `</s>` appended, `<pad>` = 0; 259 tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def _seeded(seed: int, make: Callable[[], Any]) -> Any:
    """`make()` with the global torch RNG seeded to `seed`, restored afterwards; returned in eval mode."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = make()
    return module.eval()


def _tiny_wan(seed: int):
    """WanPipeline: 64x64 in 2 steps takes about 0.1 s on a free CPU core."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    vae = _seeded(seed, lambda: AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1))
    transformer = _seeded(
        seed,
        lambda: WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        ),
    )
    # UMT5Config, not T5Config: a UMT5 model saved with a T5 config reloads with different weights.
    text_config = UMT5Config(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    text_encoder = _seeded(seed, lambda: UMT5EncoderModel(text_config))
    return WanPipeline(
        tokenizer=tiny_tokenizer(512),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )


def _tiny_cogvideox(seed: int):
    """CogVideoXPipeline: 64x64 in 2 steps takes about 0.15 s on a free CPU core."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    vae = _seeded(
        seed,
        lambda: AutoencoderKLCogVideoX(
            in_channels=3,
            out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=2,
            temporal_compression_ratio=4,
        ),
    )
    transformer = _seeded(
        seed,
        lambda: CogVideoXTransformer3DModel(
            num_attention_heads=4,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=2,
            text_embed_dim=32,
            num_layers=1,
            sample_width=8,  # latent size of a 64x64 video; other sizes get positional embeddings on the fly
            sample_height=8,
            sample_frames=9,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=_TEXT_TOKENS,
        ),
    )
    text_config = T5Config(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    text_encoder = _seeded(seed, lambda: T5EncoderModel(text_config))
    return CogVideoXPipeline(
        tokenizer=tiny_tokenizer(226),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
