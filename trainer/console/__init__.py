"""What a person reads from a training job: rank 0 reports, the other ranks warn, a log
file gets one line per progress bar, import-time notices are dropped. Torch-free."""
