"""`ft train` from start to stop: the run (train.py), the transformers Trainer and its
TrainingArguments as ft builds them (hf_trainer.py), user hooks, graceful stops, the
experiment-tracking run."""
