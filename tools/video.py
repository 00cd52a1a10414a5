"""Videos as data: frames in memory, mp4 on disk. Shared by the generator and the critics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rapo.common import InputFileError


@dataclass(frozen=True)
class Video:
    """Decoded frames of one video.

    Attributes:
        frames: uint8 array of shape (F, H, W, 3), RGB.
        fps: frames per second.
        path: where the video was read from or written to, if anywhere.
    """

    frames: np.ndarray
    fps: float
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"`frames` must be uint8 (F, H, W, 3), got {self.frames.dtype} {self.frames.shape}")


def write_video(frames: np.ndarray, path: Path, fps: float = 8.0) -> Path:
    """Write (F, H, W, 3) frames (uint8, or float in [0, 1]) as an H.264 mp4; returns `path`.

    Written to a temporary name and renamed, so a killed process never leaves a truncated mp4.
    """
    import imageio.v2 as imageio

    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    imageio.mimwrite(partial, list(frames), fps=fps, codec="libx264", macro_block_size=1)
    partial.replace(path)
    return path


def read_video(path: Path) -> Video:
    """Decode an mp4 (or any format ffmpeg reads) into memory; raises InputFileError if it cannot."""
    import imageio.v2 as imageio

    if not path.is_file():
        raise InputFileError(f"video not found: {path}")
    try:
        reader = imageio.get_reader(path)
        fps = float(reader.get_meta_data().get("fps", 8.0))
        frames = [frame for frame in reader]  # iterate: list(reader) raised MemoryError on some files
        reader.close()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputFileError(f"unreadable video: {path} ({str(exc).splitlines()[0]})") from None
    if not frames:
        raise InputFileError(f"video has no frames: {path}")
    return Video(np.stack(frames)[..., :3], fps, path)  # (F, H, W, 3)


def gray_frame(frame: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """An RGB frame as uint8 grayscale (H', W'), shrunk with area averaging so its longer side is <= `max_side`."""
    import cv2

    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray
