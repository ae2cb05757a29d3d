import io
import re
import struct
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from spark.decode import (
    ACCEPTED_EXTENSIONS,
    DECODED_FORMATS,
    INPUT_SIZE,
    DecodeError,
    decode_image,
    preprocess,
)


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


def noisy(size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.effect_noise(size, 60).convert("RGB")


def psd_header() -> bytes:
    """A minimal Photoshop file: a header, empty sections, raw 4x4 RGB data."""
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"", 3, 4, 4, 8, 3)
    return header + struct.pack(">IIIH", 0, 0, 0, 0) + bytes(48)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\n%%EndComments\nshowpage\n"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(32)


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (lambda: encoded(noisy(), "TIFF"), "TIFF"),
        (lambda: encoded(noisy(), "GIF"), "GIF"),
        (lambda: encoded(noisy(), "WEBP"), "WebP"),
        (lambda: encoded(noisy(), "BMP"), None),
        (psd_header, "PSD"),
        (lambda: EPS, "EPS"),
        (lambda: HEIC, "HEIC"),
    ],
    ids=["tiff", "gif", "webp", "bmp", "psd", "eps", "heic"],
)
def test_other_formats_named_jpg_are_refused_by_content(
    make: Callable[[], bytes], fmt: str | None
) -> None:
    content = make()
    with pytest.raises(DecodeError, match="JPEG or PNG") as raised:
        decode_image(content, "photo.jpg")
    if fmt:
        assert f"content is {fmt}, not JPEG or PNG" in str(raised.value)


def test_the_parsers_refused_above_would_accept_those_bytes() -> None:
    # Without the allow-list Pillow picks a parser by content, whatever the name says.
    assert Image.open(io.BytesIO(psd_header())).format == "PSD"
    assert Image.open(io.BytesIO(EPS)).format == "EPS"


def test_decoded_formats_and_extensions_agree() -> None:
    assert DECODED_FORMATS == ("JPEG", "PNG")
    assert sorted(ACCEPTED_EXTENSIONS) == [".jpeg", ".jpg", ".png"]
    assert decode_image(encoded(red_square(), "PNG"), "really-a-png.jpg").shape[0] == INPUT_SIZE


def test_a_multi_picture_jpeg_still_decodes() -> None:
    # Pillow's JPEG parser returns such files as MPO, which some cameras and phones write.
    buffer = io.BytesIO()
    red_square().save(buffer, format="MPO", save_all=True, append_images=[red_square()])
    assert decode_image(buffer.getvalue(), "pair.jpg").shape == (INPUT_SIZE, INPUT_SIZE, 3)


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (struct.error("unpack requires a buffer of 4 bytes"), "struct.error"),
        (EOFError("no more data"), "EOFError"),
        (IndexError("list index out of range"), "IndexError"),
        (KeyError("missing tag"), "KeyError"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError"),
        (MemoryError("cannot allocate"), "MemoryError"),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_any_exception_inside_pillow_becomes_a_reject(
    monkeypatch: pytest.MonkeyPatch, error: Exception, name: str, fmt: str
) -> None:
    content = encoded(noisy(), fmt)

    def fail(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(DecodeError, match=f"^cannot decode image: {re.escape(name)}: "):
        decode_image(content, f"x.{fmt.lower()}")


@pytest.mark.parametrize("target", ["exif_transpose", "resize"])
def test_exceptions_from_orientation_or_resizing_become_rejects(
    monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    def fail(*_args: object, **_kwargs: object) -> None:
        raise IndexError("tuple index out of range")

    owner = ImageOps if target == "exif_transpose" else Image.Image
    monkeypatch.setattr(owner, target, fail)
    with pytest.raises(DecodeError, match="IndexError"):
        decode_image(encoded(noisy()), "x.jpg")


HEADER_BYTES = 160  # signature, metadata segments, the first image data
# A seed under which a mutated JPEG raises struct.error, which the decoder once let through.
FUZZ_SEED = 1


def with_metadata(fmt: str) -> bytes:
    """A noisy image with EXIF tags: the metadata parsers are where odd exceptions come from."""
    exif = Image.Exif()
    exif.update({0x0112: 6, 0x010F: "Phone", 0x0110: "Model", 0x0132: "2024:06:01 12:00:00"})
    buffer = io.BytesIO()
    noisy().save(buffer, format=fmt, exif=exif)
    return buffer.getvalue()


def mutations(valid: bytes, rng: np.random.Generator, count: int) -> Iterator[bytes]:
    """Byte flips (half of them in the headers), truncations and random insertions, in turn."""
    original = np.frombuffer(valid, dtype=np.uint8)
    for i in range(count):
        where = int(rng.integers(0, len(original)))
        if i % 4 in (0, 2):
            data = original.copy()
            span = HEADER_BYTES if i % 4 == 0 else len(data)
            spots = rng.integers(0, span, int(rng.integers(1, 4)))
            data[spots] ^= rng.integers(1, 256, len(spots), dtype=np.uint8)
            yield data.tobytes()
        elif i % 4 == 1:
            yield valid[:where]
        else:
            noise = rng.integers(0, 256, int(rng.integers(1, 33)), dtype=np.uint8).tobytes()
            yield valid[:where] + noise + valid[where:]


@pytest.mark.filterwarnings("ignore")  # corrupt files make Pillow warn; only the outcome matters
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_mutated_files_decode_or_raise_decode_error_only(fmt: str) -> None:
    rng = np.random.default_rng(FUZZ_SEED)
    rejected = 0
    for content in mutations(with_metadata(fmt), rng, 100):
        try:
            tensor = decode_image(content, "fuzz.png")
        except DecodeError:
            rejected += 1
        else:
            assert tensor.shape == (INPUT_SIZE, INPUT_SIZE, 3) and tensor.dtype == np.float32
    assert rejected > 0  # the mutations do break files
