"""GRPO on vision-language tasks. Default: a tiny Qwen2.5-VL-architecture model on 2x2 jigsaws (CPU).

  python -m rl_reason.main --config=configs/vlm_grpo.py --workdir=runs/jigsaw_tiny

Presets (`--config=configs/vlm_grpo.py:ARG`):
  tiny      (default) tiny Qwen2.5-VL from random init, supervised format warm-up, GRPO on 2x2 jigsaws.
  tiny_2x1  the same on 2x1 jigsaws with fewer steps (the end-to-end test).
Override any field on the command line, e.g. `--config.rl.beta=0.0`.
"""

from ml_collections import config_dict

PRESETS = ('tiny', 'tiny_2x1')


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  arg = arg or 'tiny'
  if arg not in PRESETS:
    raise ValueError(f'unknown config argument {arg!r}; valid: {", ".join(PRESETS)}')
  c = config_dict.ConfigDict()
  c.seed = 0  # base seed: model init, data order and sampling keys derive from it

  c.model = config_dict.ConfigDict()
  c.model.preset = 'tiny_vl'  # a name in rl_reason.models.PRESETS ('' when model.path is set)
  c.model.path = ''  # a Hugging Face checkpoint directory (config.json, safetensors, tokenizer); '' = preset
  c.model.dtype = 'float32'  # activation dtype: float32 | bfloat16
  c.model.param_dtype = 'float32'  # master-weight dtype

  c.task = config_dict.ConfigDict()
  c.task.name = 'jigsaw'  # a task in rl_reason.tasks
  c.task.rows = 2  # jigsaw grid rows (m)
  c.task.cols = 2  # jigsaw grid columns (n)
  c.task.image_size = (32, 32)  # procedural image (height, width) in pixels
  c.task.shuffle_mn = True  # swap rows and columns with probability 0.5 (Jigsaw-R1)
  c.task.think = True  # think mode: <think>...</think><answer>...</answer>
  c.task.prompt_style = 'compact'  # compact (few tokens, CPU) | full (Jigsaw-R1 wording)

  c.reward = config_dict.ConfigDict()
  # Registered rewards and their weights (Jigsaw-R1: 1.0 accuracy + 0.5 format).
  c.reward.weights = config_dict.ConfigDict({'jigsaw_grid': 1.0, 'jigsaw_format': 0.5})

  c.rollout = config_dict.ConfigDict()
  c.rollout.batch_size = 128  # B: completions per RL step (global); prompts per step = B / G
  c.rollout.num_generations = 16  # G: samples per prompt (one prefill each, cache fanned out)
  c.rollout.max_new_tokens = 16  # N: completion length cap
  c.rollout.temperature = 1.0  # sampling temperature (the learner uses the same scaling)
  c.rollout.top_k = 0  # 0 = off
  c.rollout.top_p = 1.0  # 1.0 = off
  c.rollout.prompt_buckets = (32, 64, 128, 256)  # static prompt lengths (bounded recompiles)

  c.rl = config_dict.ConfigDict()
  c.rl.advantage = 'grpo'  # advantage estimator: grpo | drgrpo
  c.rl.advantage_eps = 1e-4  # std epsilon (TRL: 1e-4)
  c.rl.num_iterations = 1  # mu: updates per rollout batch (1 = on-policy, old log-probs skipped)
  c.rl.eps_low = 0.2  # PPO clip lower range
  c.rl.eps_high = 0.2  # PPO clip upper range (DAPO clip-higher: 0.28)
  c.rl.beta = 0.1  # k3 KL coefficient towards the reference (0 skips the reference pass)
  c.rl.kl_estimator = 'k3'  # k1 | k2 | k3
  c.rl.aggregation = 'seq_mean_token_mean'  # seq_mean_token_mean | token_mean
  c.rl.entropy_coef = 0.0  # entropy bonus coefficient

  c.optim = config_dict.ConfigDict()
  c.optim.learning_rate = 3e-4  # peak learning rate of the RL stage
  c.optim.warmup_steps = 10  # linear warm-up steps
  c.optim.schedule = 'constant'  # constant | cosine
  c.optim.end_lr_factor = 0.1  # cosine: final lr / peak lr
  c.optim.total_steps = 0  # cosine horizon; 0 = train.steps
  c.optim.weight_decay = 0.0  # AdamW decoupled weight decay
  c.optim.b1 = 0.9  # Adam beta1
  c.optim.b2 = 0.99  # Adam beta2
  c.optim.eps = 1e-8  # Adam epsilon
  c.optim.grad_clip_norm = 1.0  # global-norm clipping (0 = off)

  c.warmup = config_dict.ConfigDict()
  # Supervised format warm-up on RANDOM permutations: teaches the answer format, never the answers.
  c.warmup.steps = 150  # 0 = off
  c.warmup.batch_size = 64  # sequences per warm-up step
  c.warmup.learning_rate = 3e-3  # constant learning rate of the warm-up
  c.warmup.reference = True  # the KL reference is the policy after warm-up (else: the initial policy)

  c.train = config_dict.ConfigDict()
  c.train.steps = 1500  # RL steps
  c.train.log_every = 1  # console / metrics.jsonl / TensorBoard cadence (steps)
  c.train.eval_every = 100  # greedy evaluation on held-out puzzles (0 = only at the end)
  c.train.eval_size = 128  # held-out puzzles per evaluation
  c.train.sample_every = 50  # decoded samples written to samples.jsonl
  c.train.checkpoint_every = 100  # orbax checkpoint cadence (and at the end)
  c.train.keep_checkpoints = 2  # checkpoints kept on disk

  c.mesh = config_dict.ConfigDict()
  c.mesh.data = -1  # data-parallel devices (-1: all remaining)
  c.mesh.fsdp = 1  # parameter-sharding devices
  c.mesh.tensor = 1  # tensor-parallel devices

  if arg == 'tiny_2x1':
    c.task.rows, c.task.cols = 2, 1
    c.rollout.batch_size, c.rollout.num_generations = 64, 8
    c.warmup.steps = 100
    c.train.steps = 300
    c.train.eval_every = 100
    c.train.eval_size = 64
    c.train.checkpoint_every = 100
  return c
