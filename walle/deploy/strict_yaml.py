"""YAML for configuration files, refusing what ``yaml.safe_load`` accepts silently.

A duplicate key (``percentage: 5`` then ``percentage: 50``) keeps the last value without a
word; in a release policy that decides how many devices get a release. ``load_strict``
refuses it with the line of the repeated key.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice."""


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings refuse a repeated key."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            continue  # unhashable or odd keys: construct_mapping names the problem
        if key in seen:
            raise DuplicateKeyError(
                f"key {key!r} appears twice (lines {seen[key]} and {line}); write it once"
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_strict(text: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``; a repeated key raises."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
