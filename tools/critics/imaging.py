"""Imaging-quality critic, classical: sharpness, exposure and noise of sampled frames."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from rapo.tools.critics.base import CriticResult
from rapo.tools.video import Video, gray_frame

SHARPNESS_HALF = 100.0  # variance of Laplacian that scores 0.5: the usual "blurry below 100" rule of thumb
REFERENCE_VARIANCE = 3000.0  # gray-level variance (std 55) of a typical natural photo, the contrast sharpness assumes
FLAT_VARIANCE = 100.0  # below this gray-level variance (std 10) a frame is nearly flat: contrast gain capped at 30x
NOISE_HALF = 3.0  # noise sigma, in gray levels, that scores 0.5
CLIPPED_ZERO = 0.3  # share of clipped pixels (<= 4 or >= 251) that makes the exposure score 0
PROBLEM_BELOW = 0.5  # a sub-score below this is named as a problem in the feedback


class ImagingCritic:
    """Scores the frames' technical quality without a learned model.

    On up to `num_frames` evenly spaced frames, in grayscale, resized (never enlarged) so that the longer side is
    `max_side` (a fixed viewing size makes sharpness and noise comparable across resolutions):

    - sharpness: variance of the Laplacian normalised to a standard contrast,
      `v = var(Laplacian) * 3000 / max(var(gray), 100)` (3000 is the gray variance of a typical photo, so there
      `v` is the plain variance of the Laplacian); score `v / (v + 100)` (0.5 at the usual "blurry" cut of 100).
      The normalisation keeps a dark or low-contrast frame from reading as blurry; flat frames score 0.
    - exposure: `clipped` = share of pixels at <= 4 or >= 251, `distance` = |mean brightness - 127.5| / 127.5;
      score `clip(1 - clipped / 0.3) * clip(1 - (distance - 0.5) / 0.5)`, so a mean brightness between 64 and
      191 with few clipped pixels scores 1 and an all-black or all-white frame 0.
    - noise: sigma of the residual after a 3x3 median filter, estimated robustly as 1.4826 x its median absolute
      value (edges are sparse outliers, sensor-like noise is everywhere); score `1 / (1 + (sigma / 3)^2)`.
      Fine texture at the pixel scale reads as noise.

    Score: the mean of the three. The feedback names the lowest sub-score when it is below 0.5 (exposure first on
    ties, since a black frame is also "blurry").

    Args:
        num_frames: how many frames to sample.
        max_side: longer side, in pixels, frames are resized to; None keeps their resolution.
    """

    name = "imaging"

    def __init__(self, num_frames: int = 8, max_side: int | None = 512) -> None:
        # 1. Check inputs
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be at least 1, got {num_frames}")
        if max_side is not None and max_side < 16:
            raise ValueError(f"`max_side` must be None or at least 16, got {max_side}")
        self.num_frames = num_frames
        self.max_side = max_side

    def score(self, video: Video, prompt: str = "", meta: Mapping[str, object] | None = None) -> CriticResult:
        """Measure sharpness, exposure and noise of `video` (the prompt is not used)."""
        import cv2

        start = time.perf_counter()
        # 1. Check inputs
        if len(video.frames) < 1:
            raise ValueError("`video` has no frames")
        # 2. Sample and prepare frames
        index = np.unique(np.linspace(0, len(video.frames) - 1, self.num_frames).round().astype(int))
        gray = [gray_frame(video.frames[i], self.max_side) for i in index]
        # 3. Measure
        laplacian = float(
            np.mean(
                [cv2.Laplacian(g, cv2.CV_64F).var() * REFERENCE_VARIANCE / max(g.var(), FLAT_VARIANCE) for g in gray]
            )
        )
        luma = np.stack(gray)  # (N, h, w)
        clipped = float(np.mean((luma <= 4) | (luma >= 251)))
        brightness = float(luma.mean())
        distance = abs(brightness - 127.5) / 127.5
        noise = float(np.mean([_noise_sigma(g) for g in gray]))
        # 4. Score
        scores = {
            "exposure": float(np.clip(1 - clipped / CLIPPED_ZERO, 0, 1) * np.clip(1 - (distance - 0.5) / 0.5, 0, 1)),
            "sharpness": laplacian / (laplacian + SHARPNESS_HALF),
            "noise": 1.0 / (1.0 + (noise / NOISE_HALF) ** 2),
        }
        raw = {
            "laplacian_variance": laplacian,
            "clipped_share": clipped,
            "mean_brightness": brightness,
            "noise_sigma": noise,
            **{f"{k}_score": v for k, v in scores.items()},
            "frames_sampled": [float(i) for i in index],
        }
        return CriticResult(
            critic=self.name,
            score=float(np.mean(list(scores.values()))),
            raw=raw,
            feedback=_feedback(scores, raw),
            seconds=time.perf_counter() - start,
        )


def _noise_sigma(gray: np.ndarray) -> float:
    """Robust sigma, in gray levels, of what a 3x3 median filter removes from a uint8 image."""
    import cv2

    residual = gray.astype(np.float32) - cv2.medianBlur(gray, 3).astype(np.float32)
    return 1.4826 * float(np.median(np.abs(residual)))


def _feedback(scores: dict[str, float], raw: dict) -> str:
    worst = min(scores, key=scores.get)  # dict order: exposure wins ties
    measured = f"sharpness {scores['sharpness']:.2f}, exposure {scores['exposure']:.2f}, noise {scores['noise']:.2f}"
    if scores[worst] >= PROBLEM_BELOW:
        return f"Image quality is fine ({measured})."
    if worst == "exposure":
        kind = "underexposed (too dark)" if raw["mean_brightness"] < 127.5 else "overexposed (washed out)"
        problem = (
            f"exposure: the frames are {kind}, mean brightness {raw['mean_brightness']:.0f}/255, "
            f"{raw['clipped_share']:.0%} of pixels clipped; ask for balanced, natural lighting"
        )
    elif worst == "sharpness":
        problem = (
            f"sharpness: the frames are blurry (normalised variance of Laplacian {raw['laplacian_variance']:.0f}); "
            "ask for a sharp, in-focus, detailed shot"
        )
    else:
        problem = (
            f"noise: the frames are grainy (noise sigma {raw['noise_sigma']:.1f} gray levels); "
            "ask for a clean, well-lit, high-quality shot"
        )
    return f"Worst imaging problem: {problem} ({measured})."
