"""The thinking judge's two-process check (shared by parallel_multiprocess_test.py and multiprocess_worker.py).

Two prompts per process, each with an image, four completions each; process 0 is asked about three
rows and process 1 about one, so both have to agree on the padded row count, the judge prompt bucket,
the template head run once and the image patch width. Over two processes the judge takes two rows per
call: process 1 runs a second call with no live row, and the vision rows of the two processes' distinct
images sit side by side (process 1's after process 0's).
"""

import jax
import numpy as np
from flax import nnx

from rl_reason import models
from rl_reason.data import image_processor, tokenizer as tokenizer_lib
from rl_reason.rl import judge as judge_lib

# A head of over 64 tokens: the judge runs it once per call (processes agree on it: process 1's single row
# shares a longer one with its padding rows).
TEMPLATE = ('You are a judge: rate how sound the reasoning below is, from 0 to 1. ' * 2
            + 'Rate: {question} | {reasoning} ->')
_RNG = np.random.default_rng(7)
EXAMPLES = [{'prompt': prompt, 'images': [_RNG.integers(0, 255, (16 + 8 * (i % 2), 24, 3), np.uint8)], 'meta': {}}
            for i, prompt in enumerate(['what is 2+2', 'name a colour', 'is the sky blue', 'count to three'])]
TEXTS = ['<think>2+2=4</think><answer>4</answer>', 'four', '5', '<think>add</think>',
         'red', '<answer>blue</answer>', 'a colour is green, as grass is green, and so on', '',
         'yes', 'no', '<think>look up</think><answer>yes</answer>', 'sometimes',
         '1 2 3', 'one, two, three', '3', '<answer>1, 2, 3</answer>']
ROWS = np.array([1, 0, 1, 0, 0, 0, 1, 0,  # process 0: three rows
                 0, 0, 0, 0, 0, 1, 0, 0], bool)  # process 1: one


def vl_judge_parts():
  """(model, tokenizer, image config) of the tiny VL judge: weights x4, so that its answers depend on the
  prompt (a random model this small answers alike to everything)."""
  tokenizer = tokenizer_lib.build_tiny_tokenizer()
  special = tokenizer_lib.special_ids(tokenizer)
  cfg = models.get_preset('tiny_vl', vocab_size=len(tokenizer), image_token_id=special['image_pad_id'],
                          vision_start_token_id=special['vision_start_id'])
  graphdef, params = nnx.split(models.create(cfg, seed=5))
  model = nnx.merge(graphdef, jax.tree.map(lambda x: x * 4 if x.ndim >= 2 else x, params))
  image_cfg = image_processor.ImageProcessorConfig(patch_size=8, temporal_patch_size=2, merge_size=2,
                                                   min_pixels=256, max_pixels=2048)
  return model, tokenizer, image_cfg


def make_judge(mesh, batch_rows=0, template=TEMPLATE, max_new_tokens=6):
  """The tiny VL judge on `mesh`, judging up to `batch_rows` rows per call and process (0: all at once)."""
  model, tokenizer, image_cfg = vl_judge_parts()
  encode = judge_lib.prompt_encoder(tokenizer, model.cfg, image_cfg)
  return judge_lib.ThinkingJudge(model, tokenizer, encode, template=template, max_new_tokens=max_new_tokens,
                                 mesh=mesh, batch_rows=batch_rows)
