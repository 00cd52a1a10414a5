"""Semantic-alignment critic: CLIP text-frame similarity with transformers' CLIPModel from a local folder."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import numpy as np

from rapo.common import ModelError
from rapo.tools.critics.base import CriticResult
from rapo.tools.guards import STOPWORDS
from rapo.tools.video import Video

CLIPSCORE_WEIGHT = 2.5  # Hessel et al. 2021: CLIPScore = 2.5 * max(cos, 0)
GOOD_ALIGNMENT = 0.7  # scores at or above this are reported as a match
TINY_MARKER = "RAPO_TINY_RANDOM_MODEL"  # file that `tiny_clip` writes: the folder holds random weights
_TINY_NOTE = "not a real model: tiny randomly initialised CLIP, its scores mean nothing"
_TINY_WORDS = """person man woman child people dog cat bird horse car boat train bicycle ball tree flower grass sky
sea river lake beach street city road room table chair window kitchen park field mountain snow rain sun light
night water fire red blue green yellow white black brown big small two three running walking jumping flying
swimming sitting standing playing dancing eating driving riding looking moving camera slowly quickly""".split()


class ClipCritic:
    """Scores how well sampled frames match the prompt with CLIP.

    `num_frames` evenly spaced frames and the prompt (truncated to the text encoder's length) are embedded; the
    cosine similarity of each frame to the prompt is computed. Score, CLIPScore-style:
    `min(1, 2.5 * max(mean_cos, 0))`; for OpenAI's ViT-B/32 a matching image typically has cos 0.28-0.35
    (score 0.7-0.9) and an unrelated one 0.10-0.18 (score 0.25-0.45).

    Args:
        model_path: a local folder holding a CLIPModel and its processor (tokenizer + image processor);
            nothing is downloaded.
        num_frames: how many frames to sample.
        device: torch device, e.g. "cpu" or "cuda".
    """

    name = "clip"

    def __init__(self, model_path: str | Path, num_frames: int = 8, device: str = "cpu") -> None:
        # 1. Check inputs
        self.model_path = Path(model_path).expanduser()
        if not (self.model_path / "config.json").is_file():
            raise ModelError(f"CLIP model not found: {self.model_path} is not a model folder with a config.json")
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be at least 1, got {num_frames}")
        self.num_frames = num_frames
        self.device = device
        self.real_model = not (self.model_path / TINY_MARKER).exists()

    @cached_property
    def _loaded(self):  # noqa: ANN202 - transformers is imported lazily
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoProcessor, CLIPModel

        try:
            processor = AutoProcessor.from_pretrained(self.model_path, local_files_only=True)
            model = CLIPModel.from_pretrained(self.model_path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load CLIP from {self.model_path}: {str(exc).splitlines()[0]}") from None
        return processor, model.to(self.device).eval()

    def load(self) -> None:
        """Load the model now rather than on the first `score`."""
        self._loaded  # noqa: B018 - the cached property loads it

    def score(self, video: Video, prompt: str, meta: Mapping[str, object] | None = None) -> CriticResult:
        """Mean text-frame cosine of `num_frames` frames of `video` against `prompt`, mapped to [0, 1]."""
        import torch

        start = time.perf_counter()
        # 1. Check inputs
        if not prompt.strip():
            raise ValueError("`prompt` must not be empty")
        if len(video.frames) < 1:
            raise ValueError("`video` has no frames")
        # 2. Sample frames
        index = np.unique(np.linspace(0, len(video.frames) - 1, self.num_frames).round().astype(int))
        processor, model = self._loaded
        # 3. Embed
        text = processor.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
        pixels = processor.image_processor(images=[video.frames[i] for i in index], return_tensors="pt")
        with torch.inference_mode():
            out = model(
                input_ids=text["input_ids"].to(self.device),
                attention_mask=text["attention_mask"].to(self.device),
                pixel_values=pixels["pixel_values"].to(self.device, model.dtype),
            )
        # text_embeds (1, D) and image_embeds (N, D) come L2-normalised
        cosines = (out.image_embeds @ out.text_embeds.T)[:, 0].float().cpu().numpy()  # (N,)
        mean = float(cosines.mean())
        score = min(1.0, CLIPSCORE_WEIGHT * max(mean, 0.0))
        raw = {
            "clip_cosine": mean,
            "clipscore": CLIPSCORE_WEIGHT * max(mean, 0.0),
            "cosine_per_frame": [round(float(c), 4) for c in cosines],
            "frames_sampled": [float(i) for i in index],
            "model": str(self.model_path),
            "real_model": "yes" if self.real_model else f"no: {_TINY_NOTE}",
        }
        return CriticResult(
            critic=self.name,
            score=score,
            raw=raw,
            feedback=self._feedback(score, mean, cosines, index),
            seconds=time.perf_counter() - start,
        )

    def _feedback(self, score: float, mean: float, cosines: np.ndarray, index: np.ndarray) -> str:
        note = "" if self.real_model else f"[{_TINY_NOTE}] "
        if score >= GOOD_ALIGNMENT:
            return f"{note}The frames match the prompt (CLIP cosine {mean:.3f}, score {score:.2f})."
        worst = ", ".join(str(int(index[i])) for i in np.argsort(cosines)[:2])
        return (
            f"{note}The frames match the prompt weakly (CLIP cosine {mean:.3f}, score {score:.2f}; least aligned "
            f"frames {worst}): name the main subject, its action and the setting plainly and visually."
        )


def tiny_clip(folder: str | Path) -> Path:
    """Build a tiny randomly initialised CLIP (model, tokenizer, image processor) in `folder`, for tests.

    Nothing is downloaded: the tokenizer is a `tokenizers` WordLevel model over a few hundred words wrapped in
    `PreTrainedTokenizerFast`. The folder gets a `RAPO_TINY_RANDOM_MODEL` marker file, so every ClipCritic result
    from it says it is not a real model. Returns the folder.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor  # transformers >= 5 without torchvision
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor

    folder = Path(folder)
    specials = ["[PAD]", "[UNK]", "<|startoftext|>", "<|endoftext|>"]
    vocab = {word: i for i, word in enumerate(dict.fromkeys([*specials, *sorted(STOPWORDS), *_TINY_WORDS]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 2), ("<|endoftext|>", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        model_max_length=77,
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    image_processor = ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    (folder / TINY_MARKER).write_text(_TINY_NOTE + "\n")
    return folder
