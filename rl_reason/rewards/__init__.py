"""rl_reason.rewards."""
