"""Tracebacks name the files the user submitted, not where the server keeps them.

An uploaded file is stored (and staged for a job) as `.../<sha256>/<name>`: a driver's
traceback then says `File "/srv/chidori/artifacts/ab12.../pi.py"`. `map_paths` turns every
such path of the job's own uploads back into the name the user submitted (`File "pi.py"`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_UPLOAD = re.compile(r"^upload://([0-9a-f]{64})/([A-Za-z0-9._\-]{1,255})(?:#.*)?$")
# A path ending in one upload's folder and name (the folder before it is the server's).
_STORED = r"(?:[^\s\"'(),:]*/)?{sha}/{name}\b"


def uploaded_files(references: Iterable[str]) -> dict[str, str]:
    """`{"<sha256>/<name>": "<name>"}` for each upload among a spec's references."""
    found: dict[str, str] = {}
    for reference in references:
        match = _UPLOAD.match(reference)
        if match:
            found[f"{match.group(1)}/{match.group(2)}"] = match.group(2)
    return found


def map_paths(text: str, uploads: dict[str, str]) -> str:
    """`text` with every stored path of these uploads replaced by the submitted name."""
    for stored, name in uploads.items():
        sha, _, file_name = stored.partition("/")
        pattern = _STORED.format(sha=sha, name=re.escape(file_name))
        text = re.sub(pattern, name.replace("\\", "\\\\"), text)
    return text
