import cv2
import numpy as np
import pytest

from meterread.preprocess import (
    DecodeError,
    decode_image,
    image_size,
    preprocess_photo,
    quality_metrics,
    reduction_factor,
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
