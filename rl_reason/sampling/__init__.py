"""rl_reason.sampling."""
