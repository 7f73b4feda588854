"""rl_reason.tasks."""
