"""The settings machinery under `meterread.config`: frozen pydantic models with unknown keys rejected, built from
mappings, YAML files and `key=value` overrides, with errors that name each bad key. Imports neither torch nor
pyarrow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and how to fix it."""


class TrainConfigError(ConfigError):
    """A training setting that cannot work."""


class Settings(BaseModel):
    """Frozen settings with unknown keys rejected; `from_mapping`/`from_yaml` raise `error` with readable text."""

    # YAML and `key=value` read 6.1 or 20261126 as numbers: a text setting takes them as written
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    kind: ClassVar[str] = "settings"  # names the settings in error messages ("unknown read setting(s)")
    error: ClassVar[type[ConfigError]] = ConfigError

    @classmethod
    def from_mapping(cls, values: Mapping):
        """Build from plain values (YAML, JSON, flow parameters). Raises `cls.error` naming each bad key."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as error:
            raise cls.error(readable(error, cls)) from None

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: Sequence[str] = (), **values: Any):
        """A YAML file (optional), then `values`, then `key=value` overrides (dotted keys reach into `model.`,
        `lora.`, `init_tiny.`; values parse as YAML: `lr=1e-4`, `tasks=[a, b]`)."""
        import yaml

        loaded = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
        if not isinstance(loaded, Mapping):
            raise cls.error(f"{path}: a settings file holds a mapping of key: value")
        merged = merged_settings(loaded, values)
        for override in overrides:
            key, sep, raw = override.partition("=")
            if not sep or not key.strip():
                raise cls.error(f"override {override!r} must look like key=value")
            set_dotted(merged, key.strip(), yaml.safe_load(raw))
        return cls.from_mapping(dates_as_text(merged))

    def replace(self, **changes: Any):
        """A copy with `changes`, checked like a new one."""
        return type(self).from_mapping({**self.model_dump(), **changes})


def merged_settings(base: Mapping, changes: Mapping) -> dict:
    """`base` with `changes` laid over it; nested mappings (`model:`) merge key by key instead of replacing."""
    merged = dict(base)
    for key, value in changes.items():
        inner = merged.get(key)
        both_mappings = isinstance(value, Mapping) and isinstance(inner, Mapping)
        merged[key] = merged_settings(inner, value) if both_mappings else value
    return merged


def dates_as_text(value: Any) -> Any:
    """YAML reads 2026-11-26 as a date; no setting is a date, so give such values back as the text they were."""
    if isinstance(value, Mapping):
        return {key: dates_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [dates_as_text(item) for item in value]
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def set_dotted(values: dict, key: str, value: Any) -> None:
    """`values[a][b] = value` for key `a.b` (copies nested mappings, so `values` shares nothing with its source)."""
    *parents, leaf = key.split(".")
    target = values
    for parent in parents:
        child = target.get(parent)
        if isinstance(child, BaseModel):
            child = child.model_dump()
        target[parent] = dict(child or {})
        target = target[parent]
    target[leaf] = value


def readable(error: ValidationError, settings: type[Settings]) -> str:
    """One line per problem: unknown keys with the known ones, else `key: what is wrong (got value)`."""
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        if problem["type"] == "extra_forbidden":
            owner = location[-2] if len(location) > 1 else settings.kind
            known = known_fields(settings, location[:-1])
            lines.append(f"unknown {owner} setting(s): {location[-1]}; known: {', '.join(known)}")
        else:
            lines.append(f"{'.'.join(location)}: {problem['msg']} (got {problem.get('input')!r})")
    return f"invalid {settings.kind} settings:\n  - " + "\n  - ".join(lines)


def known_fields(settings: type[BaseModel], path: Sequence[str]) -> list[str]:
    model = settings
    for part in path:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else model
    return sorted(model.model_fields)
