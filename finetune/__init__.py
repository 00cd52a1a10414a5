"""Stage 3: distil optimised trajectories into a LoRA rewriter (dataset, train, evaluate, the shipped adapter)."""
