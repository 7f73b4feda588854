"""GRPO on vision-language tasks. Default: a tiny Qwen2.5-VL-architecture model on 2x2 jigsaws (CPU).

  python -m rl_reason.main --config=configs/vlm_grpo.py --workdir=runs/jigsaw_tiny

Presets (`--config=configs/vlm_grpo.py:ARG`):
  tiny           (default) tiny Qwen2.5-VL from random init, supervised format warm-up, GRPO on 2x2 jigsaws.
  tiny_2x1       the same on 2x1 jigsaws with fewer steps (the end-to-end test).
  qwen2_5_vl_3b  Qwen2.5-VL-3B-Instruct on 3x3 jigsaws with Jigsaw-R1's settings (G 8, 64 prompts per
  qwen2_5_vl_7b  step, lr 1e-6, beta 0.04, 512 new tokens, 2000 steps; bf16 activations, fp32 master
                 weights, scanned + rematerialised layers, parameters sharded over all devices).
                 Needs the checkpoint: --config.model.path=/ckpt/Qwen2.5-VL-3B-Instruct (its
                 config.json is checked against the preset).
Override any field on the command line, e.g. `--config.rl.beta=0.0`.
"""

from ml_collections import config_dict

PRESETS = ('tiny', 'tiny_2x1', 'qwen2_5_vl_3b', 'qwen2_5_vl_7b')


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
  c.model.scan_layers = False  # scan over stacked decoder layers (and vision blocks): compile time flat in depth
  c.model.remat = 'none'  # layer remat (decoder and vision) in the backward pass: none | full | minimal | dots_saveable

  c.task = config_dict.ConfigDict()
  c.task.name = 'jigsaw'  # a task in rl_reason.tasks
  c.task.rows = 2  # jigsaw grid rows (m)
  c.task.cols = 2  # jigsaw grid columns (n)
  c.task.image_size = (48, 48)  # procedural image (height, width) in pixels: 3x3 image tokens
  c.task.shuffle_mn = True  # swap rows and columns with probability 0.5 (Jigsaw-R1)
  c.task.think = True  # think mode: <think>...</think><answer>...</answer>
  c.task.prompt_style = 'compact'  # compact (few tokens, CPU) | full (Jigsaw-R1 wording)

  c.reward = config_dict.ConfigDict()
  # Registered rewards and their weights (Jigsaw-R1: 1.0 accuracy + 0.5 format).
  c.reward.weights = config_dict.ConfigDict({'jigsaw_grid': 1.0, 'jigsaw_format': 0.5})
  c.reward.workers = 0  # reward worker processes (0: in this process; the pool isolates hangs and crashes)
  c.reward.timeout_s = 10.0  # time limit of one (completion, reward) evaluation; failures score the minimum

  c.rollout = config_dict.ConfigDict()
  c.rollout.batch_size = 128  # B: completions per RL step (global); prompts per step = B / G
  c.rollout.num_generations = 16  # G: samples per prompt (one prefill each, cache fanned out)
  c.rollout.max_new_tokens = 16  # N: completion length cap
  c.rollout.temperature = 1.0  # sampling temperature (the learner uses the same scaling)
  c.rollout.top_k = 0  # 0 = off
  c.rollout.top_p = 1.0  # 1.0 = off
  c.rollout.min_p = 0.0  # 0.0 = off; keep tokens with p >= min_p * max p
  c.rollout.cache_dtype = ''  # KV cache dtype: '' = the model's compute dtype | float32 | bfloat16
  c.rollout.prompt_buckets = (32, 64, 128, 256)  # static prompt lengths (bounded recompiles)
  c.rollout.prefill_chunk = 512  # prompt tokens per prefill pass: longer prompts in chunks (0 = one pass)

  c.rl = config_dict.ConfigDict()
  # Advantages and updates (rl_reason.rl.advantages).
  c.rl.advantage = 'grpo'  # grpo | drgrpo | batch_std | rloo | reinforce_pp_baseline | passk | normalize_then_sum | normalize_then_mean | gdpo (per-reward columns)
  c.rl.advantage_eps = 1e-4  # std epsilon (TRL: 1e-4)
  c.rl.num_iterations = 1  # mu: epochs over each rollout batch (old log-probs skipped with 1 update per rollout)
  c.rl.mini_batch_size = 0  # completions per optimiser step, whole groups, seeded order per epoch (0 = whole batch)
  c.rl.grad_accum_steps = 1  # micro-batches per optimiser step (gradients summed, global normalisers)
  c.rl.logprob_chunk_size = 0  # completion tokens per log-prob chunk, never full [B, N, V] logits (0 = off)
  c.rl.train_vision = True  # RL trains the vision tower (False: frozen, no optimiser state for it)
  # Importance ratio and surrogate (rl.ratios, rl.surrogates).
  c.rl.ratio_level = 'token'  # token | sequence (GSPO) | sequence_token (GSPO-token)
  c.rl.surrogate = 'ppo_clip'  # ppo_clip | unclipped | cispo | sapo | gpg
  c.rl.eps_low = 0.2  # ppo_clip / cispo: clip range below 1
  c.rl.eps_high = 0.2  # ppo_clip / cispo: clip range above 1 (DAPO clip-higher: 0.28)
  c.rl.dual_clip = 0.0  # ppo_clip: dual-clip constant c > 1 for A < 0 (verl: 3); 0 = off
  c.rl.sapo_tau_pos = 1.0  # sapo: gate temperature for A > 0
  c.rl.sapo_tau_neg = 1.05  # sapo: gate temperature for A <= 0
  # Aggregation (rl.aggregation).
  c.rl.aggregation = 'seq_mean_token_mean'  # seq_mean_token_mean | token_mean | seq_mean_token_sum(_norm)
  c.rl.aggregation_constant = 0.0  # seq_mean_token_sum_norm: constant length L (0 = rollout.max_new_tokens)
  # KL towards the reference (rl.kl).
  c.rl.beta = 0.1  # KL coefficient towards the reference (0 skips the reference pass)
  c.rl.kl_estimator = 'k3'  # k1 | k2 | k3 | k1+ | k3+ (straight-through: value of k1/k3, gradient of k2)
  c.rl.kl_placement = 'loss'  # loss | reward
  c.rl.beta_schedule = 'constant'  # constant | linear | cosine
  c.rl.beta_final = 0.0  # beta at the end of a non-constant schedule
  c.rl.beta_schedule_steps = 0  # length of a non-constant schedule, in RL steps
  c.rl.kl_group_factor = 'none'  # none | akf_mean_reward (UNVERIFIED GuirlVG AKF)
  c.rl.kl_group_factor_scale = 1.0  # akf_mean_reward: exp(scale * (group mean - batch mean reward))
  c.rl.entropy_coef = 0.0  # entropy bonus coefficient (negative: entropy minimisation); with entropy_target: initial
  # Adaptive entropy control (Skywork-OR1): each step the coefficient moves by entropy_coef_delta toward more bonus
  # while the rollout's mean token entropy is below the target, less above; the bonus applies only below it.
  c.rl.entropy_target = 0.0  # target mean token entropy in nats (0 = off: the fixed entropy_coef)
  c.rl.entropy_coef_delta = 0.001  # adaptive: coefficient change per step
  c.rl.entropy_coef_max = 0.05  # adaptive: upper clip of the coefficient
  # Loss weights (rl.weights).
  c.rl.token_weighting = 'none'  # none | tw_grpo (intra-group divergence position weights)
  c.rl.tw_alpha = 1.4  # tw_grpo: maximum weight (TW-GRPO script: 1.7)
  c.rl.tw_stop_gradient = True  # tw_grpo: detach the weights (the TW-GRPO code does not)
  c.rl.tw_chunk_size = 4096  # tw_grpo: vocabulary chunk of the weight computation
  c.rl.difficulty_weight = 'none'  # none | exp | power | log (UniVG-R1 weight from the group's mean IoU reward)
  c.rl.difficulty_power = 1.0  # power: exponent w of (1.05 - mIoU)^w
  c.rl.is_correction = 'none'  # none | token_truncate | token_mask | sequence_truncate | sequence_mask
  c.rl.is_cap_min = 0.0  # IS correction: C_min of the sampler -> trainer weight
  c.rl.is_cap_max = 3.0  # IS correction: C_max (TRL: 3)
  # Token selection (rl.masks).
  c.rl.mask_truncated_completions = False  # drop completions without EOS from the loss
  c.rl.top_entropy_quantile = 1.0  # keep the top-q fraction of tokens by entropy (1 = all; paper: 0.2)

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
  # The warm-up's answers are random, so the tower's gradients are noise that Adam turns into
  # lr-sized steps (image embeddings 1.2 -> 56 in norm). Neither choice is reliably better per seed
  # at this size (README); 2x2 seed 0 reached 0.98 trained, 0.06 frozen.
  c.warmup.train_vision = True  # the warm-up also trains the vision tower (False: frozen)
  c.warmup.answers = 'random'  # 'correct': the task's answers (a pretrained stand-in for label-free methods)

  c.train = config_dict.ConfigDict()
  c.train.steps = 1000  # RL steps
  c.train.log_every = 1  # console / metrics.jsonl / TensorBoard cadence (steps)
  c.train.eval_every = 100  # greedy evaluation on held-out puzzles (0 = only at the end)
  c.train.eval_size = 128  # held-out puzzles per evaluation
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

  c.data = config_dict.ConfigDict()
  # Where the prompts come from (rl_reason/data/sources.py; README, Configuration): procedural = the task's
  # generator; tfds / jsonl read rows, each process its share, over-long prompts dropped, position checkpointed.
  c.data.source = 'procedural'  # procedural | tfds | jsonl
  c.data.tfds_name = ''  # tfds: dataset name ('mnist', 'clevr:3.1.0'), prepared in tfds_dir (nothing is downloaded)
  c.data.tfds_dir = ''  # tfds: folder the dataset was prepared in ('' = TFDS's default)
  c.data.split = 'train'  # tfds: split of the training prompts ('train[:90%]' slices too)
  c.data.eval_split = ''  # tfds: split of the evaluation prompts ('' = split)
  c.data.tfds_mode = ''  # tfds: classification | jigsaw (the task section's puzzles) | counting; '' = task.name
  c.data.image_key = 'image'  # tfds: image feature
  c.data.label_key = 'label'  # tfds classification: ClassLabel feature
  c.data.objects_key = 'objects'  # tfds counting: Sequence of object annotations
  c.data.class_names = ()  # tfds classification: names replacing the ClassLabel's (() = the dataset's)
  c.data.question = 'What type of object is in the photo?'  # tfds classification: the question
  c.data.jsonl_path = ''  # jsonl: training file(s), comma-separated (needs reward.weights)
  c.data.eval_jsonl_path = ''  # jsonl: evaluation file(s) ('' = jsonl_path)
  c.data.think = True  # tfds / jsonl: think mode of the prompts and warm-up answers
  c.data.jsonl_instruction = True  # jsonl: append the think / no-think instruction (False: prompts as written)
  c.data.shuffle = True  # tfds / jsonl: a fresh seeded row order each epoch

  c.mesh = config_dict.ConfigDict()
  c.mesh.data = -1  # data-parallel devices (-1: all remaining)
  c.mesh.fsdp = 1  # parameter-sharding devices
  c.mesh.tensor = 1  # tensor-parallel devices
  c.mesh.num_devices = 0  # > 0: only the first N devices of a single-process run (0: all)

  if arg == 'tiny_2x1':  # the settings the end-to-end test was calibrated with
    c.task.rows, c.task.cols = 2, 1
    c.task.image_size = (32, 32)
    c.rollout.batch_size, c.rollout.num_generations = 64, 8
    c.warmup.steps = 100
    c.warmup.train_vision = False  # seed 0: accuracy 0.49 -> 0.99 frozen, 0.47 -> 0.50 trained (README)
    c.train.steps = 300
    c.train.eval_every = 100
    c.train.eval_size = 64
    c.train.checkpoint_every = 100
  if arg.startswith('qwen'):
    _published_model(c, arg)
  return c


def _published_model(c: config_dict.ConfigDict, preset: str) -> None:
  """Jigsaw-R1 (ALGORITHMS.md 1.1) on a published checkpoint: the model already knows the format."""
  c.model.preset = preset  # checked against --config.model.path's config.json
  c.model.dtype, c.model.param_dtype = 'bfloat16', 'float32'
  c.model.scan_layers, c.model.remat = True, 'minimal'
  c.task.rows, c.task.cols = 3, 3
  c.task.image_size = (448, 448)
  c.task.prompt_style = 'full'
  c.rollout.batch_size, c.rollout.num_generations = 512, 8  # 64 prompts x 8
  c.rollout.max_new_tokens = 512
  c.rollout.prompt_buckets = (512, 1024)
  c.rl.beta = 0.04
  c.optim.learning_rate = 1e-6
  c.optim.warmup_steps = 0
  c.optim.b2 = 0.999
  c.warmup.steps = 0
  c.train.steps = 2000
  c.train.eval_size = 256
  c.mesh.data, c.mesh.fsdp = 1, -1
