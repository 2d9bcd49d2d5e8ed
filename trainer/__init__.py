"""ft's in-container trainer. Importing this package must not import torch: the CLI relies on it."""

from trainer.console.import_notices import drop_import_notices

drop_import_notices()  # before any submodule imports a dependency that logs on import
