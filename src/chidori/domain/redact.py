"""Secrets in what a job's spec shows (its conf and its args): recognised by their key or by
their shape, never shown. Only what is shown is redacted: the job itself gets what was sent."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

REDACTED = "*********(redacted)"
# Like Spark's own spark.redaction.regex, and a little wider: also names ending in PASS
# (DB_PASS), Azure's account keys and SAS signatures.
_SECRET_KEY = re.compile(
    r"(?i)(secret|password|passwd|passphrase|pwd|pass($|[._-])|token|credential|private"
    r"|(^|[._-])key($|[._-])|keytab|access[._-]?key|api[._-]?key|account[._-]?key"
    r"|(^|[._-])(sas|sig)($|[._-])|signature)"
)
# A URL's user:password@ (jdbc:postgresql://u:p@h/db, https://u:p@h/...).
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^/\s:@]+:)([^\s@]+)(?=@)")
# Azure connection strings and SAS tokens: the rest of the entry, up to the next `;`.
_AZURE_SECRET = re.compile(
    r"(?i)((?:^|[;\s])(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*[=\s]\s*)([^;\s]+)"
)
# key=value parameters of URLs and connection strings (?password=, ;password=, &sig=).
_SECRET_PARAMETER = re.compile(
    r"(?i)((?:^|[;?&\s,])(?:password|passwd|pwd|pass|secret|token|sig|apikey|api_key"
    r"|access_token|client_secret|user_password)\s*=\s*)([^;&\s,]+)"
)
# An argument that is one `name=value` pair, or a flag (`--name=value`, `--name value`).
_ARG_NAME = re.compile(r"^-{0,2}[A-Za-z0-9_.\-]+$")


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_text(value: str) -> str:
    """`value` with the secrets inside it replaced: URL passwords, Azure keys and SAS
    signatures, password/token parameters of URLs and connection strings."""
    value = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED, value)
    value = _AZURE_SECRET.sub(lambda m: m.group(1) + REDACTED, value)
    return _SECRET_PARAMETER.sub(lambda m: m.group(1) + REDACTED, value)


def redact_conf(conf: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_key(k) else redact_text(v)) for k, v in conf.items()}


def redact_args(args: Sequence[str]) -> list[str]:
    """Application arguments as shown: the value after a secret-looking flag (`--password x`,
    `--token=x`), the value of a secret-looking `name=value`, and secrets inside any argument
    (`redact_text`) are replaced."""
    shown: list[str] = []
    hide_next = False
    for arg in args:
        name, equals, _value = arg.partition("=")
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
        elif equals and _ARG_NAME.match(name) and is_secret_key(name.lstrip("-")):
            shown.append(f"{name}={REDACTED}")
        elif not equals and arg.startswith("-") and _ARG_NAME.match(arg):
            shown.append(arg)
            hide_next = is_secret_key(arg.lstrip("-"))
        else:
            shown.append(redact_text(arg))
    return shown
