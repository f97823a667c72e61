"""YAML with line numbers: every key and item of a sign file knows its line, so that every problem
is reported as ``file:line: message``, all at once."""
from __future__ import annotations

import string
import warnings
from pathlib import Path
from typing import Any, Iterable

import yaml

from .schema import SignFileError, SignFileWarning


#: the largest sign or template file read (the shipped ones are < 100 kB)
MAX_BYTES = 2 << 20


class _AliasError(Exception):
    def __init__(self, line: int):
        self.line = line


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader that stops at the first alias: a few lines of nested aliases expand to billions
    of items (a "billion laughs"), and the shipped files use none."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _AliasError(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)


def read_text(path: Path) -> str:
    """The text of a sign or template file: a regular file of at most :data:`MAX_BYTES`, UTF-8; anything else
    (a folder, a device such as ``/dev/zero``, a huge or binary file) is a :class:`~sdmad_lite.signs.schema.SignFileError`."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise SignFileError(f"{path} is {what}, not a sign file; give the path of a YAML file or a bank name "
                            "(sdmad signs list)")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SignFileError(f"{path}: cannot be read ({e.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise SignFileError(f"{path}: over {MAX_BYTES >> 20} MB, not a sign file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SignFileError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None


class YamlDoc:
    """A YAML file parsed into plain Python data, with the line of every key and item."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lines: dict[tuple, int] = {}
        self.duplicates: list[str] = []  # "file:line: duplicate key ..." 
        loader = _NoAliasLoader(read_text(self.path))
        try:
            node = loader.get_single_node()
            self.data = None if node is None else loader.construct_document(node)
            if node is not None:
                self._walk(node, ())
        except _AliasError as e:
            raise SignFileError(f"{self.path}:{e.line}: aliases (*name) are not allowed in a sign file; write the "
                                "values out") from None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise SignFileError(f"{self.path}:{line}: YAML syntax error: {e.problem or e}") from None
        except RecursionError:
            raise SignFileError(f"{self.path}: nested too deeply to be a sign file") from None
        except ValueError as e:  # e.g. an integer of thousands of digits
            raise SignFileError(f"{self.path}: a value cannot be read ({str(e)[:80]}); is this a sign file?") from None
        finally:
            loader.dispose()

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                line = k.start_mark.line + 1
                if key in first:
                    self.duplicates.append(f"{self.path}:{line}: duplicate key {key!r} (first at line {first[key]})")
                    continue
                first[key] = line
                self.lines[path + (key,)] = line
                self._walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, path + (i,))

    def line(self, *path: Any) -> int:
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def where(self, *path: Any) -> str:
        return f"{self.path}:{self.line(*path)}"


class Problems:
    """The errors and warnings found in sign files, each as ``file:line: message``."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, doc: YamlDoc, path: tuple, msg: str) -> None:
        self.errors.append(f"{doc.where(*path)}: {msg}")

    def warn(self, doc: YamlDoc, path: tuple, msg: str) -> None:
        self.warnings.append(f"{doc.where(*path)}: {msg}")

    def check_mapping(self, doc: YamlDoc, path: tuple, value: Any, required: Iterable[str], allowed: Iterable[str]) -> bool:
        what = "the file" if not path else repr(path[-1])
        if not isinstance(value, dict):
            self.error(doc, path, f"{what} must be a mapping, got {type(value).__name__}")
            return False
        allowed = set(allowed) | set(required)
        for k in value:
            if k not in allowed:
                self.error(doc, path + (k,), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
        for k in required:
            if k not in value:
                self.error(doc, path, f"missing key {k!r}")
        return True

    def check_str(self, doc: YamlDoc, path: tuple, value: Any, what: str) -> bool:
        if not isinstance(value, str) or not value.strip():
            self.error(doc, path, f"{what} must be a non-empty string, got {value!r}")
            return False
        return True

    def check_list(self, doc: YamlDoc, path: tuple, value: Any, what: str) -> bool:
        if not isinstance(value, list) or not value:
            self.error(doc, path, f"{what} must be a non-empty list")
            return False
        return True

    def raise_if_any(self, what: str) -> None:
        if self.errors:
            n = len(self.errors)
            raise SignFileError(f"{n} problem{'s' * (n > 1)} in {what}:\n  " + "\n  ".join(self.errors))

    def emit_warnings(self) -> None:
        for w in self.warnings:
            warnings.warn(w, SignFileWarning, stacklevel=4)



def template_fields(template: str) -> set[str]:
    """The ``{placeholders}`` of a format string."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def normalized(text: str) -> str:
    """Lower case, single spaces: the form in which two sign texts are compared."""
    return " ".join(text.lower().split())
