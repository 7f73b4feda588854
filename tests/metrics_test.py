"""metrics.jsonl / samples.jsonl writing, TensorBoard events, plots, progress bar and summary."""

import json
import math
import os

import pytest
from tensorboardX.proto import event_pb2

from rl_reason import metrics


def _tb_scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """Scalars from the tfevents files (parsed with the protobuf tensorboardX ships)."""
  found = {}
  tb_dir = os.path.join(workdir, 'tb')
  for name in os.listdir(tb_dir):
    with open(os.path.join(tb_dir, name), 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
      length = int.from_bytes(data[offset:offset + 8], 'little')
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        if value.HasField('simple_value'):
          found.setdefault(value.tag, []).append((event.step, value.simple_value))
  return found


def test_write_read_round_trip_with_nan_as_null(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path))
  writer.write(1, {'reward_mean': 0.25, 'kl': float('nan')})
  # Flushed per call: readable before close.
  assert metrics.read_metrics(str(tmp_path / 'metrics.jsonl'))[0]['reward_mean'] == 0.25
  writer.write(2, {'reward_mean': 0.5, 'kl': float('inf')})
  writer.close()
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert json.loads(lines[0]) == {'step': 1, 'reward_mean': 0.25, 'kl': None}
  rows = metrics.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert [r['step'] for r in rows] == [1, 2] and rows[1]['reward_mean'] == 0.5
  assert math.isnan(rows[0]['kl']) and math.isnan(rows[1]['kl'])


def test_tensorboard_scalars(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path))
  writer.write(3, {'reward_mean': 0.5, 'kl': float('nan')})
  writer.write(4, {'reward_mean': 0.75})
  writer.close()
  scalars = _tb_scalars(str(tmp_path))
  assert scalars == {'reward_mean': [(3, 0.5), (4, 0.75)]}  # NaN is left out


def test_tensorboard_can_be_off(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
  writer.write(1, {'a': 1.0})
  writer.write_texts(1, ['x'])
  writer.close()
  assert sorted(os.listdir(tmp_path)) == ['metrics.jsonl', 'samples.jsonl']


def test_write_texts(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path))
  writer.write_texts(5, ['<answer>1 2</answer>', 'a\nb'])
  writer.write_texts(6, ['c'], name='eval_samples')
  writer.close()
  records = [json.loads(line) for line in (tmp_path / 'samples.jsonl').read_text().splitlines()]
  assert records == [{'step': 5, 'name': 'samples', 'texts': ['<answer>1 2</answer>', 'a\nb']},
                     {'step': 6, 'name': 'eval_samples', 'texts': ['c']}]
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(tmp_path / 'tb'))


def test_read_skips_a_torn_last_line_only(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": 2.0}\n{"step": 3, "a"')
  assert [r['step'] for r in metrics.read_metrics(str(path))] == [1, 2]
  path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a\n{"step": 3, "a": 3.0}\n')
  with pytest.raises(ValueError, match='line 2'):
    metrics.read_metrics(str(path))


def test_truncate_after_keeps_writer_appending(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
  for step in (1, 2, 3, 4):
    writer.write(step, {'a': float(step), 'b': float('nan')})
  metrics.truncate_after(str(tmp_path / 'metrics.jsonl'), 2)
  writer.write(3, {'a': 30.0})  # the resumed run logs step 3 again, through the same writer
  rows = metrics.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert [(r['step'], r['a']) for r in rows] == [(1, 1.0), (2, 2.0), (3, 30.0)]
  assert math.isnan(rows[0]['b'])
  metrics.truncate_after(str(tmp_path / 'absent.jsonl'), 2)  # nothing logged yet: no-op
  assert not (tmp_path / 'absent.jsonl').exists()


def test_plot_metrics(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
  for step in range(1, 21):
    writer.write(step, {'reward_mean': step / 20, 'solve_rate': float('nan') if step == 3 else step / 40})
    if step % 10 == 0:
      writer.write(step, {'eval_solve_rate': step / 30})
  png = str(tmp_path / 'rewards.png')
  plotted = metrics.plot_metrics(str(tmp_path / 'metrics.jsonl'), png, keys=('reward_mean', 'eval_solve_rate',
                                                                               'not_logged'))
  assert plotted == ['reward_mean', 'eval_solve_rate']
  with open(png, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert metrics.plot_metrics(str(tmp_path / 'metrics.jsonl'), png, keys=('nothing',)) == []
  assert os.path.getsize(png) > 0


def test_progress_bar_tracks_steps(capsys):
  bar = metrics.ProgressBar(total=10, initial=3, disable=False)
  bar.update(4, {'reward_mean': 0.9})
  bar.update(6, {'reward_mean': 0.123456, 'kl': 1e-5})
  bar.close()  # tqdm rate-limits redraws; close draws the final state
  final = capsys.readouterr().err.split('\r')[-1]
  assert '6/10' in final and 'reward_mean=0.123,' in final and 'kl=1e-05' in final


def test_progress_bar_is_silent_off_a_terminal(capsys):
  bar = metrics.ProgressBar(total=10)  # pytest's captured stderr is not a TTY
  bar.update(2, {'reward_mean': 0.5})
  bar.close()
  assert capsys.readouterr().err == ''


def test_format_summary():
  rows = [
      {'step': 0, 'eval_solve_rate': 0.1},
      {'step': 1, 'reward_mean': 0.2, 'time_step': 1.5},
      {'step': 2, 'reward_mean': 0.6, 'time_step': 2.0, 'eval_solve_rate': 0.5},
      {'step': 3, 'reward_mean': float('nan'), 'time_step': 0.5},
      {'step': 3, 'eval_solve_rate': 0.4},
  ]
  summary = metrics.format_summary(rows)
  assert 'reward_mean: 0.200 (step 1) -> 0.600 (step 2)' in summary
  assert 'eval_solve_rate: best 0.500 at step 2, last 0.400' in summary
  assert '4.0 s total over 3 logged steps' in summary
  assert metrics.format_summary([]) == 'no metrics recorded'
  assert 'eval_solve_rate' not in metrics.format_summary([{'step': 1, 'reward_mean': 0.1}])


def test_truncate_after_keeps_text_rows(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
  for step in (1, 2, 3):
    writer.write_texts(step, [f'completion {step}'])
  writer.close()
  path = str(tmp_path / 'samples.jsonl')
  metrics.truncate_after(path, 2)
  rows = metrics.read_metrics(path)
  assert [r['step'] for r in rows] == [1, 2] and rows[1]['texts'] == ['completion 2']
