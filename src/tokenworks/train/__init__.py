"""The one small training loop: progress bar, atomic checkpoints, resume, reproducible by seed."""

from tokenworks.train.loop import TrainConfig, TrainResult, batch_generator, progress_enabled, train

__all__ = ["TrainConfig", "TrainResult", "batch_generator", "progress_enabled", "train"]
