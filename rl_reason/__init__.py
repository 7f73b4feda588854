"""rl_reason: rule-based RL (GRPO and its family) for LLMs and VLMs in JAX."""

__version__ = '0.1.0'
