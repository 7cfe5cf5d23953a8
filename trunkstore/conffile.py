"""FastDFS-style ``key = value`` configuration files, and the value syntaxes they use.

Shared by every component's configuration object: ``#`` starts a comment line, keys may repeat
(``tracker_server``), and sizes are written ``64MB`` / ``256K`` / ``1G`` or as a percentage.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from trunkstore.errors import ConfigError

_SIZE_RE = re.compile(r"\s*(\d+)\s*([KMGT]?)B?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_conf_text(text: str, source: str = "<config>") -> dict[str, list[str]]:
    """Parse ``key = value`` lines into ``{key: [values in order]}``."""
    values: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{source}:{number}: expected 'key = value', got {raw!r}")
        values.setdefault(key, []).append(value.strip())
    return values


def read_conf(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {os.fspath(path)!r}: {exc.strerror}") from exc
    return parse_conf_text(text, os.fspath(path))


def parse_size(text: str, key: str = "size") -> int:
    """``"64MB"`` -> 67108864.  A bare number is bytes."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ConfigError(f"{key}: {text!r} is not a size (examples: 4096, 256K, 64MB, 1G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_bool(text: str, key: str = "flag") -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{key}: {text!r} is not a boolean (true/false)")


def parse_int(text: str, key: str = "number") -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not a whole number") from None


def parse_float(text: str, key: str = "number") -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not a number") from None


def single(values: Mapping[str, list[str]], key: str) -> str | None:
    """The last value given for ``key`` (FastDFS lets a later line override an earlier one)."""
    found = values.get(key)
    return found[-1] if found else None
