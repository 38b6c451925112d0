"""PP-OCRv4's text recogniser as a native transformers model: PPLCNetV3 in its re-parameterised (inference) form,
the SVTR neck and a CTC head over a digit vocabulary. No remote code: the config and the modules are here.

Input: (B, 3, `strip_height`, W) strips (48 as published) scaled to [-1, 1], channels in BGR order as PaddleOCR
trained them. Output: W / 8 columns of logits over blank (class 0) + `vocab`. The published model
(`ch_PP-OCRv4_rec`, Apache-2.0) is this architecture at `PPOCRConfig()`'s defaults; `meterread.models.ppocr_import`
copies its weights from rapidocr's ONNX file. Module and parameter order follows the published graph (the import
relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

DIGITS = "0123456789."
STRIP_HEIGHT = 48  # the published input height: the backbone halves it four times, the neck pools the 3 rows left
HEIGHT_STRIDE = 16  # any multiple of it reads (the pooling takes whatever rows are left); 48 is what was pretrained
# PP-OCRv4 mobile (PPLCNetV3 at scale 0.95): kernel, channels in, channels out, stride (h, w), squeeze-excite
PUBLISHED_BLOCKS = (
    (3, 16, 32, (1, 1), False),
    (3, 32, 64, (1, 1), False),
    (3, 64, 64, (1, 1), False),
    (3, 64, 128, (2, 1), False),
    (3, 128, 128, (1, 1), False),
    (3, 128, 240, (1, 2), False),
    *[(5, 240, 240, (1, 1), False)] * 4,
    (5, 240, 480, (2, 1), True),
    (5, 480, 480, (1, 1), True),
    (5, 480, 480, (2, 1), False),
    (5, 480, 480, (1, 1), False),
)


class PPOCRConfig(PretrainedConfig):
    """Architecture of the recogniser. `vocab`: the characters after the CTC blank; `image_size`: the square input
    side meterread's preprocessing produces; `strip_width` x `strip_height`: the size the reader scales the unfolded
    strip to (`strip_width / 8` CTC columns; the published 48 px high unless set; `meterread.models.ppocr`)."""

    model_type = "ppocr"

    def __init__(
        self,
        vocab: str = DIGITS,
        image_size: int = 96,
        strip_width: int = 192,
        strip_height: int = STRIP_HEIGHT,
        stem_channels: int = 16,
        blocks: tuple | list = PUBLISHED_BLOCKS,
        neck_hidden: int = 120,
        neck_depth: int = 2,
        neck_heads: int = 8,
        mlp_ratio: float = 2.0,
        **kwargs,
    ):
        self.vocab = vocab
        self.image_size = image_size
        self.strip_width = strip_width
        self.strip_height = strip_height
        self.stem_channels = stem_channels
        self.blocks = [[k, cin, cout, list(stride), bool(se)] for k, cin, cout, stride, se in blocks]
        self.neck_hidden = neck_hidden
        self.neck_depth = neck_depth
        self.neck_heads = neck_heads
        self.mlp_ratio = mlp_ratio
        super().__init__(**kwargs)

    @property
    def num_classes(self) -> int:
        return len(self.vocab) + 1


class LearnableAffine(nn.Module):
    """`scale * x + bias` with two learnt scalars (PPLCNetV3's learnable affine block)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.scale * x + self.bias


class ConvAffineAct(nn.Module):
    """Re-parameterised conv (bias folded in), learnable affine, hard-swish, learnable affine."""

    def __init__(self, cin: int, cout: int, kernel: int, stride=(1, 1), groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, tuple(stride), kernel // 2, groups=groups)
        self.affine = LearnableAffine()
        self.act_affine = LearnableAffine()

    def forward(self, x):
        return self.act_affine(F.hardswish(self.affine(self.conv(x))))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        scale = F.hardsigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale


class LCNetBlock(nn.Module):
    """Depthwise conv, optional squeeze-excite, pointwise conv."""

    def __init__(self, kernel: int, cin: int, cout: int, stride, se: bool):
        super().__init__()
        self.depthwise = ConvAffineAct(cin, cin, kernel, stride, groups=cin)
        self.se = SqueezeExcite(cin) if se else nn.Identity()
        self.pointwise = ConvAffineAct(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.se(self.depthwise(x)))


class Backbone(nn.Module):
    """PPLCNetV3: a stride-2 stem, then the blocks; (B, 3, H, W) -> (B, C, H / 16, W / 4)."""

    def __init__(self, stem_channels: int, blocks):
        super().__init__()
        self.stem = nn.Conv2d(3, stem_channels, 3, 2, 1, bias=False)
        self.stem_norm = nn.BatchNorm2d(stem_channels)
        self.blocks = nn.Sequential(*(LCNetBlock(*block) for block in blocks))

    def forward(self, x):
        return self.blocks(self.stem_norm(self.stem(x)))


class ConvBNSwish(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=(1, 1)):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=False)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.silu(self.norm(self.conv(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v)
        return self.proj(mixed.transpose(1, 2).reshape(batch, length, dim))


class SVTRBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attention = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.silu(self.fc1(self.norm2(x))))


class SVTRNeck(nn.Module):
    """PP-OCRv4's EncoderWithSVTR: convs down to `hidden`, global attention blocks along the columns, convs back,
    and the backbone's features concatenated in."""

    def __init__(self, channels: int, hidden: int, depth: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.conv1 = ConvBNSwish(channels, channels // 8, (1, 3))
        self.conv2 = ConvBNSwish(channels // 8, hidden)
        self.blocks = nn.ModuleList(SVTRBlock(hidden, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.conv3 = ConvBNSwish(hidden, channels)
        self.conv4 = ConvBNSwish(2 * channels, channels // 8, (1, 3))
        self.conv5 = ConvBNSwish(channels // 8, hidden)

    def forward(self, x):
        z = self.conv2(self.conv1(x))
        batch, channels, height, width = z.shape
        sequence = z.flatten(2).transpose(1, 2)
        for block in self.blocks:
            sequence = block(sequence)
        z = self.norm(sequence).reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        z = self.conv5(self.conv4(torch.cat([x, self.conv3(z)], dim=1)))
        return z.squeeze(2).transpose(1, 2)  # (B, W / 8, hidden)


@dataclass
class CTCOutput(ModelOutput):
    """`logits` (B, T, classes); `loss`: mean CTC loss per target character when `labels` were given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class PPOCRForCTC(PreTrainedModel):
    """The recogniser with its CTC head; `forward(pixel_values, labels=None)` like transformers' `*ForCTC` models:
    `labels` (B, L) class ids (1-based into `vocab`), padded with -100."""

    config_class = PPOCRConfig
    base_model_prefix = "ppocr"
    # A training step runs ~1.4x faster on CPU (oneDNN's depthwise convolutions) when the strips are channels-last.
    # The strip processor's batches are (a permute of NHWC arrays); forward makes sure of it for any other caller.
    # The weights keep their layout (checkpoints unchanged). CUDA is left as it was: not measured.
    # `python -m meterread.bench --training` measures both (False is its comparison run).
    channels_last_on_cpu = True
    main_input_name = "pixel_values"
    _no_split_modules: list[str] = []

    def __init__(self, config: PPOCRConfig):
        super().__init__(config)
        self.backbone = Backbone(config.stem_channels, config.blocks)  # what `freeze-vision` freezes
        channels = config.blocks[-1][2]
        self.neck = SVTRNeck(channels, config.neck_hidden, config.neck_depth, config.neck_heads, config.mlp_ratio)
        self.head = nn.Linear(config.neck_hidden, config.num_classes)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, LearnableAffine):
            nn.init.ones_(module.scale)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> CTCOutput:
        if pixel_values.shape[2] != self.config.strip_height:
            raise ValueError(
                f"this recogniser reads {self.config.strip_height} px high strips, got {tuple(pixel_values.shape)}"
            )
        if self.channels_last_on_cpu and pixel_values.device.type == "cpu":
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        x = self.backbone(pixel_values)
        x = F.avg_pool2d(x, (x.shape[2], 2))  # (B, C, 1, W / 8)
        logits = self.head(self.neck(x))
        loss = ctc_loss(logits, labels) if labels is not None else None
        return CTCOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """The best path's class per column: a CTC model emits a whole reading in one pass (the benchmark's
        `generate` contract; `max_new_tokens` and the like do not apply)."""
        return self(pixel_values).logits.argmax(-1)


def ctc_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CTC loss (blank 0) of (B, T, C) `logits` against -100-padded `labels`; impossible alignments count 0."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, C)
    mask = labels >= 0
    targets = labels[mask]
    input_lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
    return F.ctc_loss(log_probs, targets, input_lengths, mask.sum(-1), blank=0, zero_infinity=True)
