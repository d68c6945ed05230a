"""Where each TOML key was written: key paths to FILE:LINE, for `config --show` and for
errors that point at the line to fix. tomllib gives values without positions, hence this."""

from __future__ import annotations

import re


class Origins:
    """Turns key paths, such as ("rules", "SNAP013", "max_age_days"), into FILE:LINE."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.lines = name, key_lines(text)

    def origin(self, path: tuple) -> str:
        for end in range(len(path), 0, -1):  # the key, else the nearest enclosing table
            if path[:end] in self.lines:
                return f"{self.name}:{self.lines[path[:end]]}"
        return self.name


def key_lines(text: str) -> dict[tuple, int]:
    """Where each key and table is declared. A light reading of TOML as people write it:
    [table], [[array of tables]] and key = value lines, dotted keys included."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    arrays: dict[tuple, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[["):
            name = tuple(_split_key(stripped[2:].split("]]", 1)[0]))
            arrays[name] = arrays.get(name, -1) + 1
            table = (*name, arrays[name])
            lines.setdefault(table, number)
        elif stripped.startswith("["):
            table = tuple(_split_key(stripped[1:].split("]", 1)[0]))
            lines.setdefault(table, number)
        elif "=" in stripped and not stripped.startswith("#"):
            key = tuple(_split_key(stripped.split("=", 1)[0]))
            for end in range(1, len(key) + 1):
                lines.setdefault((*table, *key[:end]), number)
    return lines


def _split_key(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', key)]
