"""Procedural RGB images whose local content tells where in the image it came from.

Real photos carry absolute-position cues (sky on top, floor below, horizon in the middle); a
jigsaw solver leans on them as much as on edge continuity. `procedural_image` builds such cues
in on purpose so that a tiny vision model can learn them from a few hundred steps:

- red ramps left -> right and green ramps top -> bottom. Each image draws its own offset and
  contrast for the two ramps, but the contrast is at least `MIN_CONTRAST`, so the ramp always
  dominates: red always grows to the right and green always grows downwards;
- blue carries the per-image variety: a random oriented sinusoidal texture plus a few random
  discs and rectangles. Texture and shapes run across piece borders, which gives edge-continuity
  cues as well, and they never touch red or green, so they cannot erase the position cue;
- small Gaussian noise on all channels (std `NOISE_STD`, far below the ramp contrast) keeps
  neighbouring pixels from being exactly equal.

Everything is drawn from the given generator, so an image is a function of the seed.
"""

from __future__ import annotations

import numpy as np

MIN_CONTRAST = 0.7  # smallest ramp span: above ~0.7 a piece's mean colour alone tells its grid cell
MAX_CONTRAST = 0.95
NOISE_STD = 0.02  # in [0, 1] intensity units
MAX_SHAPES = 3


def _ramp(rng: np.random.Generator, coords: np.ndarray) -> np.ndarray:
  """An increasing ramp over coords in [0, 1] with a random contrast and offset."""
  contrast = rng.uniform(MIN_CONTRAST, MAX_CONTRAST)
  offset = rng.uniform(0.0, 1.0 - contrast)
  return offset + contrast * coords


def _blue_texture(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
  """An oriented sine grating with random shapes painted over it, values in [0, 1]."""
  angle = rng.uniform(0.0, np.pi)
  frequency = rng.uniform(1.0, 4.0)  # periods across the image
  phase = rng.uniform(0.0, 2 * np.pi)
  blue = 0.5 + 0.3 * np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)
  for _ in range(rng.integers(1, MAX_SHAPES + 1)):
    cy, cx = rng.uniform(0.0, 1.0, size=2)
    ry, rx = rng.uniform(0.1, 0.3, size=2)
    if rng.random() < 0.5:
      inside = ((y - cy) / ry)**2 + ((x - cx) / rx)**2 <= 1.0
    else:
      inside = (np.abs(y - cy) <= ry) & (np.abs(x - cx) <= rx)
    blue = np.where(inside, rng.uniform(0.0, 1.0), blue)
  return blue


def procedural_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Returns a uint8 [height, width, 3] image with absolute-position cues (see the module docstring)."""
  if height < 1 or width < 1:
    raise ValueError(f'image size must be positive, got height={height}, width={width}')
  y = np.broadcast_to(np.linspace(0.0, 1.0, height)[:, None], (height, width))
  x = np.broadcast_to(np.linspace(0.0, 1.0, width)[None, :], (height, width))
  red = _ramp(rng, x)
  green = _ramp(rng, y)
  blue = _blue_texture(rng, y, x)
  image = np.stack([red, green, blue], axis=-1) + rng.normal(0.0, NOISE_STD, size=(height, width, 3))
  return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
