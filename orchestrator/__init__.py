"""ft's orchestrator: spec -> launch files -> submitted job. Never imports torch."""

from importlib.metadata import PackageNotFoundError, version

# The name on the package index (`ft` there is someone else's project); the command is `ft`.
DISTRIBUTION = "ft-finetune"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"
