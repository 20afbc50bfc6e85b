"""Training a run: prepare, the loop, checkpoints, distribution, the resume session."""
