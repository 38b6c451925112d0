import numpy as np

from meterread.models.base import ModelSpec, Prediction, load_reader, read_in_length_order, read_padded


class RecordingReader:
    """Reads each image's first pixel value back as the text; records the batches it was given."""

    def __init__(self):
        self.batches = []

    def read(self, images, prompts):
        self.batches.append((len(images), list(prompts)))
        return [Prediction(text=str(int(image[0, 0, 0])), token_logprobs=(0.0,)) for image in images]


def images_numbered(count):
    return [np.full((4, 4, 3), i, np.uint8) for i in range(count)]


def test_read_padded_gives_the_model_one_shape_and_returns_only_real_rows():
    reader = RecordingReader()
    predictions = read_padded(reader, images_numbered(3), ["p"] * 3, batch_size=8)
    assert [p.text for p in predictions] == ["0", "1", "2"]
    assert reader.batches[0][0] == 8  # padded with copies of the last image


def test_read_padded_leaves_full_batches_alone():
    reader = RecordingReader()
    read_padded(reader, images_numbered(8), ["p"] * 8, batch_size=8)
    assert reader.batches[0][0] == 8


def test_read_in_length_order_batches_similar_prompts_and_restores_order():
    reader = RecordingReader()
    prompts = ["a much longer prompt", "p", "mid prompt", "q"]
    predictions = read_in_length_order(reader, images_numbered(4), prompts)
    assert [p.text for p in predictions] == ["0", "1", "2", "3"]
    assert reader.batches[0][1] == ["p", "q", "mid prompt", "a much longer prompt"]


def test_compile_option_sets_a_static_cache(tiny_paligemma):
    reader = load_reader(ModelSpec(family="paligemma", base=tiny_paligemma, device="cpu", compile=True))
    assert reader.model.generation_config.cache_implementation == "static"  # compiled lazily on first call
