"""rl_reason.models."""
