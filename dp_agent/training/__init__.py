"""Training: the demonstration windows, the one training loop (policies, planners and
distillation rounds run it), and distillation into few-step students."""
