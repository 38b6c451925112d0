import struct
import zlib

import cv2
import numpy as np
import pytest

from meterread.preprocess import (
    DecodeError,
    InputLayout,
    decode_image,
    decode_target,
    equalize_lightness,
    fold_into_square,
    image_size,
    pixel_limit,
    preprocess_photo,
    quality_metrics,
    reduction_factor,
    resize_square,
)
from tests.factories import BAD_FILES, meter_jpeg, png_bytes


@pytest.mark.parametrize(("name"), sorted(BAD_FILES))
def test_bad_files_raise_decode_error_with_reason(name):
    data, reason = BAD_FILES[name]
    with pytest.raises(DecodeError, match=reason):
        decode_image(data)


def test_truncated_jpeg_is_rejected():
    data = meter_jpeg()
    with pytest.raises(DecodeError, match="truncated JPEG"):
        decode_image(data[: len(data) // 2])


def test_pixel_limit_guards_against_bombs():
    with pytest.raises(DecodeError, match="too large"):
        decode_image(meter_jpeg(size=(320, 240)), max_pixels=320 * 240 - 1)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` (what a highly compressible huge PNG looks like)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("kind", "max_pixels", "limit"),
    [("jpeg", 64_000_000, 64_000_000), ("png", 64_000_000, 40_000_000), ("png", 80_000_000, 50_000_000)],
)
def test_png_pixel_guard_is_lower_as_pngs_decode_whole(kind, max_pixels, limit):
    assert pixel_limit(kind, max_pixels) == limit


def test_an_8000x8000_png_is_refused_before_decoding():
    with pytest.raises(DecodeError, match="8000x8000 exceeds the 40000000 pixel limit for PNG"):
        decode_image(png_claiming(8000, 8000))


def with_exif_thumbnail(jpeg: bytes) -> bytes:
    """`jpeg` with an APP1 segment holding a small JPEG (its own end-of-image marker inside the header)."""
    payload = b"Exif\x00\x00" + meter_jpeg("1", seed=2, size=(64, 48))
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


JPEG = meter_jpeg()
PNG = png_bytes(np.full((40, 60, 3), 128, np.uint8))


@pytest.mark.parametrize(
    ("case", "data", "outcome"),
    [  # outcome: the decoded (height, width), or the DecodeError's reason
        (
            "motion photo: a video after the JPEG",
            JPEG + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8,
            (240, 320),
        ),
        ("padding after the JPEG", JPEG + b"\x00" * 64, (240, 320)),
        ("EXIF thumbnail", with_exif_thumbnail(JPEG), (240, 320)),
        ("PNG with a trailer", PNG + b"trailing data" * 8, (40, 60)),
        ("JPEG cut before its end marker", JPEG[:-2], "truncated JPEG"),
        ("cut JPEG whose thumbnail has an end marker", with_exif_thumbnail(JPEG)[:-500], "truncated JPEG"),
        ("PNG cut inside IEND", PNG[:-6], "truncated PNG"),
        ("PNG cut inside IDAT", PNG[:-20], "truncated PNG"),
    ],
)
def test_data_after_the_image_is_read_and_truncation_is_refused(case, data, outcome):
    if isinstance(outcome, tuple):
        assert decode_image(data).shape[:2] == outcome, case
    else:
        with pytest.raises(DecodeError, match=outcome):
            decode_image(data)


def test_header_size_matches_decoded_size():
    data = meter_jpeg(size=(300, 200))
    assert image_size(data) == (300, 200)
    assert image_size(png_bytes(np.zeros((7, 9, 3), np.uint8))) == (9, 7)


@pytest.mark.parametrize(
    ("width", "height", "target", "factor"),
    [
        (2560, 1440, 224, 2),
        (2560, 1440, 64, 8),
        (640, 480, 224, 1),
        (4000, 3000, 224, 4),
        (448, 448, 224, 1),
        (896, 896, 224, 2),
    ],
)
def test_reduction_factor_table(width, height, target, factor):
    assert reduction_factor(width, height, target) == factor


def test_preprocess_outputs_model_sized_rgb_and_original_size():
    result = preprocess_photo(meter_jpeg(size=(640, 480)), 64)
    assert result.image.shape == (64, 64, 3) and result.image.dtype == np.uint8
    assert (result.width, result.height) == (640, 480)
    assert result.blur > 0 and 0 < result.brightness < 1


def test_quality_metrics_see_blur_and_darkness():
    sharp = cv2.cvtColor(cv2.imdecode(np.frombuffer(meter_jpeg(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    blurred = cv2.GaussianBlur(sharp, (15, 15), 0)
    assert quality_metrics(blurred)[0] < quality_metrics(sharp)[0]
    assert quality_metrics(sharp // 4)[1] < quality_metrics(sharp)[1]


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 300x100 landscape JPEG (white band on the left) whose EXIF says: rotate 90 degrees clockwise."""
    import io

    from PIL import Image

    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, :50] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    upright = decode_image(exif_rotated_jpeg())
    assert upright.shape[:2] == (300, 100)  # portrait after rotation
    assert upright[:20].mean() > 200 and upright[-20:].mean() < 50  # the band is now on top
    result = preprocess_photo(exif_rotated_jpeg(), 32)
    assert (result.width, result.height) == (100, 300)


def test_fold_into_square_stacks_slices_of_a_wide_image_left_to_right():
    wide = np.zeros((32, 256, 3), np.uint8)
    wide[:, :128] = 50  # left half -> top row, right half -> bottom row
    wide[:, 128:] = 200
    folded = fold_into_square(wide, 64, rows=2)
    assert folded.shape == (64, 64, 3)
    assert folded[:32].mean() == 50 and folded[32:].mean() == 200


def test_fold_with_one_row_is_a_square_resize_and_rows_must_divide_the_size():
    image = np.random.default_rng(0).integers(0, 255, (40, 100, 3), np.uint8)
    assert np.array_equal(fold_into_square(image, 32, rows=1), resize_square(image, 32))
    with pytest.raises(ValueError, match="divisible"):
        fold_into_square(image, 32, rows=3)


def test_layout_round_trips_through_meterread_json_values():
    layout = InputLayout(crop_display=True, rows=2)
    assert InputLayout.from_dict(layout.to_dict()) == layout
    assert InputLayout.from_dict({"crop_display": True}) == InputLayout(crop_display=True, rows=1)
    equalised = InputLayout(rows=2, local_contrast=True)
    assert InputLayout.from_dict(equalised.to_dict()) == equalised
    assert InputLayout.from_dict({"display_rows": 2}).local_contrast is False  # a model saved before the key


def faint_register(rng: np.random.Generator) -> np.ndarray:
    """Faint grey digits on grey wheels: bars of 125 on 140, beside glare and a dark bezel."""
    image = np.full((64, 256, 3), 140, np.uint8)
    for left in range(12, 200, 24):
        image[16:48, left : left + 6] = 125
    image[:, 210:230], image[:, 230:] = 250, 10  # glare and a dark bezel: a global stretch gains nothing
    return np.clip(image + rng.normal(0, 1.0, image.shape), 0, 255).astype(np.uint8)


def test_equalize_lightness_stretches_a_faint_register_where_it_is_and_keeps_colours():
    image = faint_register(np.random.default_rng(0))
    out = equalize_lightness(image, rows=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    bars, paper = (slice(16, 48), slice(12, 18)), (slice(16, 48), slice(20, 34))
    before = float(image[paper].mean() - image[bars].mean())
    after = float(out[paper].mean() - out[bars].mean())
    assert after > 1.4 * before  # the register's own contrast grows (clip 2: a modest stretch, noise kept down)
    red = np.zeros((32, 64, 3), np.uint8)
    red[..., 0], red[8:24, 20:40, 0] = 200, 120  # a red wheel: red stays red (lightness only)
    tinted = equalize_lightness(red)
    assert (tinted[..., 0].astype(int) > tinted[..., 1:].max(axis=2) + 60).all()


def test_a_local_contrast_layout_equalises_the_folded_input_last():
    rgb = faint_register(np.random.default_rng(1))
    data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    plain = preprocess_photo(data, 64, layout=InputLayout(rows=2)).image
    equalised = preprocess_photo(data, 64, layout=InputLayout(rows=2, local_contrast=True)).image
    assert np.array_equal(equalised, equalize_lightness(plain, rows=2))
    assert not np.array_equal(equalised, plain)


@pytest.mark.parametrize(
    ("width", "height", "size", "layout", "factor"),
    [
        (2560, 1440, 128, InputLayout(crop_display=True, rows=1), 2),  # the bundled model's layout on a big photo
        (2560, 1440, 128, InputLayout(crop_display=False, rows=1), 4),  # no crop: the whole photo needs less
        (2560, 1440, 128, InputLayout(crop_display=True, rows=2), 1),  # folded: twice the pixels across
        (1024, 768, 128, InputLayout(crop_display=True, rows=1), 1),
        (640, 480, 128, InputLayout(), 1),
        (2560, 1440, 224, InputLayout(), 2),  # PaliGemma-224 on the energy-meter photos
        (4000, 3000, 64, InputLayout(), 8),
    ],
)
def test_reduced_decode_scale_follows_model_input_and_layout(width, height, size, layout, factor):
    assert reduction_factor(width, height, decode_target(size, layout)) == factor


def test_big_jpeg_is_decoded_reduced_to_the_expected_scale():
    photo = cv2.imencode(".jpg", np.full((1440, 2560, 3), 128, np.uint8))[1].tobytes()
    assert decode_image(photo, target=decode_target(128, InputLayout(crop_display=True))).shape[:2] == (720, 1280)
    assert decode_image(photo, target=decode_target(128, InputLayout())).shape[:2] == (360, 640)
