"""Training data: load, format + mask, pack, cache, collate. See docs/design.md, "Trainer"."""

from trainer.data.collate import Collator, make_collator
from trainer.data.describe import describe_rows, summary_text
from trainer.data.loading import DataSourceError
from trainer.data.pipeline import PreparedData, prepare_data

__all__ = ["Collator", "DataSourceError", "PreparedData", "describe_rows", "make_collator",
           "prepare_data", "summary_text"]
