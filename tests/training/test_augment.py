"""Photometric augmentation: what each change does, determinism per step, the settings' checks, and that training
feeds the model augmented images (labels unchanged)."""

import numpy as np
import pytest

from meterread.config import AugmentSettings, TrainConfig, TrainConfigError
from meterread.training.augment import augment_batch, augment_image, step_rng


def photo(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (16, 24, 3), dtype=np.uint8)


def test_nothing_enabled_returns_the_images_themselves():
    images = [photo(1), photo(2)]
    out = augment_batch(images, np.random.default_rng(0), AugmentSettings())
    assert all(a is b for a, b in zip(out, images))


def test_invert_flips_polarity_exactly():
    image = photo()
    out = augment_image(image, np.random.default_rng(0), AugmentSettings(invert=1.0))
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out, 255 - image)


def test_grayscale_makes_the_channels_equal_and_keeps_brightness_order():
    dark, light = np.full((4, 4, 3), 40, np.uint8), np.full((4, 4, 3), 200, np.uint8)
    settings = AugmentSettings(grayscale=1.0)
    out = augment_image(photo(), np.random.default_rng(0), settings)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    rng = np.random.default_rng(0)
    assert augment_image(dark, rng, settings).mean() < augment_image(light, rng, settings).mean()


def test_contrast_and_brightness_stay_within_their_range():
    image = np.full((8, 8, 3), 100, np.uint8)
    image[:4] = 150
    settings = AugmentSettings(contrast=0.5, brightness=0.2)
    for seed in range(20):
        out = augment_image(image, np.random.default_rng(seed), settings).astype(float)
        spread = out[:4].mean() - out[4:].mean()
        assert 50 * 0.5 * 0.8 - 1 <= spread <= 50 * 1.5 * 1.2 + 1


def test_the_same_step_draws_the_same_changes_and_another_step_others():
    images = [photo(seed) for seed in range(12)]
    settings = AugmentSettings(invert=0.5, grayscale=0.3, contrast=0.3, brightness=0.2)
    first = augment_batch(images, step_rng(7, 3), settings)
    again = augment_batch(images, step_rng(7, 3), settings)
    other = augment_batch(images, step_rng(7, 4), settings)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    inverted = sum(np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0 for a, b in zip(first, images))
    assert 0 < inverted < len(images)  # a chance per image, not per batch


@pytest.mark.parametrize("key", ["invert", "grayscale", "contrast", "brightness"])
def test_a_share_outside_zero_to_one_is_rejected(key):
    values = {"family": "ppocr", "base": "b", "dataset": "d", "output": "o", "augment": {key: 1.5}}
    with pytest.raises(TrainConfigError, match=f"augment.{key} must be within"):
        TrainConfig.from_mapping(values).validate()
    with pytest.raises(TrainConfigError, match="augment"):
        TrainConfig.from_mapping({**values, "augment": {"hue": 0.1}})


def test_training_feeds_the_model_augmented_images(tmp_path, monkeypatch):
    """With `augment.invert: 1` the model's training batches hold the inverted images, labels as written."""
    from meterread.data.synth import write_dataset
    from meterread.models.paligemma import PaliGemmaReader
    from meterread.training.train import train

    dataset = tmp_path / "data"
    write_dataset(dataset, {"train": 4, "valid": 2, "test": 0}, seed=5, size=(160, 120))
    seen = []
    original = PaliGemmaReader.training_batch

    def spy(self, images, prompts, answers):
        seen.append(([image.copy() for image in images], list(answers)))
        return original(self, images, prompts, answers)

    monkeypatch.setattr(PaliGemmaReader, "training_batch", spy)
    values = {
        "family": "paligemma",
        "init_tiny": {"image_size": 32, "patch_size": 16},
        "dataset": str(dataset),
        "output": str(tmp_path / "run"),
        "strategy": "full",
        "batch_size": 4,
        "epochs": 1,
        "eval_batch_size": 4,
        "seed": 2,
    }
    for augment in ({}, {"invert": 1.0}):
        train(TrainConfig.from_mapping({**values, "augment": augment}).validate(), progress=False, log=print)
    (plain, labels), (inverted, same_labels) = seen
    assert len(plain) == 4 and labels == same_labels  # one step each, the same seeded batch order
    assert all(np.array_equal(b, 255 - a) for a, b in zip(plain, inverted))
