"""Notices dependencies log while they are imported, before `setup_console` runs.

trainer/console/rank_logging.py filters what dependencies say during training; these records come
earlier, at import time, on every rank of every run, and go to stderr through logging's
last-resort handler. Each entry says why it is dropped. Installed when the `trainer`
package is imported (a filter on a logger that may not exist yet: `logging.getLogger`
returns the same object the dependency gets later), so it costs no import of its own.
"""

from __future__ import annotations

import logging
import re

# (logger, message pattern, why it is dropped).
IMPORT_NOTICES = (
    ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward",
     "bitsandbytes tries, on import on a CPU with AVX512-BF16, to fetch an optional 4-bit "
     "CPU matmul kernel from the Hugging Face hub through the `kernels` package, which "
     "refuses the unverified repository (or there is no hub); bitsandbytes then uses its "
     "built-in CPU kernel. One line per rank on every run, 4-bit or not, asking to "
     "`pip install kernels` when it is installed: nothing a user can act on"),
    ("torchao", r"Failed to load .*torchao/_C",
     "transformers imports torchao (its quantizer registry) whenever it is installed, and "
     "torchao then tries its CUDA-only C extensions (MXFP8, CUTLASS sm90a), which cannot load "
     "on a CPU or another CUDA build; its Python paths, which ft's low-bit optimizers and "
     "`qat` use, work without them"),
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported",
     "torchao registers its enums with torch.compile's pytree on import, which this torch "
     "deprecates with a warning per enum: torchao's concern, on every run"),
)


class DropMatching(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def drop_import_notices() -> None:
    for name, pattern, _why in IMPORT_NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMatching) and f.pattern.pattern == pattern
                   for f in logger.filters):
            logger.addFilter(DropMatching(pattern))
