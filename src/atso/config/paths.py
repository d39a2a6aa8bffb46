"""The paths a config names: where each relative one resolves, and a "not found" that says both.

A path written in a config file resolves against that file's folder, so a config travels with its
data; a path given on the command line (``--set``) resolves against the current folder, as any shell
path does. Each resolved path remembers how it was written, so a missing one is reported as
"'camvid' (in configs/c.yaml, relative to configs/) is /home/me/configs/camvid: not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SOURCE_PATH_KEYS = ("root", "images", "masks", "list")
# Checked before a run starts; a description file and a backbone have their own "not found" lines.
MUST_EXIST = {"root", "images", "masks", "list", "labeled_list", "pretrained"}


@dataclass(frozen=True)
class WrittenPath:
    """One path as the user wrote it, and where: the config file (``source``) or a ``--set`` option."""

    key: str
    written: str
    source: str
    base_dir: Path
    from_command_line: bool


def _yaml_file(value: Any) -> bool:
    return isinstance(value, str) and value.endswith((".yaml", ".yml"))


def path_fields(data: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], dict[str, Any], str]]:
    """Every path of a raw config: its dotted location, the mapping that holds it and its key there."""
    section = data.get("data")
    if isinstance(section, dict):
        test = section.get("test")
        sources = [(("data", "train"), section.get("train"))]
        sources += [(("data", "test", str(i)), t) for i, t in enumerate(test)] if isinstance(test, list) else [(("data", "test"), test)]
        sources += [(("data", "unlabeled", str(i)), s) for i, s in enumerate(section.get("unlabeled") or [])]
        for where, source in sources:
            if isinstance(source, dict):
                for key in SOURCE_PATH_KEYS + (("description",) if _yaml_file(source.get("description")) else ()):
                    yield where + (key,), source, key
        yield ("data", "labeled_list"), section, "labeled_list"
        if _yaml_file(section.get("description")):
            yield ("data", "description"), section, "description"
    model = data.get("model")
    if isinstance(model, dict):
        if isinstance(model.get("options"), dict):
            yield ("model", "options", "pretrained_backbone"), model["options"], "pretrained_backbone"
        yield ("model", "pretrained"), model, "pretrained"


def resolve_paths(
    data: dict[str, Any], base_dir: Path, source: str = "config", overrides: list[tuple[list[str], str]] = ()
) -> dict[str, WrittenPath]:
    """Make every relative path absolute, in place; return how each was written, by dotted key.

    Args:
        overrides: ``(key path, option text)`` of each ``--set``; a path one of them wrote (or whose
            section it replaced) resolves against the current folder instead of ``base_dir``.
    """
    written: dict[str, WrittenPath] = {}
    for where, mapping, key in path_fields(data):
        value = mapping.get(key)
        if not isinstance(value, str) or not value:
            continue
        option = next((text for path, text in reversed(list(overrides)) if tuple(where[: len(path)]) == tuple(path)), None)
        base = Path.cwd() if option is not None else base_dir
        dotted = ".".join(where)
        written[dotted] = WrittenPath(dotted, value, f"--set {option}" if option else source, base, option is not None)
        if not Path(value).expanduser().is_absolute():
            mapping[key] = str((base / Path(value).expanduser()).resolve())
        elif value.startswith("~"):
            mapping[key] = str(Path(value).expanduser())
    return written


def missing_path_message(entry: WrittenPath, resolved: str) -> str:
    """One line for a path that does not exist: as written, where written, and what it resolved to."""
    if Path(entry.written).expanduser().is_absolute():
        return f"{entry.source}: {entry.key}: {resolved} not found; fix the path"
    against = "the current folder" if entry.from_command_line else "the config file's folder"
    return (
        f"{entry.source}: {entry.key}: '{entry.written}' resolves to {resolved} (relative to {against}, "
        f"{entry.base_dir}), which does not exist; fix it or write an absolute path"
    )
