"""Stand-in for PIL.Image: the Resampling enum and the names Axolotl imports."""

from enum import IntEnum


class Resampling(IntEnum):
    NEAREST = 0
    LANCZOS = 1
    BILINEAR = 2
    BICUBIC = 3
    BOX = 4
    HAMMING = 5


NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = tuple(Resampling)


class Image:  # isinstance(x, PIL.Image.Image) checks elsewhere keep working
    pass


class UnidentifiedImageError(OSError):
    pass


def open(*args, **kwargs):  # noqa: A001
    raise ImportError("Pillow is not installed (ft bench shim): images are unsupported")


def __getattr__(name):
    raise AttributeError(f"PIL.Image.{name}: Pillow is not installed (ft bench shim)")
