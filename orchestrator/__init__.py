"""ft's orchestrator: spec -> launch files -> submitted job. Never imports torch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ft")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"
