"""Runs and their stores: Stage 1 over a prompt file, SSPO batches (one process or Ray), the trajectory store."""
