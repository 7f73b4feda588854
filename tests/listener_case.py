"""The listener's two-process check (shared by parallel_multiprocess_test.py and multiprocess_worker.py).

Four prompts, two per process, with candidate answers of different counts (2 and 3) and
completions of different lengths on the two processes, so both have to agree on the padded widths.
"""

import numpy as np

PROMPT_IDS = np.random.RandomState(1).randint(1, 64, (4, 5))
EXAMPLES = [{'prompt': '', 'images': [], 'meta': {'options': ['red', 'blue'], 'answer': 'B'}},
            {'prompt': '', 'images': [], 'meta': {'options': ['x', 'y'], 'answer': 'x'}},
            {'prompt': '', 'images': [], 'meta': {'options': ['one', 'two', 'three'], 'answer': 'C'}},
            {'prompt': '', 'images': [], 'meta': {'answer': '7'}}]  # no candidates: NaN
TEXTS = ['<think>b</think><answer>B</answer>', 'A', 'yes', '',
         '<think>the third one, surely, after a long thought</think><answer>C', 'B', '7', '<answer>7</answer>']


class CharTokenizer:
  """Ids 2..61 from characters: the tiny 64-token model needs no real vocabulary."""

  def encode(self, text, add_special_tokens=False):
    del add_special_tokens
    return [2 + ord(c) % 60 for c in text]
