"""Import stand-in for Pillow (6.8 MiB): Axolotl's config schema imports
`PIL.Image.Resampling` and its processing strategies a few names, even for text training.
Only those names exist; opening an image raises."""

__version__ = "0.0.0+ft-bench-shim"

from . import Image, ImageOps  # noqa: E402,F401
from .Image import UnidentifiedImageError  # noqa: E402,F401
