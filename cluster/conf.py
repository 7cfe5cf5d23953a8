"""Loading a component's configuration object from a FastDFS-style ``key = value`` file.

Each component (tracker, storage, client) declares a schema: FastDFS key name -> (field of its frozen
config dataclass, converter).  :func:`load_settings` converts every known key, refuses a bad value
with a :class:`~cluster.errors.ConfigError` naming the file, key and value, and returns the keys it
does not know as warnings, so that a typo is reported rather than silently ignored.  Keys that
FastDFS defines but trunkstore has no use for (log levels, thread counts ...) can be listed as
``ignored`` to keep existing FastDFS files quiet.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cluster.errors import ConfigError
from cluster.protocol import Address
from trunkstore import conffile
from trunkstore.errors import TrunkstoreError

Converter = Callable[[str, str], Any]
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class ConfKey:
    """How one configuration key maps onto a config field."""

    field: str
    convert: Converter
    #: The key may be given several times (``tracker_server``): the field gets a tuple of all values.
    repeated: bool = False


def as_str(text: str, key: str) -> str:
    return text


def as_int(text: str, key: str) -> int:
    return _wrap(conffile.parse_int, text, key)


def as_size(text: str, key: str) -> int:
    return _wrap(conffile.parse_size, text, key)


def as_bool(text: str, key: str) -> bool:
    return _wrap(conffile.parse_bool, text, key)


def as_float(text: str, key: str) -> float:
    return _wrap(conffile.parse_float, text, key)


def as_seconds(text: str, key: str) -> float:
    """A duration in seconds: ``30``, ``1.5``, or with a unit ``500ms``, ``30s``, ``2m``, ``1h``."""
    stripped = text.strip().lower()
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if stripped.endswith(unit):
            return as_float(stripped[: -len(unit)], key) * scale
    return as_float(stripped, key)


def parse_address(text: str, default_port: int, key: str = "address") -> Address:
    """``host:port`` (or a bare ``host``) as an :class:`Address`; an IPv6 address in brackets,
    ``[::1]:22122`` or ``[::1]``, as in FastDFS's conf files."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else ""
        if end <= 1 or (rest and not rest.startswith(":")):
            raise ConfigError(f"{key}: {text!r} is not [ipv6]:port")
        host, port_text = text[1:end], rest[1:] if rest else str(default_port)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = port_text, str(default_port)
        elif ":" in host:
            raise ConfigError(f"{key}: {text!r}: write an IPv6 address in brackets, [address]:port")
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"{key}: {text!r} is not host:port")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{key}: {text!r} has a bad port") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{key}: port {port} out of range 1 .. 65535")
    return Address(host, port)


def load_settings(
    values: Mapping[str, list[str]],
    schema: Mapping[str, ConfKey],
    *,
    ignored: frozenset[str] = frozenset(),
    source: str = "<config>",
) -> tuple[dict[str, Any], list[str]]:
    """Config-object keyword arguments from parsed ``values``, and warnings about unknown keys."""
    settings: dict[str, Any] = {}
    warnings: list[str] = []
    for key, texts in values.items():
        spec = schema.get(key)
        if spec is None:
            if key not in ignored:
                warnings.append(f"{source}: unknown setting {key!r} ignored")
            continue
        try:
            if spec.repeated:
                settings[spec.field] = tuple(spec.convert(text, key) for text in texts)
            else:
                settings[spec.field] = spec.convert(texts[-1], key)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return settings, warnings


def read_conf_file(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Parse a configuration file; an unreadable or malformed one is a :class:`ConfigError`."""
    return _wrap(lambda p, _key: conffile.read_conf(p), os.fspath(path), "file")


def _wrap(parse: Callable[[str, str], V], text: str, key: str) -> V:
    try:
        return parse(text, key)
    except TrunkstoreError as exc:
        raise ConfigError(str(exc)) from None
