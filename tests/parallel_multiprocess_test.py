"""Two JAX processes on loopback (gloo), one CPU device each: the multi-host path of the library and the loop.

The workers run as subprocesses with one CPU device each (the suite's 8 fake devices stay in this
process). The references are the same computations in one process.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from flax import nnx

import judge_case
import listener_case

from rl_reason import metrics, models, sampling, train
from rl_reason.parallel import multihost
from rl_reason.parallel import sharding as shd
from rl_reason.rl import listener as listener_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The suite's compile-time flags without its device count: each worker process has one CPU device.
WORKER_XLA_FLAGS = ' '.join(flag for flag in os.environ.get('XLA_FLAGS', '').split()
                            if not flag.startswith('--xla_force_host_platform_device_count'))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(**extra) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_NUM_CPU_DEVICES')}
  # PYTHONPATH: this checkout's package also for `python tests/multiprocess_worker.py`, whatever is installed
  return dict(env, XLA_FLAGS=WORKER_XLA_FLAGS, JAX_PLATFORMS='cpu', PYTHONPATH=REPO, **extra)


def _run_together(commands: list[list[str]], envs: list[dict[str, str]], timeout: int) -> None:
  """Starts every command at once, waits for all; a failure shows each process's output tail."""
  procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for cmd, env in zip(commands, envs)]
  outputs = []
  try:
    for proc in procs:
      outputs.append(proc.communicate(timeout=timeout)[0])
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  failed = [i for i, proc in enumerate(procs) if proc.returncode != 0]
  assert not failed, '\n'.join(f'--- process {i} (exit {procs[i].returncode}):\n{outputs[i][-3000:]}' for i in failed)


def test_prompt_row_dim_tells_text_positions_from_vision_positions():
  key = jax.tree_util.DictKey
  assert shd.prompt_row_dim((key('positions'),)) == 1
  assert shd.prompt_row_dim((key('prompt'), key('positions'))) == 1
  assert shd.prompt_row_dim((key('vision'), key('positions'))) == 0
  assert shd.prompt_row_dim((key('prompt'), key('vision'), key('positions'))) == 0
  assert shd.prompt_row_dim((key('prompt'), key('input_ids'))) == 0


def test_helpers_are_the_identity_with_one_process():
  tree = dict(a=np.arange(3), n=np.int32(2), s=np.array(['x', 'yy']))
  assert multihost.all_rows(tree) is tree
  assert multihost.agree_max(3, 5) == (3, 5)
  items = [{'a': 1}]
  assert multihost.all_objects(items) is items
  np.testing.assert_array_equal(multihost.process_rows(np.arange(4), 4), np.arange(4))
  mesh = shd.make_mesh(shd.MeshConfig(data=-1))
  placed = shd.host_to_global(dict(tokens=np.arange(16).reshape(8, 2)), mesh)
  np.testing.assert_array_equal(shd.host_rows(placed['tokens']), np.arange(16).reshape(8, 2))


# The worker's tiny text model (tests/multiprocess_worker.py builds the same, seed 0).
_TINY_TEXT = models.ModelConfig(text=models.TextConfig(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, rope_theta=10000.0, mrope_section=None, tie_word_embeddings=True))


@pytest.fixture(scope='module')
def two_processes_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('multiprocess')


@pytest.fixture(scope='module')
def two_processes(two_processes_dir):
  tmp = two_processes_dir
  port = _free_port()
  outs = [str(tmp / f'process{i}.json') for i in range(2)]
  _run_together([[sys.executable, 'tests/multiprocess_worker.py', str(i), str(port), outs[i]] for i in range(2)],
                [_env()] * 2, timeout=300)
  results = []
  for out in outs:
    with open(out) as f:
      results.append(json.load(f))
  return results


def test_two_processes_each_feed_and_read_back_their_own_rows(two_processes):
  for i, result in enumerate(two_processes):
    layout = (result['process_index'], result['process_count'], result['devices'], result['local_devices'])
    assert layout == (i, 2, 2, 1)
    assert result['global_shapes'] == {"['prompt']['input_ids']": [4, 5], "['prompt']['positions']": [3, 4, 5],
                                       "['prompt']['vision']['positions']": [4, 7, 2], "['tokens']": [4, 3]}
    first = 2 * i
    assert result['input_ids_back'] == np.arange(first * 5, first * 5 + 10).reshape(2, 5).tolist()
    assert result['tokens_back'] == [[10 + i] * 3] * 2
    assert 'splits the rows 1 ways' in result['shared_rows_error'] and 'tensor inside' in result['shared_rows_error']


def test_two_processes_gather_and_agree(two_processes):
  for result in two_processes:
    # float64 exactly (0.6 is not a float32), counts summed, strings of different widths
    assert result['all_rows'] == {'score': [0.6, 1.6, 1.6, 2.6], 'failures': 3, 'domain': ['a', 'b', 'aaaa', 'b'],
                                  'big': 2**41 + 1}
    assert result['all_rows_dtypes'] == {'score': 'float64', 'failures': 'int32', 'domain': '<U4', 'big': 'int64'}
    assert result['agree_max'] == [7, 7]
    # picklable objects of different sizes: process 0's one item, then process 1's two
    process_1 = {'process': 1, 'image': [[1, 1], [1, 1]]}
    assert result['all_objects'] == [{'process': 0, 'image': [[0, 0]]}, process_1, process_1]
  assert two_processes[0]['process_rows'] == [0, 1, 2, 3] and two_processes[1]['process_rows'] == [4, 5, 6, 7]


def test_two_processes_place_params_and_keys_from_their_own_copies(two_processes):
  for result in two_processes:
    assert result['params_equal'] and result['params_global']
    assert result['key_data'] == np.asarray(jax.random.key_data(jax.random.key(3))).tolist()


def test_save_pretrained_gathers_parameters_split_over_two_processes(two_processes, two_processes_dir):
  assert all(result['params_split'] > 0 for result in two_processes)
  assert not (two_processes_dir / 'process1.json.model').exists()  # process 0 writes
  loaded = models.from_pretrained(str(two_processes_dir / 'process0.json.model'))
  original = models.create(_TINY_TEXT, seed=0)
  ours, theirs = (jax.tree_util.tree_flatten_with_path(nnx.state(m))[0] for m in (loaded, original))
  assert [path for path, _ in ours] == [path for path, _ in theirs]
  for (path, a), (_, b) in zip(ours, theirs):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_generate_over_two_processes_gives_the_tokens_of_one(two_processes):
  rng = np.random.RandomState(0)
  ids = rng.randint(1, 64, (4, 6))
  mask = np.ones_like(ids)
  mask[0, :2] = 0
  out = sampling.generate(models.create(_TINY_TEXT, seed=0), ids, mask, max_new_tokens=160, temperature=1.0, rng=5,
                          num_samples=2, eos_token_ids=(7,))
  tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
  assert 1 < lengths.min() < 160  # rows end at EOS in different stages of the cache
  for i, result in enumerate(two_processes):  # process i holds rows 4i .. 4i + 3 (2 prompts x 2 samples)
    np.testing.assert_array_equal(result['tokens'], tokens[4 * i:4 * i + 4])
    np.testing.assert_array_equal(result['lengths'], lengths[4 * i:4 * i + 4])


def test_listener_over_two_processes_scores_as_one(two_processes):
  """Each process scores its own prompts' completions; together they equal one process scoring all."""
  mesh = shd.make_mesh(shd.MeshConfig(num_devices=1))
  model = models.create(_TINY_TEXT, seed=0)
  prompt = shd.host_to_global(dict(prompt=models.prepare_inputs(
      _TINY_TEXT, listener_case.PROMPT_IDS, np.ones_like(listener_case.PROMPT_IDS))), mesh)['prompt']
  listener = listener_lib.Listener(nnx.graphdef(model), listener_case.CharTokenizer(), pad_id=0, mesh=mesh)
  expected = listener.probabilities(nnx.state(model), prompt, listener_case.EXAMPLES, listener_case.TEXTS)
  assert np.isnan(expected[6:]).all() and np.isfinite(expected[:6]).all()
  for i, result in enumerate(two_processes):
    got = np.array([np.nan if p is None else p for p in result['listener']])
    np.testing.assert_allclose(got, expected[4 * i:4 * i + 4], rtol=1e-5)


def test_thinking_judge_over_two_processes_answers_as_one(two_processes):
  """Process 0 judges three rows and process 1 one; their answers are those of one process judging all."""
  judge = judge_case.make_judge(shd.make_mesh(shd.MeshConfig(num_devices=1)))
  expected = judge.scores(judge_case.EXAMPLES, judge_case.TEXTS, judge_case.ROWS)
  answers = judge.last_answers
  assert len(answers) == 4 and len(set(answers)) > 1
  for i, result in enumerate(two_processes):
    got = np.array([np.nan if s is None else s for s in result['judge']])
    np.testing.assert_array_equal(got, expected[8 * i:8 * i + 8])
  assert two_processes[0]['judge_answers'] + two_processes[1]['judge_answers'] == answers


_LOOP_CONFIG = """
from configs import vlm_grpo


def get_config():
  c = vlm_grpo.get_config('tiny_2x1')
  c.warmup.steps = 3
  c.warmup.batch_size = 8
  c.rollout.batch_size = 16
  c.rollout.num_generations = 4
  c.rollout.max_new_tokens = 12
  c.train.eval_every = 2
  c.train.eval_size = 8
  c.train.sample_every = 2
  c.train.checkpoint_every = 2
  if {whole_batch}:  # what reads the whole batch: a curriculum, batch-level shaping, entropy control, DAPO filter
    c.reward.weights = {{'jigsaw_grid': 1.0, 'jigsaw_format': 0.5, 'rouge_l': 1.0}}  # graded: spread from step 1
    c.dynamic_sampling.metric = 'reward'
    c.dynamic_sampling.prompts_per_round = 8  # two rounds of 8 prompts for the step's 4 kept groups at most
    c.curriculum = {{'name': 'threshold', 'levels': ({{'cols': 1}}, {{'cols': 2}}), 'threshold': 0.0,
                     'metric': 'reward_mean'}}
    c.shaping = {{'grpo_lambda': {{'correct': 'rouge_l', 'correct_at': 0.05, 'fraction': 0.5}},
                 'pear': {{'lambda_think': 0.1}}}}  # the sampler's entropies travel with the rows
    c.rl.entropy_target = 7.0  # above the rollouts' ~6.1 nats: the coefficient grows
    c.rl.entropy_coef = 0.01
  return c
"""


def _loop(config: str, workdir: str, steps: int, processes: int, flags: tuple[str, ...] = ()) -> list[dict]:
  """main as `processes` processes of one CPU device each (launch/local.sh), or (1) one process with two
  CPU devices."""
  main_flags = [f'--config={config}', f'--config.train.steps={steps}', f'--workdir={workdir}', *flags]
  if processes == 1:
    _run_together([[sys.executable, '-m', 'rl_reason.main', *main_flags]], [_env(JAX_NUM_CPU_DEVICES='2')],
                  timeout=600)
  else:
    logs = f'{workdir}_logs'
    result = subprocess.run(['launch/local.sh', str(processes), *main_flags], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env=_env(PYTHON=sys.executable, LOG_DIR=logs))
    if result.returncode:
      tails = [open(os.path.join(logs, name)).read()[-3000:] for name in sorted(os.listdir(logs))]
      raise AssertionError(f'launch/local.sh exited {result.returncode}: {result.stderr}\n' + '\n---\n'.join(tails))
  return metrics.read_metrics(os.path.join(workdir, 'metrics.jsonl'))


def _assert_same_rows(ours: list[dict], theirs: list[dict]) -> None:
  assert [r['step'] for r in ours] == [r['step'] for r in theirs]
  for a, b in zip(ours, theirs):
    a, b = ({k: v for k, v in row.items() if k not in train.PROCESS_KEYS} for row in (a, b))
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=f'step {a["step"]} {key}')


@pytest.mark.slow
def test_the_loop_on_two_processes_resumes_and_matches_one_process_on_two_devices(tmp_path):
  """main as two processes (one CPU device each), the parameters split over them (fsdp=2): 2 steps, then
  resumed to 4 (each process saves and restores its shards); the metrics equal those of one process with
  two CPU devices, the same mesh."""
  config = tmp_path / 'loop_config.py'
  config.write_text(_LOOP_CONFIG.format(whole_batch=False))
  workdir = str(tmp_path / 'two_processes')
  fsdp = ('--config.mesh.data=1', '--config.mesh.fsdp=2')
  _loop(str(config), workdir, steps=2, processes=2, flags=fsdp)
  ours = _loop(str(config), workdir, steps=4, processes=2, flags=fsdp)
  theirs = _loop(str(config), str(tmp_path / 'one_process'), steps=4, processes=1, flags=fsdp)
  assert [r['step'] for r in ours] == [0, 1, 2, 2, 3, 4, 4]
  _assert_same_rows(ours, theirs)
  assert os.path.exists(os.path.join(workdir, 'rewards.png'))


@pytest.mark.slow
def test_what_reads_the_whole_batch_sees_it_on_two_processes(tmp_path):
  """A threshold curriculum, GRPO-lambda (ranks the batch's groups), PEAR (the sampler's entropies),
  adaptive entropy control and DAPO dynamic sampling (kept groups move to the process that trains
  them), rows over 'data' and the parameters replicated: on two processes their metrics, and so the
  training they steer, equal those of one process."""
  config = tmp_path / 'loop_config.py'
  config.write_text(_LOOP_CONFIG.format(whole_batch=True))
  ours = _loop(str(config), str(tmp_path / 'two_processes'), steps=3, processes=2)
  theirs = _loop(str(config), str(tmp_path / 'one_process'), steps=3, processes=1)
  steps = [r for r in ours if 'reward_mean' in r]
  assert [r['curriculum/level'] for r in steps] == [0, 1, 1]
  # groups kept from more than one round (the kept groups then sit on either process), the bonus switched on
  assert all(r['dynamic_sampling/kept'] > 0 for r in steps) and max(r['dynamic_sampling/rounds'] for r in steps) > 1
  assert steps[-1]['entropy_coef'] > 0 and all('shaping/grpo_lambda/selected_groups' in r for r in steps)
  assert all(r['shaping/pear/term_mean'] < 0 for r in steps)
  _assert_same_rows(ours, theirs)


@pytest.mark.parametrize('env, detect, expected', [
    ({}, False, None),
    ({}, True, dict(coordinator_address=None, num_processes=None, process_id=None)),
    (dict(JAX_COORDINATOR_ADDRESS='10.0.0.1:1234', JAX_NUM_PROCESSES='4', JAX_PROCESS_ID='2'), False,
     dict(coordinator_address='10.0.0.1:1234', num_processes=4, process_id=2)),
])
def test_main_joins_a_multi_process_job_from_env_vars_or_the_cluster(monkeypatch, env, detect, expected):
  from rl_reason import main  # pylint: disable=g-import-not-at-top
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kwargs: calls.append(kwargs))
  assert main.maybe_initialize_distributed(detect) == (expected is not None)
  assert calls == ([] if expected is None else [expected])
