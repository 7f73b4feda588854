"""One process of the two-process checks in parallel_multiprocess_test.py (not collected by pytest).

Usage: python tests/multiprocess_worker.py PROCESS_ID PORT OUT_JSON. Joins a two-process JAX job on
loopback (one CPU device per process, gloo collectives), runs the multi-process helpers of
rl_reason.parallel.sharding and a sharded `generate`, and writes what it saw to OUT_JSON.
"""

import json
import sys

import jax

jax.config.update('jax_cpu_collectives_implementation', 'gloo')
process_id, port, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jax.distributed.initialize(f'127.0.0.1:{port}', num_processes=2, process_id=process_id)

import numpy as np  # pylint: disable=g-import-not-at-top
from flax import nnx  # pylint: disable=g-import-not-at-top

from rl_reason import models, sampling  # pylint: disable=g-import-not-at-top
from rl_reason.parallel import multihost  # pylint: disable=g-import-not-at-top
from rl_reason.parallel import sharding as shd  # pylint: disable=g-import-not-at-top

PROMPTS = 4  # global rows; two per process
mesh = shd.make_mesh(shd.MeshConfig(data=-1))
result = dict(process_index=jax.process_index(), process_count=jax.process_count(),
              devices=len(jax.devices()), local_devices=len(jax.local_devices()))

# host_to_global / host_rows: each process feeds its rows; the text positions keep their rows in
# dimension 1, the vision positions in dimension 0.
first = 2 * process_id
local = dict(prompt=dict(input_ids=np.arange(first * 5, first * 5 + 10).reshape(2, 5),
                         positions=np.stack([np.full((2, 5), first + d) for d in range(3)]),
                         vision=dict(positions=np.full((2, 7, 2), first))),
             tokens=np.full((2, 3), 10 + process_id))
placed = shd.host_to_global(local, mesh)
result['global_shapes'] = {jax.tree_util.keystr(path): list(leaf.shape)
                           for path, leaf in jax.tree_util.tree_flatten_with_path(placed)[0]}
try:  # 'tensor' across the processes: both would hold all rows, but each feeds only its own
  shd.host_to_global(local, shd.make_mesh(shd.MeshConfig(data=1, tensor=2)))
  result['shared_rows_error'] = ''
except ValueError as error:
  result['shared_rows_error'] = str(error)
result['input_ids_back'] = shd.host_rows(placed['prompt']['input_ids']).tolist()
result['tokens_back'] = shd.host_rows(placed['tokens']).tolist()

# all_rows: rows of every process in process order, 0-d counts summed, strings of different widths.
rows = multihost.all_rows(dict(score=np.array([0.5, 1.5]) + process_id + 0.1, failures=np.int32(1 + process_id),
                         domain=np.array(['a' * (1 + 3 * process_id), 'b']), big=np.int64(2**40 + process_id)))
result['all_rows'] = {key: value.tolist() for key, value in rows.items()}
result['all_rows_dtypes'] = {key: str(value.dtype) for key, value in rows.items()}
objects = [{'process': process_id, 'image': np.full((1 + process_id, 2), process_id)}] * (1 + process_id)
result['all_objects'] = [dict(o, image=o['image'].tolist()) for o in multihost.all_objects(objects)]
result['agree_max'] = list(multihost.agree_max(3 + 4 * process_id, 7 - process_id))
result['process_rows'] = multihost.process_rows(np.arange(8), 4).tolist()

# put: a model's params (initialised alike from one seed on both processes) and a typed key.
cfg = models.ModelConfig(text=models.TextConfig(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, rope_theta=10000.0, mrope_section=None, tie_word_embeddings=True))
model = models.create(cfg, seed=0)
params = nnx.state(model)
placed_params = multihost.put(params, shd.state_shardings(params, mesh))
same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), shd.host_rows(b))), params, placed_params)
result['params_equal'] = all(jax.tree.leaves(same))
result['params_global'] = not any(leaf.is_fully_addressable for leaf in jax.tree.leaves(placed_params))
# save_pretrained with the parameters split over the two processes (fsdp): gathered, written by process 0.
fsdp_mesh = shd.make_mesh(shd.MeshConfig(data=1, fsdp=2))
split_params = multihost.put(params, shd.state_shardings(params, fsdp_mesh))
result['params_split'] = sum(not leaf.is_fully_replicated for leaf in jax.tree.leaves(split_params))
export_dir = out_path + '.model'
models.save_pretrained(nnx.merge(nnx.graphdef(model), split_params), export_dir)
key = multihost.put(jax.random.key(3), shd.replicated(mesh))
result['key_data'] = np.asarray(jax.random.key_data(key)).tolist()

# generate over both processes: the whole prompt batch on every process, rows split over the mesh.
rng = np.random.RandomState(0)
ids = rng.randint(1, 64, (PROMPTS, 6))
mask = np.ones_like(ids)
mask[0, :2] = 0
out = sampling.generate(model, ids, mask, max_new_tokens=160, temperature=1.0, rng=5, num_samples=2,
                        eos_token_ids=(7,), mesh=mesh)
result['tokens'] = shd.host_rows(out.tokens).tolist()
result['lengths'] = shd.host_rows(out.lengths).tolist()

# the listener over both processes: each scores its own prompts' completions (listener_case.py)
import listener_case  # pylint: disable=g-import-not-at-top
from rl_reason.rl import listener as listener_lib  # pylint: disable=g-import-not-at-top
own = slice(2 * process_id, 2 * process_id + 2)
prompt = shd.host_to_global(dict(prompt=models.prepare_inputs(
    cfg, listener_case.PROMPT_IDS[own], np.ones_like(listener_case.PROMPT_IDS[own]))), mesh)['prompt']
listener = listener_lib.Listener(nnx.graphdef(model), listener_case.CharTokenizer(), pad_id=0, mesh=mesh)
p_listener = listener.probabilities(placed_params, prompt, listener_case.EXAMPLES[own],
                                    listener_case.TEXTS[4 * process_id:4 * process_id + 4])
result['listener'] = [None if np.isnan(p) else float(p) for p in p_listener]

# the thinking judge over both processes: each judges its own rows (with images), three and one, two per call
import judge_case  # pylint: disable=g-import-not-at-top
judge = judge_case.make_judge(mesh, batch_rows=2)
own_rows = slice(8 * process_id, 8 * process_id + 8)
judged = judge.scores(judge_case.EXAMPLES[2 * process_id:2 * process_id + 2], judge_case.TEXTS[own_rows],
                      judge_case.ROWS[own_rows])
result['judge'] = [None if np.isnan(s) else float(s) for s in judged]
result['judge_answers'] = judge.last_answers

with open(out_path, 'w') as f:
  json.dump(result, f)
jax.distributed.shutdown()
