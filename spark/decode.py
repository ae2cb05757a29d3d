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
ACCEPTED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
# Pillow's bomb guard: phone photos are ~12-50 Mpx; anything beyond this is refused.
MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


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


def decode_image(content: bytes, path: str = "") -> np.ndarray:
    """(224, 224, 3) float32, preprocessed for MobileNetV2. Raises DecodeError."""
    if path:
        check_extension(path)
    if not content:
        raise DecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
            # JPEG only: decode at the smallest power-of-two scale still >= 224 px.
            image.draft("RGB", (INPUT_SIZE, INPUT_SIZE))
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
            return preprocess(np.asarray(rgb))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DecodeError(f"decompression bomb refused: {error}") from None
    except Image.UnidentifiedImageError:
        raise DecodeError("cannot decode image: not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DecodeError(f"cannot decode image: {type(error).__name__}: {error}") from None
