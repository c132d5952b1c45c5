"""Settings of per-job Python environments (`environments:` in the config file, or
`CHIDORI_ENVS_*` variables). Read once, by `chidori.config.load_settings`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chidori.domain.environments import parse_size_bytes

DEFAULT_INDEX_URL = "https://pypi.org/simple"


@dataclass(frozen=True)
class EnvironmentsConfig:
    """`directory`: where environments are built (shared by replicas that share it: builds
    are locked per environment there); `uv_cache_dir`: uv's cache, on the same file system so
    installs are hard links (default `<directory>/.uv-cache`); `index_url` and
    `extra_index_urls`: where packages come from (jobs cannot change it); `budget_bytes`:
    least recently used environments no job uses are removed over it (None: no limit)."""

    directory: Path
    uv_cache_dir: Path
    index_url: str = DEFAULT_INDEX_URL
    extra_index_urls: tuple[str, ...] = ()
    budget_bytes: int | None = None
    resolve_timeout_seconds: float = 300.0
    build_timeout_seconds: float = 900.0
    # The same requirements resolved this recently reuse that lock: as long as uv's own
    # cache of PyPI's index pages lives (their max-age), so a reuse sees what uv would see.
    resolve_reuse_seconds: float = 600.0


def load_environments(
    environ: Mapping[str, str], raw: Mapping[str, Any] | None, home: Path
) -> EnvironmentsConfig:
    raw = dict(raw or {})
    directory_text = environ.get("CHIDORI_ENVS_DIR") or raw.get("directory")
    directory = Path(directory_text).resolve() if directory_text else home / "envs"
    cache_text = environ.get("CHIDORI_UV_CACHE_DIR") or raw.get("uv_cache_dir")
    cache = Path(cache_text).resolve() if cache_text else directory / ".uv-cache"
    index = str(environ.get("CHIDORI_PIP_INDEX_URL") or raw.get("index_url") or DEFAULT_INDEX_URL)
    extra_raw: Any = environ.get("CHIDORI_PIP_EXTRA_INDEX_URLS") or raw.get("extra_index_urls")
    extra = (
        tuple(u for u in extra_raw.split() if u)
        if isinstance(extra_raw, str)
        else tuple(str(u) for u in extra_raw or ())
    )
    budget_raw = environ.get("CHIDORI_ENVS_BUDGET") or raw.get("budget")
    budget = None
    if budget_raw not in (None, ""):
        try:
            budget = parse_size_bytes(str(budget_raw))
        except ValueError as exc:
            from chidori.config import ConfigError  # the package's, defined after this import

            raise ConfigError(
                f"environments budget (CHIDORI_ENVS_BUDGET) must be a size such as 10g, "
                f"not {budget_raw!r}"
            ) from exc
    return EnvironmentsConfig(
        directory=directory,
        uv_cache_dir=cache,
        index_url=index,
        extra_index_urls=extra,
        budget_bytes=budget,
        resolve_timeout_seconds=float(raw.get("resolve_timeout_seconds", 300.0)),
        build_timeout_seconds=float(raw.get("build_timeout_seconds", 900.0)),
        resolve_reuse_seconds=float(
            environ.get("CHIDORI_ENVS_RESOLVE_REUSE_SECONDS")
            or raw.get("resolve_reuse_seconds", 600.0)
        ),
    )
