"""Prompt streams (data/pipeline.py): Co-Reward's paired stream of questions and their rephrasings."""

import pytest

from rl_reason import tasks
from rl_reason.data import pipeline


def _encode(examples):
  return {'prompts': [e['prompt'] for e in examples]}  # stands in for the tokenizer and image path


def _stream(global_batch, **kwargs):
  task = tasks.get('arithmetic', tasks.config_class('arithmetic')())
  return pipeline.PromptStream(task.example, _encode, seed=3, split='train', global_batch=global_batch, **kwargs)


def test_paired_stream_follows_each_prompt_with_its_rephrasing():
  paired = pipeline.PairedStream(_stream(2))
  batch = paired.next()
  plain = _stream(2).next().examples  # the same questions, unpaired
  assert len(batch.examples) == 4
  for k, example in enumerate(plain):
    original, rephrased = batch.examples[2 * k], batch.examples[2 * k + 1]
    assert original['prompt'] == example['prompt'] and pipeline.REPHRASED not in original['meta']
    assert rephrased['prompt'] == example['meta']['paraphrase'] != example['prompt']
    assert rephrased['meta'][pipeline.REPHRASED] and rephrased['meta']['answer'] == example['meta']['answer']
  assert batch.inputs['prompts'] == [e['prompt'] for e in batch.examples]
  # its state is the inner stream's: a restored stream continues with the same pairs
  state = paired.state()
  following = paired.next().examples
  restored = pipeline.PairedStream(_stream(2))
  restored.restore(state)
  assert restored.next().examples == following


def test_each_process_pairs_its_own_prompts():
  shares = [pipeline.PairedStream(_stream(4, process_index=i, process_count=2)).next().examples for i in range(2)]
  whole = pipeline.PairedStream(_stream(4)).next().examples
  assert shares[0] + shares[1] == whole


def test_a_task_without_paraphrases_is_refused_by_name():
  example = {'prompt': 'Solve the puzzle.', 'images': [], 'meta': {'answer': '1 2'}}
  with pytest.raises(ValueError, match=r"meta\['paraphrase'\], which this task's examples do not carry "
                                       r"\(meta keys: \['answer'\]\)"):
    pipeline.rephrased(example)
  with pytest.raises(ValueError, match='cannot draw prompts of chosen domains'):
    pipeline.PairedStream(_stream(2)).next(domains=('a', 'b', 'c', 'd'))
