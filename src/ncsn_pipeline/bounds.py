"""Bounds on counts a user chooses, shared by the functions that check them and the command lines that state them
in ``--help`` (a module without imports, so that a parser loads no PyTorch)."""

MAX_PROBES = 1000  # Hutchinson-Skilling probes per example (`ncsn_pipeline.likelihood`)
MIN_TUNING_SAMPLES = 100  # samples per candidate for a stable fit of tuned noise levels (`ncsn_pipeline.step_tuning`)
