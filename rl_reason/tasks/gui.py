"""Synthetic GUI screens for UI-R1-style action prediction: buttons and text fields, an instruction, one action.

A screen has a title bar and a column of widgets: buttons (filled, white label) and text fields
(white, grey border, grey placeholder), with unique labels. The instruction asks for one action of
UI-R1's set: click (a button), input_text (into a field), scroll (up/down), navigate_back or
open_app (an app name). The answer is UI-R1's "[{'action': 'click', 'coordinate': [x, y]}]"; the
coordinate is the target widget's centre pixel, [0, 0] for actions without a target. Widget boxes
are [x1, y1, x2, y2] in pixels of the screen image, exclusive ends. The labels use the UI reward
keys: meta 'gt_action', 'gt_bbox' (click and input_text only) and 'image_size' (width, height).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rl_reason.tasks import base
from rl_reason.tasks import templates

ACTIONS = ('click', 'open_app', 'scroll', 'navigate_back', 'input_text')
BUTTON_LABELS = ('OK', 'Cancel', 'Send', 'Save', 'Next', 'Login', 'Share', 'Delete', 'Search', 'Menu', 'Help',
                 'Done')
FIELD_LABELS = ('Name', 'Email', 'Search', 'Message', 'Password', 'City', 'Phone', 'Title')
APPS = ('Camera', 'Clock', 'Maps', 'Mail', 'Music', 'Photos', 'Notes', 'Weather', 'Settings', 'Calendar')
WORDS = ('hello', 'coffee', 'paris', 'blue', 'meeting', 'tomorrow', 'pizza', 'rl')
APP_TITLES = ('Home', 'Chat', 'Profile', 'Shop', 'Notes', 'Mail')
SCREEN_BACKGROUNDS = ((236, 236, 240), (242, 238, 230), (230, 240, 236))
TITLE_BAR = (40, 44, 52)
BUTTON_FILLS = ((33, 110, 220), (30, 150, 70), (200, 50, 50), (120, 60, 180), (230, 120, 20), (80, 80, 80))
FIELD_FILL = (255, 255, 255)
FIELD_BORDER = (150, 150, 150)
FIELD_TEXT = (120, 120, 120)
TEXT_COLOR = (255, 255, 255)
TITLE_HEIGHT = 14
WIDGET_HEIGHT = (14, 18)
GAP = 4
MARGIN = 4
PADDING = 4  # label to widget edge, horizontally


@dataclasses.dataclass(frozen=True)
class GuiConfig:
  """GUI task settings.

  Attributes:
    image_size: screen (height, width) in pixels.
    num_widgets: (min, max) widgets on a screen, at least 2 (one button, one field).
    actions: the actions drawn from (UI-R1's five by default).
    font_size: label font size (PIL's built-in font).
    tell_size: state the screen size in the prompt (GuirlVG); see GroundingConfig.tell_size.
    think: UI-R1 think mode (<think>, then the action list in <answer>) or the action list only.
  """

  image_size: tuple[int, int] = (128, 96)
  num_widgets: tuple[int, int] = (2, 4)
  actions: tuple[str, ...] = ACTIONS
  font_size: int = 9
  tell_size: bool = False
  think: bool = True

  def __post_init__(self):
    for name in ('image_size', 'num_widgets', 'actions'):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    if not self.actions or set(self.actions) - set(ACTIONS):
      raise ValueError(f'actions must be a non-empty subset of {ACTIONS}, got {self.actions}')
    if not 2 <= self.num_widgets[0] <= self.num_widgets[1]:
      raise ValueError(f'num_widgets must be (min, max) with 2 <= min <= max, got {self.num_widgets}')
    height, width = self.image_size
    need = TITLE_HEIGHT + self.num_widgets[1] * (WIDGET_HEIGHT[1] + GAP) + MARGIN
    if height < need:
      raise ValueError(f'a screen {height} pixels high cannot hold {self.num_widgets[1]} widgets (need {need})')
    font = _font(self.font_size)
    widest = max(_text_width(font, label) for label in BUTTON_LABELS + FIELD_LABELS)
    if width < widest + 2 * (PADDING + MARGIN):
      raise ValueError(f'a screen {width} pixels wide cannot hold a {widest}-pixel label; use a smaller font_size')


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
  return ImageFont.load_default(size=size)


def _text_width(font, text: str) -> int:
  left, _, right, _ = ImageDraw.Draw(Image.new('RGB', (1, 1))).textbbox((0, 0), text, font=font)
  return right - left


def render_action(action: str, coordinate) -> str:
  """UI-R1's answer: "[{'action': 'click', 'coordinate': [x, y]}]"."""
  return f"[{{'action': '{action}', 'coordinate': [{int(coordinate[0])}, {int(coordinate[1])}]}}]"


def render_prompt(instruction: str, height: int, width: int, *, think: bool, tell_size: bool) -> str:
  """UI-R1's wording, optionally with the screen size stated (GuirlVG), and a no-think variant."""
  actions = "['click', 'open_app', 'scroll', 'navigate_back', 'input_text']"
  answer = "[{'action': enum" + actions + ", 'coordinate': [x, y]}]"
  lines = [f"In this UI screenshot, I want to perform the command '{instruction}'."]
  if tell_size:
    lines.append(f'The screenshot is {width} pixels wide and {height} pixels high.')
  lines += [f'Please provide the action to perform (enumerate in {actions}) and the coordinate where the cursor '
           'is moved to (integer) if click is performed.']
  if think:
    lines += ['Output the thinking process in <think> </think> and final answer in <answer> </answer> tags. '
              'The output answer format should be as follows:', f'<think> ... </think> <answer>{answer}</answer>']
  else:
    lines += [templates.NO_THINK + ' The output answer format should be as follows:', answer]
  lines.append('Please strictly follow the format.')
  return '\n'.join(lines)


@base.register('gui', GuiConfig)
class GuiTask:
  """meta: gt_action, coordinate [x, y], gt_bbox (the target widget; click and input_text only), text
  (input_text), direction (scroll), app (open_app), instruction, widgets [{'kind', 'label', 'box'}],
  image_size (width, height), answer, think."""

  def __init__(self, cfg: GuiConfig):
    self.cfg = cfg
    self.font = _font(cfg.font_size)

  @property
  def reward_names(self) -> tuple[str, ...]:
    names = ('ui_action_type', 'ui_coord')
    return names + ('think_answer_format',) if self.cfg.think else names  # UI-R1: R_T + R_C + R_F

  @property
  def reward_weights(self) -> tuple[float, ...]:
    return (1.0,) * len(self.reward_names)

  def _layout(self, rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
    height, width = self.cfg.image_size
    # One button and one field always, so click and input_text always have a target.
    kinds = ['button', 'field'] + [('button', 'field')[int(rng.integers(2))] for _ in range(count - 2)]
    kinds = [kinds[i] for i in rng.permutation(count)]
    buttons = iter(rng.permutation(BUTTON_LABELS))
    fields = iter(rng.permutation([f for f in FIELD_LABELS if f not in BUTTON_LABELS]))
    heights = [int(rng.integers(WIDGET_HEIGHT[0], WIDGET_HEIGHT[1] + 1)) for _ in kinds]
    # Spread the spare height as random extra gaps above the widgets.
    spare = height - TITLE_HEIGHT - MARGIN - sum(heights) - GAP * count
    cuts = np.sort(rng.integers(0, spare + 1, size=count))
    extra = np.diff(np.concatenate([[0], cuts]))
    widgets, y = [], TITLE_HEIGHT
    for kind, h, e in zip(kinds, heights, extra):
      y += GAP + int(e)
      label = str(next(buttons) if kind == 'button' else next(fields))
      min_w = _text_width(self.font, label) + 2 * PADDING
      w = int(rng.integers(min_w, width - 2 * MARGIN + 1))
      x = int(rng.integers(MARGIN, width - MARGIN - w + 1))
      fill = BUTTON_FILLS[int(rng.integers(len(BUTTON_FILLS)))] if kind == 'button' else FIELD_FILL
      widgets.append({'kind': kind, 'label': label, 'box': [x, y, x + w, y + h], 'fill': fill})
      y += h
    return widgets

  def _draw(self, widgets: list[dict[str, Any]], title: str, background) -> np.ndarray:
    height, width = self.cfg.image_size
    image = Image.new('RGB', (width, height), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width - 1, TITLE_HEIGHT - 1], fill=TITLE_BAR)
    draw.text((MARGIN, 2), title, fill=TEXT_COLOR, font=self.font)
    for widget in widgets:
      x1, y1, x2, y2 = widget['box']
      outline = FIELD_BORDER if widget['kind'] == 'field' else widget['fill']
      draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=widget['fill'], outline=outline)
      color = FIELD_TEXT if widget['kind'] == 'field' else TEXT_COLOR
      _, top, _, bottom = draw.textbbox((0, 0), widget['label'], font=self.font)
      draw.text((x1 + PADDING, (y1 + y2 - top - bottom) // 2), widget['label'], fill=color, font=self.font)
    return np.asarray(image, np.uint8).copy()

  def example(self, seed: int) -> dict[str, Any]:
    cfg = self.cfg
    rng = np.random.default_rng(seed)
    height, width = cfg.image_size
    widgets = self._layout(rng, int(rng.integers(cfg.num_widgets[0], cfg.num_widgets[1] + 1)))
    title = str(APP_TITLES[int(rng.integers(len(APP_TITLES)))])
    background = SCREEN_BACKGROUNDS[int(rng.integers(len(SCREEN_BACKGROUNDS)))]
    image = self._draw(widgets, title, background)
    action = str(cfg.actions[int(rng.integers(len(cfg.actions)))])
    meta: dict[str, Any] = {'gt_action': action, 'coordinate': [0, 0]}
    if action in ('click', 'input_text'):
      kind = 'button' if action == 'click' else 'field'
      candidates = [w for w in widgets if w['kind'] == kind]
      target = candidates[int(rng.integers(len(candidates)))]
      x1, y1, x2, y2 = target['box']
      meta.update(gt_bbox=list(target['box']), coordinate=[(x1 + x2) // 2, (y1 + y2) // 2])
      if action == 'click':
        instruction = f"{('Click', 'Tap')[int(rng.integers(2))]} the '{target['label']}' button"
      else:
        text = str(WORDS[int(rng.integers(len(WORDS)))])
        meta['text'] = text
        instruction = f"Type '{text}' into the {target['label']} field"
    elif action == 'scroll':
      direction = ('up', 'down')[int(rng.integers(2))]
      meta['direction'] = direction
      instruction = f'Scroll {direction} to see more'
    elif action == 'navigate_back':
      instruction = 'Go back to the previous screen'
    else:
      app = str(APPS[int(rng.integers(len(APPS)))])
      meta['app'] = app
      instruction = f'Open the {app} app'
    meta.update(instruction=instruction, image_size=[width, height], think=cfg.think,
                widgets=[{'kind': w['kind'], 'label': w['label'], 'box': w['box']} for w in widgets],
                answer=render_action(action, meta['coordinate']))
    prompt = render_prompt(instruction, height, width, think=cfg.think, tell_size=cfg.tell_size)
    return {'prompt': prompt, 'images': [image], 'meta': meta}

  def random_answer_completion(self, meta: Mapping[str, Any], seed: int) -> str:
    rng = base.completion_rng(seed)
    width, height = meta['image_size']
    action = ACTIONS[int(rng.integers(len(ACTIONS)))]
    answer = render_action(action, (rng.integers(width), rng.integers(height)))
    return templates.format_completion(answer, think=self.cfg.think)
