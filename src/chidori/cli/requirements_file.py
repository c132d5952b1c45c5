"""`chidori submit --requirements FILE`: a pip requirements file read on the client, into the
spec's `requirements` list (the server sees PEP 508 strings only, never a file or an option).

Read: one requirement a line, `#` comments, `\\` continuations, and `-r OTHER` / `--requirement
OTHER` includes (relative to the including file). Any other pip option (`--index-url`, `-e`,
`-c`, `--extra-index-url`, ...) is refused: the server decides where packages come from.
"""

from __future__ import annotations

from pathlib import Path

_INCLUDE = ("-r", "--requirement")
_MAX_DEPTH = 8


def read_requirements_file(path: Path, problems: list[str], depth: int = 0) -> list[str]:
    """The requirements in `path` (and the files it includes); what cannot be taken goes into
    `problems` as one sentence each."""
    if depth > _MAX_DEPTH:
        problems.append(f"--requirements {path}: includes nest deeper than {_MAX_DEPTH} files")
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"cannot read --requirements {path}: {exc}")
        return []
    found: list[str] = []
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            flag, _, rest = line.replace("=", " ", 1).partition(" ")
            if flag in _INCLUDE and rest.strip():
                found += read_requirements_file(path.parent / rest.strip(), problems, depth + 1)
            else:
                problems.append(
                    f"{path}:{number}: {flag} is not allowed: packages come from the server's "
                    "index (ask an admin for another one)"
                )
            continue
        found.append(line)
    return found


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = " ".join((pending + line).split())
        pending = ""
        if whole:
            lines.append((start, whole))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines
