import io
import re

import numpy as np
import pytest
from PIL import Image

from spark.decode import INPUT_SIZE, DecodeError, decode_image, preprocess


def encoded(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def red_square(mode: str = "RGB", size: tuple[int, int] = (100, 100)) -> Image.Image:
    return Image.new(mode, size, (220, 20, 20) if mode in ("RGB", "RGBA") else 128)


def test_a_jpeg_becomes_a_preprocessed_224_tensor() -> None:
    tensor = decode_image(encoded(red_square()), "a/b.jpg")
    assert tensor.shape == (INPUT_SIZE, INPUT_SIZE, 3) and tensor.dtype == np.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    red, green, _ = tensor.reshape(-1, 3).mean(axis=0)
    assert red > 0.6 and green < -0.6  # still red after decoding and scaling


def test_preprocessing_matches_keras() -> None:
    from keras.applications.mobilenet_v2 import preprocess_input

    pixels = np.random.default_rng(0).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    np.testing.assert_allclose(
        preprocess(pixels), preprocess_input(pixels.astype(np.float32)), atol=1e-6
    )


@pytest.mark.parametrize(
    ("mode", "fmt", "name"),
    [
        ("RGBA", "PNG", "x.png"),
        ("L", "JPEG", "x.JPG"),
        ("P", "PNG", "x.png"),
        ("RGB", "PNG", "x.PNG"),
    ],
)
def test_other_modes_and_upper_case_extensions_decode(mode: str, fmt: str, name: str) -> None:
    assert decode_image(encoded(red_square(mode), fmt), name).shape == (INPUT_SIZE, INPUT_SIZE, 3)


def test_transparent_pixels_become_white() -> None:
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert decode_image(encoded(clear, "PNG"), "x.png").min() == pytest.approx(1.0)


def test_phone_size_photos_decode() -> None:
    tensor = decode_image(encoded(red_square(size=(1280, 960))), "phone.jpeg")
    assert tensor.shape == (INPUT_SIZE, INPUT_SIZE, 3)


@pytest.mark.parametrize(
    ("content", "name", "reason"),
    [
        (b"", "x.jpg", "empty file"),
        (b"hello, I am text\n", "x.jpg", "not a recognised image format"),
        (None, "x.jpg", "cannot decode"),  # truncated JPEG, built below
        (b"GIF89a", "x.gif", "unsupported file extension '.gif'"),
        (b"abc", "README", "unsupported file extension '(none)'"),
    ],
)
def test_bad_files_raise_decode_errors_with_a_reason(
    content: bytes | None, name: str, reason: str
) -> None:
    if content is None:
        whole = encoded(Image.effect_noise((200, 200), 50).convert("RGB"))
        content = whole[: len(whole) // 3]
    with pytest.raises(DecodeError, match=re.escape(reason)):
        decode_image(content, name)


def test_cmyk_and_one_pixel_images_decode() -> None:
    assert decode_image(encoded(Image.new("CMYK", (50, 50), (0, 255, 255, 0))), "c.jpg").shape == (
        INPUT_SIZE,
        INPUT_SIZE,
        3,
    )
    assert (
        decode_image(encoded(Image.new("RGB", (1, 1), "red"), "PNG"), "dot.png").shape[0]
        == INPUT_SIZE
    )


def test_a_16_bit_png_is_scaled_not_clipped() -> None:
    grey = Image.fromarray(np.full((20, 20), 30000, dtype=np.uint16))
    tensor = decode_image(encoded(grey, "PNG"), "deep.png")
    assert tensor.min() == pytest.approx(1.0)  # the brightest value maps to white


def test_exif_orientation_is_applied_before_resizing() -> None:
    image = Image.new("RGB", (200, 100), "white")
    image.paste(Image.new("RGB", (100, 100), "black"), (0, 0))  # black on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    tensor = decode_image(buffer.getvalue(), "rotated.jpg")
    top, bottom = tensor[:100].mean(), tensor[124:].mean()
    assert top < -0.5 < 0.5 < bottom  # black ends up on top once displayed upright


def test_a_very_large_photo_decodes_through_draft_mode() -> None:
    big = encoded(Image.new("RGB", (8000, 6000), (10, 200, 10)))
    assert decode_image(big, "big.jpg").shape == (INPUT_SIZE, INPUT_SIZE, 3)


def test_a_decompression_bomb_is_refused() -> None:
    # A small PNG that claims more pixels than Pillow's limit allows.
    bomb = encoded(Image.new("1", (12_000, 12_000)), "PNG")
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(bomb, "bomb.png")
