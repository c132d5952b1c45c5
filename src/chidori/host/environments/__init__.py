"""Per-job Python environments on this replica: resolving and building them (`builder.py`),
preparing held jobs before admission (`preparer.py`), giving a launched driver its
environment (`jobs.py`) and keeping the disk within its budget (`pruning.py`)."""
