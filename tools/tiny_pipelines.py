"""Tiny, randomly initialised text-to-video pipelines for tests and smoke runs: no downloads, about 0.1 s a video.

Built from configs the way diffusers builds its own test dummies: one per pipeline class `VideoGenerator` maps
whose components build offline and fast (`tiny-wan` WanPipeline, `tiny-cogvideox` CogVideoXPipeline, `tiny-latte`
LattePipeline, `tiny-ltx` LTXPipeline, `tiny-hunyuan` HunyuanVideoPipeline), with the real models' frame and size
rules (Latte's transformer takes 9 frames, not 16). Their frames are noise: every video made with one says so
(`TINY_NOTE`). The tokenizers, the only parts that normally come from the hub, are a byte-level one built in
memory, so different prompts still give different videos.

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

TINY_SPECS = ("tiny-wan", "tiny-cogvideox", "tiny-latte", "tiny-ltx", "tiny-hunyuan")
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
    builders: dict[str, Callable[[int], Any]] = {
        "tiny-wan": _tiny_wan,
        "tiny-cogvideox": _tiny_cogvideox,
        "tiny-latte": _tiny_latte,
        "tiny-ltx": _tiny_ltx,
        "tiny-hunyuan": _tiny_hunyuan,
    }
    if spec not in builders:
        raise ValueError(f"unknown tiny generator {spec!r}; valid: {', '.join(TINY_SPECS)}")
    pipeline = builders[spec](seed)
    pipeline.set_progress_bar_config(disable=True)
    call_kwargs: dict[str, Any] = {"max_sequence_length": _TEXT_TOKENS}
    if spec == "tiny-latte":
        call_kwargs = {}  # Latte's text length is fixed (120 tokens, cut to the prompt's)
    if spec == "tiny-hunyuan":
        call_kwargs["prompt_template"] = {"template": "{}", "crop_start": 0}  # the default's crop counts Llama tokens
    return TinyPipeline(spec, pipeline, call_kwargs)


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
    return CogVideoXPipeline(
        tokenizer=tiny_tokenizer(226),
        text_encoder=_t5(seed),
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )


def _t5(seed: int):
    """The tiny T5 text encoder (d_model 32) CogVideoX, Latte and LTX read prompts with."""
    from transformers import T5Config, T5EncoderModel

    text_config = T5Config(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    return _seeded(seed, lambda: T5EncoderModel(text_config))


def _tiny_latte(seed: int):
    """LattePipeline: an image VAE (8x) and a transformer whose temporal embedding fixes 9 frames; about 0.05 s."""
    from diffusers import AutoencoderKL, DDIMScheduler, LattePipeline, LatteTransformer3DModel

    vae = _seeded(
        seed,
        lambda: AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=2,
        ),
    )
    transformer = _seeded(
        seed,
        lambda: LatteTransformer3DModel(
            num_attention_heads=3,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,  # the noise and its variance
            num_layers=1,
            cross_attention_dim=24,
            attention_bias=True,
            sample_size=8,
            patch_size=2,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            caption_channels=32,
            video_length=9,  # GenerationParams' default; Latte-1 has 16
        ),
    )
    return LattePipeline(
        tokenizer=tiny_tokenizer(120),
        text_encoder=_t5(seed),
        vae=vae,
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )


def _tiny_ltx(seed: int):
    """LTXPipeline: a VAE with LTX-Video's 32x spatial and 8x temporal compression (so 8k+1 frames); about 0.05 s."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    def vae():
        model = AutoencoderKLLTXVideo(
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, True, False),  # 8x in time and space, times patch_size 4: 32x
            decoder_spatio_temporal_scaling=(True, True, True, False),
            patch_size=4,
            patch_size_t=1,
        )
        model.use_framewise_encoding = model.use_framewise_decoding = False
        return model

    transformer = _seeded(
        seed,
        lambda: LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=1,
            caption_channels=32,
        ),
    )
    return LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_seeded(seed, vae),
        text_encoder=_t5(seed),
        tokenizer=tiny_tokenizer(128),
        transformer=transformer,
    )


def _tiny_hunyuan(seed: int):
    """HunyuanVideoPipeline: Llama and CLIP text encoders, a guidance-distilled transformer; about 0.2 s."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    vae = _seeded(
        seed,
        lambda: AutoencoderKLHunyuanVideo(
            latent_channels=4,
            down_block_types=("HunyuanVideoDownBlock3D",) * 4,
            up_block_types=("HunyuanVideoUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            norm_num_groups=4,
            spatial_compression_ratio=8,
            temporal_compression_ratio=4,
        ),
    )
    transformer = _seeded(
        seed,
        lambda: HunyuanVideoTransformer3DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=10,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            patch_size=2,
            patch_size_t=1,
            guidance_embeds=True,
            text_embed_dim=16,
            pooled_projection_dim=8,
            rope_axes_dim=(2, 4, 4),
        ),
    )
    # Token ids as tiny_tokenizer makes them: <pad> 0, </s> 1 (CLIP pools the hidden state at the first </s>).
    ids = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "vocab_size": 1000, "hidden_act": "gelu"}
    llama = LlamaConfig(hidden_size=16, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, **ids)
    clip = CLIPTextConfig(hidden_size=8, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, **ids)
    return HunyuanVideoPipeline(
        text_encoder=_seeded(seed, lambda: LlamaModel(llama)),
        tokenizer=tiny_tokenizer(256),
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=_seeded(seed, lambda: CLIPTextModel(clip)),
        tokenizer_2=tiny_tokenizer(77),
    )
