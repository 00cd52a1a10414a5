"""Stage 3: distillation of optimised trajectories into a LoRA rewriter (not built yet)."""
