"""Secrets in job conf: recognised by their key, never shown."""

from __future__ import annotations

import re
from collections.abc import Mapping

REDACTED = "*********(redacted)"
# Like Spark's own spark.redaction.regex, and a little wider.
_SECRET_KEY = re.compile(
    r"(?i)(secret|password|passwd|pwd|token|credential|private|[._]key($|[._])|keytab|access[._]?key|api[._]?key)"
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_conf(conf: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in conf.items()}
