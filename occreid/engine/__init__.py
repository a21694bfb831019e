"""Engine: the training loop (trainer.py, in named steps), its optimiser and schedule, metrics log, the RNG
state a checkpoint carries, and the rules of a run folder."""
