"""Typed, validated settings from TOML: one loader for the agent, the collector, the site
registry and every service after them.

A configuration is declared, not checked by hand: a root dataclass whose fields are the
sections (``[meter]``, ``[mqtt]`` …), each section a frozen dataclass whose fields are its
keys, each key declared with :func:`setting` (default, unit, range, choices, whether it is a
path or names a password file, and the names it had before). :func:`load` reads the file and
:func:`from_mapping` turns the parsed TOML into those dataclasses, refusing unknown sections
and keys, missing required keys, wrong types and values out of range, with one error type,
:class:`ConfigError`, whose text names the file, the section and the key and says what to do.
Cross-key rules (``give pa_per_unit or calibration_store, not both``) stay in the module that
owns the configuration, as a function over the typed result raising :class:`ConfigError`.

Why stdlib dataclasses and not a validation library: the edge device installs numpy, scipy,
sounddevice, soundfile and paho-mqtt and nothing more (ARCHITECTURE.md); pydantic would add a
compiled dependency of several MB to every meter for what 200 lines do here, and the error
texts (file, section, key, what to do) are ours to word.

Units: every key whose value has a unit ends in it: ``_s`` seconds, ``_db`` dB, ``_hz`` Hz,
``_per_s`` per second. A key renamed for that reason is still read under its old name (with a
warning naming the new one), scaled where the unit changed (``batch_ms`` → ``batch_s``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["REQUIRED", "ConfigError", "Section", "from_mapping", "load", "load_toml",
           "setting"]

log = logging.getLogger("tingbao.settings")

REQUIRED: typing.Any = object()
"""Default of a key that must be given."""


class ConfigError(ValueError):
    """A configuration that cannot be used. The text names the file, the table entry and the
    key at fault and what to do; ``file``, ``entry`` and ``key`` hold them separately (each
    may be None)."""

    def __init__(self, message: str, *, file: str | os.PathLike | None = None,
                 entry: str | None = None, key: str | None = None):
        self.file = None if file is None else str(file)
        self.entry, self.key, self.detail = entry, key, message
        super().__init__(_where(self.file, entry, key, message))

    def in_file(self, file: str | os.PathLike) -> ConfigError:
        """The same error, located in ``file`` (unless it already names one)."""
        if self.file is not None:
            return self
        return ConfigError(self.detail, file=file, entry=self.entry, key=self.key)


def _where(file, entry, key, message: str) -> str:
    """``file: [entry] key = value: what`` (the parts that are known)."""
    text = message
    if entry is not None:
        where = entry if entry.startswith("[") else f"[{entry}]"
        if key is None:
            text = f"{where} {message}"
        elif message.startswith("="):
            text = f"{where} {key} {message}"
        else:
            text = f"{where} {key}: {message}"
    return text if file is None else f"{file}: {text}"


def setting(default=REQUIRED, *, unit: str | None = None, lo: float | None = None,
            hi: float | None = None, choices: tuple | None = None,
            check: Callable | None = None, path: bool = False, password_into: str | None = None,
            renamed_from: Mapping[str, float] | None = None, internal: bool = False,
            doc: str = ""):
    """Declare one key of a section.

    Args:
        default: the value when the key is absent; :data:`REQUIRED` if it must be given.
        unit: the unit of the value (``s``, ``dB``, ``Hz`` …), for error texts and docs.
        lo, hi: inclusive range of a number.
        choices: the allowed values.
        check: ``f(value) -> value`` raising ValueError with a text for other rules (ids,
            URLs …); its return value is stored.
        path: the value is a file or folder path, made absolute against the config file's
            folder (``~`` expanded).
        password_into: the value names a file holding a password; the loader reads it (first
            line, without its line end; refused when empty or unreadable) into the field of
            that name.
        renamed_from: old key names still read, each with the factor its value is multiplied
            by (``{"batch_ms": 1e-3}``).
        internal: filled by the loader (e.g. the password), never read from TOML.
    """
    meta = {"unit": unit, "lo": lo, "hi": hi, "choices": choices, "check": check,
            "path": path, "password_into": password_into,
            "renamed_from": dict(renamed_from or {}), "internal": internal, "doc": doc}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple for a sequence default")
    return dataclasses.field(default=default, metadata=meta)


class Section:
    """Base of a settings section: attribute access, plus ``section["key"]`` for code that
    reads settings like the dicts they were parsed from."""

    def __getitem__(self, key: str):
        if key.startswith("_") or key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


# --------------------------------------------------------------------------------- loading
def load_toml(path: str | os.PathLike, what: str = "configuration") -> dict:
    """Parse a TOML file; :class:`ConfigError` when it cannot be read or is not TOML."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no such {what} file (create it from the example in configs/)",
                          file=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read the {what} file: {e.strerror or e}", file=path) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML ({e}); fix the syntax at that line",
                          file=path) from None


def load(cls: type, path: str | os.PathLike, what: str = "configuration"):
    """Read ``path`` into the root settings class ``cls`` (see :func:`from_mapping`); paths in
    it are taken relative to the file's folder. Errors name the file."""
    path = Path(path)
    data = load_toml(path, what)
    try:
        return from_mapping(cls, data, base_dir=path.parent)
    except ConfigError as e:
        raise e.in_file(path) from None


def from_mapping(cls: type, data, *, base_dir: str | os.PathLike | None = None):
    """Build the root settings dataclass ``cls`` from parsed TOML ``data``: each field of
    ``cls`` is a section (a dataclass, read from the table of the same name; absent tables
    take their defaults). Raises :class:`ConfigError` naming section and key."""
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a table of sections")
    hints = typing.get_type_hints(cls)
    sections = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; known: "
                          f"{', '.join(f'[{s}]' for s in sections)}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    values = {}
    for name in sections:
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {table!r}")
        values[name] = section_from_mapping(hints[name], table, name, base)
    return cls(**values)


def section_from_mapping(cls: type, table: Mapping, name: str, base: Path):
    """One section (or one entry of an array of tables, ``name`` like ``meters[3]``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    aliases = {old: (f.name, factor) for f in fields.values()
               for old, factor in f.metadata.get("renamed_from", {}).items()}
    bad = set(table) - set(fields) - set(aliases)
    if bad:
        raise ConfigError(f"has unknown key(s) {sorted(bad)}; known: {', '.join(fields)}",
                          entry=name)
    given = {}
    for key, value in table.items():
        if key in aliases:
            new, factor = aliases[key]
            if new in table:
                raise ConfigError(f"give {new} only ({key} is its old name)", entry=name,
                                  key=key)
            log.warning("[%s] %s is now %s%s; rename it", name, key, new,
                        "" if factor == 1 else f" (value × {factor:g})")
            if factor != 1 and isinstance(value, int | float) and not isinstance(value, bool):
                value = value * factor
            key = new
        given[key] = value
    out = {}
    for key, f in fields.items():
        meta = f.metadata
        if key not in given:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key} is required", entry=name)
            continue
        out[key] = _convert(given[key], hints[key], meta, name, key, base)
        if meta.get("password_into") and out[key] is not None:
            out[meta["password_into"]] = read_password(out[key], name, key)
    try:
        return cls(**out)
    except ConfigError as e:  # a rule across keys (__post_init__): say which table
        if e.entry is not None:
            raise
        raise ConfigError(e.detail, file=e.file, entry=name, key=e.key) from None


def read_password(path: str, entry: str, key: str) -> str:
    """The password in file ``path`` (its first line without the line end)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: cannot read password file: no such file", entry=entry,
                          key=key) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read password file: {e.strerror or e}",
                          entry=entry, key=key) from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"password file {path} is empty", entry=entry, key=key)
    return password


def _type_name(t) -> str:
    return getattr(t, "__name__", str(t))


def _convert(value, hint, meta: dict, entry: str, key: str, base: Path):
    """Check ``value`` against the annotation ``hint`` and the key's declaration."""
    given = value

    def fail(text: str) -> ConfigError:
        return ConfigError(f"= {given!r}: {text}", entry=entry, key=key)

    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    accepted = [t for t in options if t is not type(None)]
    nested = _nested(value, accepted, entry, key, base)
    if nested is not None:
        return nested
    converted, matched = None, False
    for t in accepted:
        ok, v = _as_type(value, t)
        if ok:
            converted, matched = v, True
            break
    if not matched:
        want = " or ".join(_type_name(typing.get_origin(t) or t) for t in accepted)
        raise fail(f"expected {want}")
    value = converted
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise fail(f"one of {', '.join(map(str, meta['choices']))}")
    lo, hi, unit = meta.get("lo"), meta.get("hi"), meta.get("unit")
    nums = value if isinstance(value, tuple) else (value,)
    for x in nums:
        if isinstance(x, float) and not math.isfinite(x):
            raise fail("must be a finite number")
        if isinstance(x, int | float) and not isinstance(x, bool):
            if (lo is not None and x < lo) or (hi is not None and x > hi):
                rng = (f"in {lo:g}..{hi:g}" if lo is not None and hi is not None
                       else f"≥ {lo:g}" if lo is not None else f"≤ {hi:g}")
                raise fail(f"must be {rng}{f' {unit}' if unit else ''}")
    if meta.get("check") is not None:
        try:
            value = meta["check"](value)
        except ValueError as e:
            raise fail(str(e)) from None
    if meta.get("path") and isinstance(value, str):
        if not value:
            return None
        value = str((base / os.path.expanduser(value)).resolve())
    return value


def _nested(value, accepted: list, entry: str, key: str, base: Path):
    """A sub-table (a dataclass) or an array of sub-tables (``tuple[Dataclass, ...]``) read
    with the same rules; None when the annotation holds neither."""
    for t in accepted:
        if dataclasses.is_dataclass(t):
            if not isinstance(value, Mapping):
                raise ConfigError(f"= {value!r}: expected a table {{ … }}", entry=entry,
                                  key=key)
            return section_from_mapping(t, value, f"{entry} {key}", base)
        args = typing.get_args(t)
        if typing.get_origin(t) in (tuple, list) and args and dataclasses.is_dataclass(args[0]):
            if not isinstance(value, list):
                raise ConfigError(f"= {value!r}: expected an array of tables [{{ … }}, …]",
                                  entry=entry, key=key)
            return tuple(section_from_mapping(args[0], v, f"{entry} {key}[{i}]", base)
                         if isinstance(v, Mapping) else _not_table(v, entry, f"{key}[{i}]")
                         for i, v in enumerate(value))
    return None


def _not_table(value, entry: str, key: str):
    raise ConfigError(f"= {value!r}: expected a table {{ … }}", entry=entry, key=key)


def _as_type(value, t) -> tuple[bool, object]:
    """(accepted, converted value) of ``value`` for one annotation option ``t``."""
    origin = typing.get_origin(t)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False, None
        (inner, *_) = typing.get_args(t) or (object,)
        out = []
        for x in value:
            ok, v = _as_type(x, inner)
            if not ok:
                return False, None
            out.append(v)
        return True, tuple(out)
    if t is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, None
    if t is float:
        return (True, float(value)) if isinstance(value, int | float) else (False, None)
    if t is int:
        return isinstance(value, int), value
    if t is str:
        return isinstance(value, str), value
    if t is dt.datetime:
        if isinstance(value, dt.datetime):
            return True, value
        if isinstance(value, str):
            try:
                return True, dt.datetime.fromisoformat(value)
            except ValueError:
                return False, None
        return False, None
    if t is dt.date:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return True, value
        if isinstance(value, str):
            try:
                return True, dt.date.fromisoformat(value)
            except ValueError:
                return False, None
        return False, None
    if t is object or t is typing.Any:
        return True, value
    return isinstance(value, t), value
