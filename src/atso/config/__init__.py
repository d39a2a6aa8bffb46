"""One typed, validated configuration: a YAML file plus ``--set key=value`` overrides.

The sections live in ``data``, ``training`` and ``runtime``; this module assembles them into
:class:`Config` and reads, overrides and checks a YAML file into one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from atso.config.base import Float, Int, _Section
from atso.config.data import MAX_INPUT_SIDE, VIEWS, DataConfig, SourceConfig, VolumeConfig, check_input_size
from atso.config.paths import MUST_EXIST, WrittenPath, missing_path_message, path_fields, resolve_paths
from atso.config.runtime import RuntimeConfig, check_device, is_device_name
from atso.config.training import (
    EvaluationConfig,
    ModelConfig,
    ReliabilityConfig,
    StrongAugmentationConfig,
    TeacherStudentConfig,
    TrainConfig,
)
from atso.errors import AtsoError

__all__ = [
    "MAX_INPUT_SIDE", "VIEWS", "Config", "DataConfig", "EvaluationConfig", "Float", "Int", "ModelConfig",
    "ReliabilityConfig", "RuntimeConfig", "SourceConfig", "StrongAugmentationConfig", "TeacherStudentConfig", "TrainConfig",
    "VolumeConfig", "apply_overrides", "check_device", "check_paths", "check_input_size", "config_from_dict", "dump_config",
    "is_device_name", "load_config", "parse_override", "read_text_file", "read_yaml",
]


class Config(_Section):
    """Everything a run needs; saved as ``config.yaml`` in every run directory."""

    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    teacher_student: TeacherStudentConfig = Field(default_factory=TeacherStudentConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    # How each path was written (file or --set, before resolving), for "not found" lines.
    _written_paths: dict[str, WrittenPath] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _snapshots_fit_the_schedules(self) -> "Config":
        reliability, train = self.teacher_student.reliability, self.train
        shortest = min(train.iterations, train.student_iterations or train.iterations)
        if reliability.enabled and shortest <= reliability.snapshots:
            raise ValueError(
                f"teacher_student.reliability keeps {reliability.snapshots} earlier checkpoints of each model, so every "
                f"model needs more iterations than that (the shortest trains {shortest}); lower "
                "teacher_student.reliability.snapshots or raise train.iterations / train.student_iterations"
            )
        return self

    def __eq__(self, other: object) -> bool:
        """Equal settings; how a path was written (kept for error messages) does not count."""
        if not isinstance(other, Config):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-safe dict of the resolved config."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A hash of everything that changes results (all but ``runtime``)."""
        data = self.to_dict()
        data.pop("runtime", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _describe_error(exc: ValidationError, source: str, options: list[tuple[list[str], str]] = ()) -> AtsoError:
    errors = exc.errors()
    first = errors[0]
    # A field that takes one of several shapes (``data.test``: a source or a list) tags its errors
    # with the shape tried, e.g. 'function-after[_one_layout(), SourceConfig]'. The deepest error is
    # the shape the user meant (a list item's bad key, not "not a mapping"); the key is without the tag.
    tagged = [error for error in errors if any(_is_shape_tag(part) for part in error["loc"])]
    if first in tagged:
        first = max(tagged, key=lambda error: len(error["loc"]))
    loc = tuple(part for part in first["loc"] if not _is_shape_tag(part))
    first = {**first, "loc": loc}
    key = ".".join(str(part) for part in loc)
    source = _source_of(loc, source, options)
    if first["type"] == "extra_forbidden":
        parent = _section_for(first["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else "see the docs"
        return AtsoError(f"{source}: unknown key '{key}'; allowed keys here: {allowed}")
    if first["type"] == "missing" and loc and isinstance(loc[-1], int):  # [72] for a pair
        pair = ".".join(str(part) for part in loc[:-1])
        return AtsoError(f"{source}: '{pair}': too few values" + _pair_hint(first, loc))
    if first["type"] == "missing":
        return AtsoError(f"{source}: missing key '{key}'")
    message = first["msg"].replace("Value error, ", "")
    if first["type"] == "finite_number":
        message += f", not {first['input']}; .inf and .nan are not settings"
    if first["type"] in ("tuple_type", "too_short", "too_long"):
        message += _pair_hint(first, loc)
    if not key:  # a check across sections (its message names the keys)
        return AtsoError(f"{source}: {message}")
    return AtsoError(f"{source}: '{key}': {message}")


def _source_of(loc: tuple, source: str, options: list[tuple[list[str], str]]) -> str:
    """The ``--set`` option that wrote the bad key (or the section above it), else the config file."""
    parts = [str(part) for part in loc]
    for path, text in reversed(list(options)):
        if parts[: len(path)] == path or path[: len(parts)] == parts:
            return f"--set {text}"
    return source


def _pair_hint(error: dict[str, Any], loc: tuple) -> str:
    """How to write a pair such as ``input_size``: a YAML list, ``[72,96]`` (``72,96`` is one string)."""
    if loc and isinstance(loc[-1], int):  # 'data.input_size.1' missing: the pair itself is short
        loc = loc[:-1]
    section = _section_for(loc[:-1]) if loc else None
    field = section.model_fields.get(str(loc[-1])) if section is not None and loc else None
    if field is None or "tuple" not in str(field.annotation):
        return ""
    given = error.get("input")
    if isinstance(given, str) and given.replace(",", "").replace(".", "").replace(" ", "").isdigit():
        example = "[" + ",".join(part.strip() for part in given.split(",")) + "]"
    elif isinstance(field.default, tuple):
        example = "[" + ",".join(str(v) for v in field.default) + "]"
    else:
        example = "[72,96]"
    return f"; write two numbers as a list, e.g. {'.'.join(str(p) for p in loc)}={example}"


def _is_shape_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part == "SourceConfig")


def _section_for(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in candidates:
            inner = [candidate, *getattr(candidate, "__args__", ())]
            found = next((c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found is not None:
                model = found
                break
        else:
            return None
    return model


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice; PyYAML would silently keep the last (a whole section lost)."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key '{key}' (line {line})")
        self.key, self.line = key, line


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data, no code), with duplicate keys an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader says so itself
                continue
            if duplicate and key != "<<":
                raise DuplicateKeyError(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def read_text_file(path: str | Path, what: str) -> str:
    """A text file as UTF-8, or one line naming the file and the fix (a Latin-1 list file, a binary file).

    Raises:
        AtsoError: the file cannot be read or is not UTF-8.
    """
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AtsoError(
            f"{path}: {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise AtsoError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc


def read_yaml(path: str | Path, what: str = "config", text: str | None = None) -> Any:
    """Parse a UTF-8 YAML file with plain data only and unique keys.

    Raises:
        AtsoError: not UTF-8, not YAML, or a key given twice (the line names the key and its line).
    """
    text = read_text_file(path, what) if text is None else text
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise AtsoError(
            f"{path}: duplicate key '{exc.key}' at line {exc.line}; give each key once (the second would replace the first)"
        ) from exc
    except yaml.YAMLError as exc:
        raise AtsoError(f"{path}: not valid YAML ({exc.__class__.__name__}); check indentation and quoting") from exc


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into the key path and a YAML-parsed value."""
    if "=" not in text:
        raise AtsoError(f"--set {text}: expected key=value, e.g. --set train.iterations=200")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise AtsoError(f"--set {text}: empty key")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise AtsoError(f"--set {text}: duplicate key '{exc.key}'; give each key once") from exc
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a raw config mapping; a number indexes a list (``data.unlabeled.0.root``)."""
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise AtsoError(f"--set {text}: '{part}' is not an index of that list (0..{len(node) - 1})")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise AtsoError(f"--set {text}: '{path[depth - 1]}' is not a section")
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return data


def config_from_dict(
    data: dict[str, Any], source: str = "config", base_dir: Path | None = None, overrides: list[str] | None = None
) -> Config:
    """Validate a raw mapping into a :class:`Config`; relative paths resolve against ``base_dir``.

    Args:
        overrides: the ``--set`` options already applied to ``data``: their paths resolve against the
            current folder, and an error in a key they set names the option, not ``source``.
    """
    if not isinstance(data, dict):
        raise AtsoError(f"{source}: expected a mapping of sections (data, model, train, ...)")
    data = json.loads(json.dumps(data, default=str))
    options = [(parse_override(text)[0], text) for text in overrides or []]
    written = resolve_paths(data, base_dir or Path.cwd(), source, options)
    try:
        config = Config(**data)
    except ValidationError as exc:
        raise _describe_error(exc, source, options) from exc
    config._written_paths = written
    return config


def check_paths(config: Config) -> None:
    """Refuse a config whose data folders, list files or pretrained model do not exist, before any work.

    Raises:
        AtsoError: one line with the path as written, where it was written and what it resolved to.
    """
    values = config.to_dict()
    for where, mapping, key in path_fields(values):
        resolved = mapping.get(key)
        if key not in MUST_EXIST or not isinstance(resolved, str) or Path(resolved).exists():
            continue
        dotted = ".".join(where)
        entry = config._written_paths.get(dotted) or WrittenPath(dotted, resolved, "config", Path.cwd(), False)
        raise AtsoError(missing_path_message(entry, resolved))


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``--set`` overrides and validate.

    Raises:
        AtsoError: missing file, bad YAML, unknown key or bad value (the message names the key).
    """
    path = Path(path)
    if not path.is_file():
        raise AtsoError(f"{path}: config file not found")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise AtsoError(f"{path}: expected a mapping of sections (data, model, train, ...)")
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data, source=str(path), base_dir=path.parent.resolve(), overrides=overrides)


def dump_config(config: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
