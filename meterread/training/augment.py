"""Photometric augmentation of training images (pure: uint8 HWC arrays in and out, a numpy Generator for chance).

Applied per image at each training step, after preprocessing (display crop, resize), so every epoch sees other
variants of the same photos. Geometry stays: the generators already tilt, warp and blur. What they cannot give is
a register style they have no crops of; the commonest gap is polarity (white digits on black wheels, as on many
water meters, where the crops are dark on light), hence `invert`. Labels never change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from meterread.config import AugmentSettings

# Grey = these weights over the image's channels in order (RGB after preprocessing): blue-heavy, not luminance
# (0.299, 0.587, 0.114); stage 3 of the bundled model trained with them, so they stay for `make demo-model` to
# reproduce it. Any fixed mix removes colour, which is what the augmentation is for.
GRAY_WEIGHTS = np.float32([0.114, 0.587, 0.299])


def augment_image(image: np.ndarray, rng: np.random.Generator, settings: AugmentSettings) -> np.ndarray:
    """One image with each enabled change drawn independently: grayscale (chance `grayscale`), inverted
    polarity (chance `invert`), contrast and brightness scaled by up to +-`contrast` / +-`brightness`."""
    out = image.astype(np.float32)
    if settings.grayscale and rng.random() < settings.grayscale:
        out = np.repeat((out @ GRAY_WEIGHTS)[..., None], 3, axis=2)
    if settings.invert and rng.random() < settings.invert:
        out = 255.0 - out
    if settings.contrast:
        mean = out.mean()
        out = (out - mean) * rng.uniform(1 - settings.contrast, 1 + settings.contrast) + mean
    if settings.brightness:
        out = out * rng.uniform(1 - settings.brightness, 1 + settings.brightness)
    return np.clip(out, 0, 255).astype(np.uint8)


def augment_batch(images: Sequence[np.ndarray], rng: np.random.Generator, settings: AugmentSettings) -> list:
    """Every image of a batch through `augment_image`; the images themselves when nothing is enabled."""
    if not settings.enabled:
        return list(images)
    return [augment_image(image, rng, settings) for image in images]


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The augmentation draws of one optimizer step: the same on a resumed run as on an uninterrupted one."""
    return np.random.default_rng([seed, step])
