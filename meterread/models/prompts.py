"""Default prompt per model family: what the fine-tuning recipes train on and readers ask with.

Kept apart from the family modules so data tools (`meterread synth`, its worker processes) need not import torch.
"""

DEFAULT_PROMPTS = {
    "paligemma": "extract meter value from this image",
    "florence2": "<DocVQA>What is the meter values?",
    "ppocr": "",  # a CTC recogniser reads without a prompt
}
