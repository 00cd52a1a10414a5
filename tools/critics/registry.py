"""Critics by name: `make_critic("flow", max_side=256)`; the CLI's `--critics` and the agent use it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the critics' base pulls in numpy and pydantic; the CLI only needs the names
    from rapo.tools.critics.base import Critic

CRITIC_NAMES = ("flow", "temporal", "imaging", "clip", "vlm", "physics")


def make_critic(name: str, **options: object) -> Critic:
    """Build the critic called `name` with keyword `options` for its constructor.

    Args:
        name: one of CRITIC_NAMES: "flow" (FlowCritic), "temporal" (TemporalCritic), "imaging" (ImagingCritic),
            "clip" (ClipCritic, needs `model_path`), "vlm" (VlmJudge, needs `base_url` and `model`), "physics"
            (PhysicsCritic; `judge`, a served model's `openai:URL#MODEL`, or rules without one).
        **options: the critic's constructor arguments.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or an option the critic does not take.
    """
    if name == "flow":
        from rapo.tools.critics.flow import FlowCritic as cls
    elif name == "temporal":
        from rapo.tools.critics.temporal import TemporalCritic as cls
    elif name == "imaging":
        from rapo.tools.critics.imaging import ImagingCritic as cls
    elif name == "clip":
        from rapo.tools.critics.clip import ClipCritic as cls
    elif name == "vlm":
        from rapo.tools.critics.vlm_judge import VlmJudge as cls
    elif name == "physics":
        from rapo.tools.critics.physics import PhysicsCritic as cls
    else:
        raise ValueError(f"unknown critic {name!r}: choose from {', '.join(CRITIC_NAMES)}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"critic {name!r}: bad options {sorted(options)} ({exc})") from None
