"""Font makes: made-up meter models whose digit crops are rendered from fonts, to widen what training has seen.

Fifteen real meter models do not teach a reader unseen ones (docs/training.md, "Stage 7"); rendered makes add
typefaces, stroke weights, colours and proportions no real model in the crop set has. Each make draws every crop
with one glyph source (a TrueType font found on this machine or Pillow's bundled one, an OpenCV Hershey font, or
seven segments for an LCD), one colour scheme, one crop shape and one glyph scale; counter makes also have wheels
caught rolling (`X.Y_`, as in the real crop set). Crops are written in the real set's layout
(`<type>/<make>/<label>_<n>.jpg`), so `meterread strips --font-makes` adds them to the training strips only.

Pure apart from `font_files` (a directory listing), `_load_font` (reads a font file) and `write_font_makes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from meterread.data.synth import draw_seven_segment

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
BUNDLED_FONT = "pillow-default"  # Pillow's own scalable font: there even where the machine has none
HERSHEY_FONTS = {
    "hershey-simplex": cv2.FONT_HERSHEY_SIMPLEX, "hershey-duplex": cv2.FONT_HERSHEY_DUPLEX,
    "hershey-complex": cv2.FONT_HERSHEY_COMPLEX, "hershey-triplex": cv2.FONT_HERSHEY_TRIPLEX,
    "hershey-plain": cv2.FONT_HERSHEY_PLAIN,
}  # fmt: skip
COUNTER_COLOURS = (  # (ink, paper), BGR: white on black, black on white/grey/beige, white on red, black on orange
    ((240, 240, 240), (20, 20, 20)), ((15, 15, 15), (230, 235, 235)), ((20, 20, 20), (175, 180, 180)),
    ((250, 250, 250), (70, 60, 60)), ((20, 25, 30), (170, 210, 225)), ((240, 240, 240), (20, 20, 150)),
    ((20, 20, 20), (40, 140, 240)), ((30, 30, 200), (235, 240, 240)),
)  # fmt: skip
LCD_COLOURS = (  # dark on grey-green, dark on grey, dark on olive, light on dark (backlit)
    ((35, 40, 35), (160, 185, 170)), ((25, 20, 20), (200, 205, 200)), ((45, 50, 50), (120, 150, 140)),
    ((230, 240, 230), (35, 40, 30)),
)  # fmt: skip
ROLLED_SHARE = 0.2  # of a counter make's crops: the real counter models have about this share of rolled wheels
GLYPH_BOX = 96  # px: glyphs are rendered this tall, then scaled into each crop


MAKE_TYPE = "font"  # the `<type>` of every font make's name, as `powermeter` is a real model's


def is_font_make(model: str) -> bool:
    return model.split("/")[0] == MAKE_TYPE


@dataclass(frozen=True)
class FontMake:
    """One made-up meter model: how each of its crops is drawn."""

    name: str  # "<type>/<model>", like a real model: "font/counter-03", "font/lcd-17" (`crops.is_lcd` knows it)
    glyphs: str  # a font file path, BUNDLED_FONT, a HERSHEY_FONTS key, or "seven-segment"
    ink: tuple[int, int, int]
    paper: tuple[int, int, int]
    height: int  # crop height, px
    aspect: float  # crop width / height
    scale: float  # glyph height / crop height
    stroke: int  # Hershey stroke thickness at GLYPH_BOX
    style_seed: int  # a seven-segment make's slant and proportions

    @property
    def is_lcd(self) -> bool:
        return self.glyphs == "seven-segment"


def font_files(dirs: tuple[str, ...] = FONT_DIRS, required: bool = False) -> list[str]:
    """TrueType fonts under `dirs` that draw digits, sorted (so makes depend only on the fonts a machine has).
    `required` (folders a user named): raises FileNotFoundError for a folder that is not there."""
    missing = [folder for folder in dirs if required and not Path(folder).is_dir()]
    if missing:
        raise FileNotFoundError(f"font folder(s) {missing} not found")
    found = sorted({str(path) for folder in dirs for path in Path(folder).glob("**/*.ttf")})
    return [path for path in found if _draws_digits(path)]


def _draws_digits(path: str) -> bool:
    """Whether the font has ten different digit glyphs (a symbol font draws one placeholder box for all)."""
    try:
        font = ImageFont.truetype(path, 32)
    except OSError:
        return False
    return len({_mask(font, str(digit)).tobytes() for digit in range(10)}) == 10


def plan_makes(n: int, fonts: list[str], seed: int, lcd_share: float = 1 / 3) -> list[FontMake]:
    """`n` makes, the last `lcd_share` of them seven-segment LCDs; the counters cycle through the TrueType `fonts`
    (plus Pillow's bundled font) and the Hershey fonts in a shuffled order. Deterministic in (`n`, `fonts`,
    `seed`)."""
    rng = np.random.default_rng(seed)
    sources = [*fonts, BUNDLED_FONT, *HERSHEY_FONTS]
    order = rng.permutation(len(sources))
    counters = n - round(n * lcd_share)
    makes = []
    for index in range(n):
        lcd = index >= counters
        glyphs = "seven-segment" if lcd else sources[int(order[index % len(sources)])]
        colours = LCD_COLOURS if lcd else COUNTER_COLOURS
        ink, paper = colours[int(rng.integers(len(colours)))]
        makes.append(
            FontMake(
                name=f"{MAKE_TYPE}/{'lcd' if lcd else 'counter'}-{index:02d}",
                glyphs=glyphs,
                ink=ink,
                paper=paper,
                height=int(rng.integers(28, 60)),
                aspect=float(rng.uniform(0.5, 0.8)),
                scale=float(rng.uniform(0.55, 0.85)),
                stroke=int(rng.integers(3, 11)),
                style_seed=int(rng.integers(2**31)),
            )
        )
    return makes


@lru_cache(maxsize=64)
def _load_font(glyphs: str) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(GLYPH_BOX) if glyphs == BUNDLED_FONT else ImageFont.truetype(glyphs, GLYPH_BOX)


def _mask(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    left, top, right, bottom = font.getbbox(char)
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), char, fill=255, font=font)
    return np.asarray(canvas)


def glyph_mask(make: FontMake, digit: int) -> np.ndarray:
    """The make's `digit` as an ink mask (float 0-1), trimmed to its ink."""
    if make.glyphs in HERSHEY_FONTS:
        font = HERSHEY_FONTS[make.glyphs]
        scale = cv2.getFontScaleFromHeight(font, GLYPH_BOX, make.stroke)
        (width, height), base = cv2.getTextSize(str(digit), font, scale, make.stroke)
        canvas = np.zeros((height + base + 2 * make.stroke, width + 2 * make.stroke), np.uint8)
        cv2.putText(canvas, str(digit), (make.stroke, height + make.stroke), font, scale, 255, make.stroke, cv2.LINE_AA)
    else:
        canvas = _mask(_load_font(make.glyphs), str(digit))
    ys, xs = np.nonzero(canvas > 50)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255


def _wheel_window(make: FontMake, digit: int, tenths: int, width: int) -> np.ndarray:
    """The ink mask of a wheel window showing `digit` rolled `tenths` tenths of the way to the next one."""
    height = make.height
    tall = np.zeros((2 * height, width), np.float32)  # this digit above, the next one below: the wheel turns up
    for slot, value in enumerate((digit, (digit + 1) % 10)):
        glyph = glyph_mask(make, value)
        glyph_h = int(height * make.scale)
        glyph_w = max(2, min(int(width * 0.92), round(glyph.shape[1] * glyph_h / glyph.shape[0])))
        top, left = slot * height + (height - glyph_h) // 2, (width - glyph_w) // 2
        tall[top : top + glyph_h, left : left + glyph_w] = cv2.resize(
            glyph, (glyph_w, glyph_h), interpolation=cv2.INTER_AREA
        )
    offset = round(tenths / 10 * height)
    return tall[offset : offset + height]


def render_crop(make: FontMake, digit: int, tenths: int, rng: np.random.Generator) -> np.ndarray:
    """One crop (BGR) of the make showing `digit`, its wheel `tenths` tenths on (0 for a clean digit; LCDs: 0)."""
    width = max(12, round(make.height * make.aspect))
    if make.is_lcd:
        panel = np.empty((make.height, int(width * 1.6), 3), np.uint8)
        panel[:] = make.paper
        draw_seven_segment(panel, str(digit), make.ink, np.random.default_rng(make.style_seed))
        image = panel[:, : int(width * 1.25)].astype(np.float32)
    else:
        ink = _wheel_window(make, digit, tenths, width)[..., None]
        image = np.float32(make.paper) * (1 - ink) + np.float32(make.ink) * ink
    image = _shift(image, int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))  # a loose cut
    image = cv2.GaussianBlur(image * rng.uniform(0.75, 1.15), (0, 0), rng.uniform(0.3, 1.2))
    return np.clip(image + rng.normal(0, rng.uniform(2, 10), image.shape), 0, 255).astype(np.uint8)


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` moved by (dy, dx) px, its edge pixels repeated into the gap (no ink wraps round to the far edge)."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def crop_labels(make: FontMake, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """`n` (digit, tenths) pairs: digits uniform; a counter's wheel rolled 1-9 tenths in ROLLED_SHARE of them."""
    pairs = []
    for _ in range(n):
        rolled = not make.is_lcd and rng.random() < ROLLED_SHARE
        pairs.append((int(rng.integers(10)), int(rng.integers(1, 10)) if rolled else 0))
    return pairs


def write_font_makes(out_root: str | Path, makes: list[FontMake], per_make: int, seed: int) -> dict[str, int]:
    """Write `per_make` JPEG crops of every make under `out_root` in the real crop set's layout; returns crops
    per make. Deterministic in (`makes`, `per_make`, `seed`)."""
    counts = {}
    for index, make in enumerate(makes):
        rng = np.random.default_rng([seed, index])
        folder = Path(out_root, make.name)
        folder.mkdir(parents=True, exist_ok=True)
        for number, (digit, tenths) in enumerate(crop_labels(make, per_make, rng)):
            label = f"{digit}.{tenths}" if tenths else str(digit)
            image = render_crop(make, digit, tenths, rng)
            cv2.imwrite(str(folder / f"{label}_{number:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        counts[make.name] = per_make
    return counts
