"""Image bytes -> a 224x224x3 float32 tensor in MobileNetV2's input range, or a reason why not.

Pure Pillow + NumPy, so Python workers decode without touching TensorFlow.
"""

from __future__ import annotations

import io
import warnings
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, ImageOps

INPUT_SIZE = 224
# The only Pillow plugins allowed to parse input: every other parser stays out of reach of
# untrusted bytes, whatever the file is named.
_EXTENSIONS_BY_FORMAT = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",)}
DECODED_FORMATS = tuple(_EXTENSIONS_BY_FORMAT)
ACCEPTED_EXTENSIONS = frozenset(ext for exts in _EXTENSIONS_BY_FORMAT.values() for ext in exts)
# Pillow's bomb guard: phone photos are ~12-50 Mpx; anything beyond this is refused.
MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Leading bytes of formats that are refused, only to name them in the reason.
_REFUSED_SIGNATURES = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
    (b"8BPS", "PSD"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
)
_ISO_MEDIA_BRANDS = {
    **dict.fromkeys((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"), "HEIC"),
    **dict.fromkeys((b"mif1", b"msf1"), "HEIF"),
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
}


class DecodeError(ValueError):
    """The file is not an image the pipeline can use; the message is the recorded reason."""


def check_extension(path: str) -> None:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in ACCEPTED_EXTENSIONS:
        raise DecodeError(f"unsupported file extension {suffix or '(none)'!r}")


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """MobileNetV2's preprocessing (keras.applications.mobilenet_v2.preprocess_input): [-1, 1]."""
    return rgb.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB; transparent pixels are composed onto white, as a photo background would be."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits rather than clip.
        grey = np.asarray(image, dtype=np.float64)
        scaled = grey * (255.0 / max(float(grey.max()), 1.0))
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _refused_format(content: bytes) -> str | None:
    """The name of a known format other than JPEG/PNG that the bytes start with, if any."""
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "WebP"
    if content[4:8] == b"ftyp":  # ISO media: the brand tells HEIC (iPhones' default) from video
        return _ISO_MEDIA_BRANDS.get(content[8:12])
    return next((name for magic, name in _REFUSED_SIGNATURES if content.startswith(magic)), None)


def _unidentified_reason(content: bytes) -> str:
    allowed = " or ".join(DECODED_FORMATS)
    refused = _refused_format(content)
    if refused:
        return f"cannot decode image: content is {refused}, not {allowed}"
    return f"cannot decode image: not a recognised image format ({allowed} expected)"


def _type_name(error: Exception) -> str:
    """'EOFError' for builtins, 'struct.error' otherwise: the bare name can be ambiguous."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _decode(content: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(content), formats=DECODED_FORMATS)
        # JPEG only: decode at the smallest power-of-two scale still >= 224 px.
        image.draft("RGB", (INPUT_SIZE, INPUT_SIZE))
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        return preprocess(np.asarray(rgb))


def decode_image(content: bytes, path: str = "") -> np.ndarray:
    """(224, 224, 3) float32, preprocessed for MobileNetV2. Raises DecodeError.

    Any exception from Pillow becomes a DecodeError, so one bad file is a reject instead of a
    Spark task that fails on every retry.
    """
    if path:
        check_extension(path)
    if not content:
        raise DecodeError("empty file (0 bytes)")
    try:
        return _decode(content)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DecodeError(f"decompression bomb refused: {error}") from None
    except Image.UnidentifiedImageError:
        raise DecodeError(_unidentified_reason(content)) from None
    except Exception as error:
        raise DecodeError(f"cannot decode image: {_type_name(error)}: {error}") from None
