"""rl_reason.parallel."""
