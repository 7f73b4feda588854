"""rl_reason.rl."""
