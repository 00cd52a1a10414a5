"""Temporal critic: VBench's temporal flickering and the structural similarity of adjacent frames."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from rapo.tools.critics.base import CriticResult
from rapo.tools.video import Video, gray_frame

_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
BRIGHTNESS_JUMP = 2.0  # gray levels of mean-brightness zig-zag above which the feedback reports flicker


class TemporalCritic:
    """Scores frame-to-frame stability.

    - `flicker`: VBench's temporal flickering, `1 - mean|frame_t+1 - frame_t| / 255` over all pixels and
      channels at full resolution. VBench applies it to static videos only; on moving content it also drops
      with motion, so read it together with `similarity` and the flow critic.
    - `similarity`: mean SSIM (Gaussian window, sigma 1.5) of adjacent grayscale frames resized so the longer
      side is `max_side`, clipped to [0, 1].
    - `brightness_jump`: mean absolute second difference of the per-frame mean brightness, in gray levels:
      near 0 for steady light or a smooth fade, large for brightness that alternates (flicker).

    Score: `flicker_weight * flicker + (1 - flicker_weight) * similarity`.

    Args:
        max_side: longer side, in pixels, of the frames SSIM is computed on; None for full resolution.
        flicker_weight: weight of the flicker term in the score, in [0, 1].
    """

    name = "temporal"

    def __init__(self, max_side: int | None = 128, flicker_weight: float = 0.5) -> None:
        # 1. Check inputs
        if max_side is not None and max_side < 16:
            raise ValueError(f"`max_side` must be None or at least 16, got {max_side}")
        if not 0.0 <= flicker_weight <= 1.0:
            raise ValueError(f"`flicker_weight` must be in [0, 1], got {flicker_weight}")
        self.max_side = max_side
        self.flicker_weight = flicker_weight

    def score(self, video: Video, prompt: str = "", meta: Mapping[str, object] | None = None) -> CriticResult:
        """Measure flicker and adjacent-frame similarity of `video` (the prompt is not used)."""
        import cv2

        start = time.perf_counter()
        # 1. Check inputs
        frames = video.frames
        if len(frames) < 2:
            raise ValueError(f"`video` needs at least 2 frames, got {len(frames)}")
        # 2. Flicker at full resolution, pair by pair to keep memory flat
        differences = [float(cv2.absdiff(a, b).mean()) for a, b in zip(frames[:-1], frames[1:], strict=True)]
        flicker = 1.0 - float(np.mean(differences)) / 255.0
        # 3. SSIM of adjacent downscaled grayscale frames
        gray = [gray_frame(frame, self.max_side).astype(np.float32) for frame in frames]
        ssim = [_ssim(a, b) for a, b in zip(gray[:-1], gray[1:], strict=True)]
        similarity = float(np.clip(np.mean(ssim), 0.0, 1.0))
        # 4. Brightness zig-zag
        brightness = np.array([g.mean() for g in gray])  # (F,)
        jump = float(np.abs(np.diff(brightness, n=2)).mean()) if len(brightness) >= 3 else 0.0
        score = self.flicker_weight * flicker + (1.0 - self.flicker_weight) * similarity
        raw = {
            "flicker": flicker,
            "similarity": similarity,
            "brightness_jump": jump,
            "mean_abs_diff": float(np.mean(differences)),
            "ssim_per_pair": [round(float(s), 4) for s in ssim],
        }
        return CriticResult(
            critic=self.name,
            score=float(np.clip(score, 0.0, 1.0)),
            raw=raw,
            feedback=_feedback(raw),
            seconds=time.perf_counter() - start,
        )


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004) of two float32 grayscale images in [0, 255], Gaussian window sigma 1.5."""
    import cv2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    return float(ssim.mean())


def _feedback(raw: dict) -> str:
    problems = []
    if raw["brightness_jump"] > BRIGHTNESS_JUMP:
        problems.append(
            f"brightness flickers between frames (mean jump {raw['brightness_jump']:.1f} gray levels); "
            "ask for steady, even lighting"
        )
    if raw["similarity"] < 0.5:
        problems.append(
            f"adjacent frames differ a lot (SSIM {raw['similarity']:.2f}): fast motion, cuts or unstable content; "
            "ask for one continuous shot with steady motion"
        )
    measured = f"flicker {raw['flicker']:.3f}, adjacent-frame SSIM {raw['similarity']:.2f}"
    if not problems:
        return f"Temporally stable ({measured})."
    return f"Temporal problems ({measured}): " + "; ".join(problems) + "."
