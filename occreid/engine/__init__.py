"""Engine: the training loop, checkpoints, distributed set-up, evaluation of a model and the demo."""
