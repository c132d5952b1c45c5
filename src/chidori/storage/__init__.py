"""Shared storage: the bytes every replica can read (uploads, driver logs, Spark event logs).

`blobs.py` is the interface with its local-folder and database implementations; object stores
(S3, GCS, Azure Blob) live in `blobs_fsspec.py`, imported only when chosen. `artifacts.py` says
where applications come from, `logfiles.py` reads logs without holding them, `logship.py` copies
a running driver's log into shared storage.
"""
