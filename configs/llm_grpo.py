"""GRPO on text tasks. Default: a tiny Qwen2 decoder from random init on procedural arithmetic (CPU).

  python -m rl_reason.main --config=configs/llm_grpo.py --workdir=runs/arithmetic_tiny

Presets (`--config=configs/llm_grpo.py:ARG`):
  tiny  (default) tiny Qwen2 decoder (`tiny_lm`), supervised format warm-up on random answers,
        GRPO on 2-operand single-digit arithmetic answered as \\boxed{n} (no reasoning).
  qwen2_5_0_5b | qwen2_5_1_5b | qwen2_5_3b | qwen2_5_7b | llama3_1_8b | qwen3_0_6b | qwen3_1_7b |
  qwen3_4b | qwen3_8b
        the published architecture with SimpleRL-Zoo's settings (ALGORITHMS.md 1.10: 1024 prompts x 8,
        lr 5e-7, KL 1e-4 in the loss, entropy bonus 1e-3, temperature 1.0, math-equivalence reward
        only) on procedural arithmetic with reasoning; bf16 activations, fp32 master weights, scanned
        and rematerialised layers, parameters sharded over all devices. Needs the checkpoint:
        --config.model.path=/ckpt/Qwen2.5-1.5B (its config.json is checked against the preset).
        Approximation: SimpleRL-Zoo trains on GSM8K/MATH buckets; offline here, the procedural
        arithmetic task stands in, with `task.difficulty` as the bucket knob; one update per rollout
        batch (their PPO mini-batches of 256 are not implemented yet).
Override any field on the command line, e.g. `--config.task.difficulty=3`.
"""

from ml_collections import config_dict

PUBLISHED = ('qwen2_5_0_5b', 'qwen2_5_1_5b', 'qwen2_5_3b', 'qwen2_5_7b', 'llama3_1_8b', 'qwen3_0_6b',
             'qwen3_1_7b', 'qwen3_4b', 'qwen3_8b')
PRESETS = ('tiny',) + PUBLISHED


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  arg = arg or 'tiny'
  if arg not in PRESETS:
    raise ValueError(f'unknown config argument {arg!r}; valid: {", ".join(PRESETS)}')
  c = config_dict.ConfigDict()
  c.seed = 0  # base seed: model init, data order and sampling keys derive from it

  c.model = config_dict.ConfigDict()
  c.model.preset = 'tiny_lm'  # a name in rl_reason.models.PRESETS ('' when only model.path is set)
  c.model.path = ''  # a Hugging Face checkpoint directory (config.json, safetensors, tokenizer)
  c.model.dtype = 'float32'  # activation dtype: float32 | bfloat16
  c.model.param_dtype = 'float32'  # master-weight dtype
  c.model.scan_layers = False  # scan over stacked decoder layers (and vision blocks): compile time flat in depth
  c.model.remat = 'none'  # layer remat (decoder and vision) in the backward pass: none | full | minimal | dots_saveable

  c.task = config_dict.ConfigDict()
  c.task.name = 'arithmetic'  # a task in rl_reason.tasks (its config fields follow)
  c.task.difficulty = 1  # d + 1 operands of (d + 1) // 2 digits
  c.task.num_operands = 0  # overrides the operand count (0: from difficulty)
  c.task.digits = 0  # overrides the digits per operand (0: from difficulty)
  c.task.operators = ('+', '-')  # drawn from + - *
  c.task.think = False  # ask for reasoning before the boxed answer

  c.reward = config_dict.ConfigDict()
  c.reward.weights = config_dict.ConfigDict()  # {} = the task's own rewards (math_equiv)
  c.reward.workers = 0  # reward worker processes (0: in this process)
  c.reward.timeout_s = 10.0  # time limit of one (completion, reward) evaluation

  c.rollout = config_dict.ConfigDict()
  c.rollout.batch_size = 64  # B: completions per RL step (global); prompts per step = B / G
  c.rollout.num_generations = 8  # G: samples per prompt
  c.rollout.max_new_tokens = 16  # N: completion length cap
  c.rollout.temperature = 1.0  # sampling temperature (the learner uses the same scaling)
  c.rollout.top_k = 0  # 0 = off
  c.rollout.top_p = 1.0  # 1.0 = off
  c.rollout.min_p = 0.0  # 0.0 = off
  c.rollout.cache_dtype = ''  # KV cache dtype: '' = the model's compute dtype | float32 | bfloat16
  c.rollout.prompt_buckets = (128, 256)  # static prompt lengths (bounded recompiles)
  c.rollout.prefill_chunk = 512  # prompt tokens per prefill pass: longer prompts in chunks (0 = one pass)

  c.rl = config_dict.ConfigDict()  # every loss switch of configs/vlm_grpo.py may be set here too
  c.rl.advantage = 'grpo'  # advantage estimator (rl_reason.rl.advantages)
  c.rl.advantage_eps = 1e-4  # std epsilon
  c.rl.num_iterations = 1  # mu: updates per rollout batch
  c.rl.beta = 0.04  # KL coefficient (k3, in the loss) towards the reference
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
  # Supervised format warm-up on RANDOM answers: teaches the answer format, never the answers.
  c.warmup.steps = 100  # 0 = off
  c.warmup.batch_size = 64  # sequences per warm-up step
  c.warmup.learning_rate = 3e-3  # constant learning rate of the warm-up
  c.warmup.reference = True  # the KL reference is the policy after warm-up (else: the initial policy)
  c.warmup.answers = 'random'  # 'correct': the task's answers (a pretrained stand-in for label-free methods)

  c.train = config_dict.ConfigDict()
  c.train.steps = 500  # RL steps
  c.train.log_every = 1  # console / metrics.jsonl / TensorBoard cadence (steps)
  c.train.eval_every = 100  # greedy evaluation on held-out problems (0 = only at the end)
  c.train.eval_size = 128  # held-out problems per evaluation
  c.train.sample_every = 50  # decoded samples written to samples.jsonl
  c.train.checkpoint_every = 100  # orbax checkpoint cadence (and at the end)
  c.train.keep_checkpoints = 2  # checkpoints kept on disk

  c.curriculum = config_dict.ConfigDict()
  # A curriculum from rl_reason.curricula ('' = none) and its fields, e.g. in a recipe:
  # c.curriculum = {'name': 'threshold', 'levels': ({'rows': 2}, {'rows': 3}), 'threshold': 0.8}
  c.curriculum.name = ''

  c.dynamic_sampling = config_dict.ConfigDict()
  # DAPO dynamic sampling: generate rounds of prompts, keep only groups whose completions differ in
  # the metric (a group of equal rewards has zero advantage), until the step's prompts are filled.
  c.dynamic_sampling.metric = ''  # '' = off | accuracy (binary, DAPO) | reward (total reward differs)
  c.dynamic_sampling.prompts_per_round = 0  # prompts generated per round (0: prompts per step; DAPO: 3x)
  c.dynamic_sampling.max_rounds = 10  # rounds per step at most; then dropped groups fill the batch
  c.dynamic_sampling.fill = 'dropped'  # dropped (fill with dropped groups, counted) | error (verl)

  c.shaping = config_dict.ConfigDict()
  # Reward shaping applied after scoring, before advantages: {scheme: {fields}} from rl_reason.rewards.shapers
  # ({} = none), e.g. in a recipe: c.shaping = {'dapo_overlong': {'cache_length': 4}}. Each scheme adds a
  # term (lengths in tokens, groups, sampler log-probs) to the trained reward; logged task metrics stay raw.

  c.mesh = config_dict.ConfigDict()
  c.mesh.data = -1  # data-parallel devices (-1: all remaining)
  c.mesh.fsdp = 1  # parameter-sharding devices
  c.mesh.tensor = 1  # tensor-parallel devices
  c.mesh.num_devices = 0  # > 0: only the first N devices of a single-process run (0: all)

  if arg in PUBLISHED:
    c.model.preset = arg  # checked against --config.model.path's config.json
    c.model.dtype, c.model.param_dtype = 'bfloat16', 'float32'
    c.model.scan_layers, c.model.remat = True, 'minimal'
    c.task.difficulty, c.task.operators, c.task.think = 3, ('+', '-', '*'), True
    c.rollout.batch_size, c.rollout.num_generations = 8192, 8  # 1024 prompts x 8
    c.rollout.max_new_tokens = 8192
    c.rollout.prompt_buckets = (256, 512)
    c.rl.beta = 1e-4
    c.rl.entropy_coef = 1e-3
    c.optim.learning_rate = 5e-7
    c.optim.warmup_steps = 0
    c.optim.b2 = 0.999
    c.warmup.steps = 0
    c.train.steps = 100
    c.mesh.data, c.mesh.fsdp = 1, -1
  return c
