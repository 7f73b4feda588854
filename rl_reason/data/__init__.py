"""rl_reason.data."""
