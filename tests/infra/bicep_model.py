"""A small reading layer over pycep-parser's JSON of a Bicep file, for the infra tests.

pycep writes a reference to a symbol (``scope: storage``) and a string literal
(``principalType: 'ServicePrincipal'``) alike, as a plain string; expressions are nested
``{"function": ...}`` / ``{"operator": ...}`` objects; interpolated strings keep their
``${...}`` text. The tests know which one they expect at each place, and :meth:`BicepFile.resolve`
turns references to variables into the values they hold::

    main = BicepFile.of(parsed["infra/resources.bicep"])
    assignment = main.resource("storageBlobDataOwner")
    assignment.type                                     # 'Microsoft.Authorization/roleAssignments'
    main.resolve(assignment.get("properties", "roleDefinitionId"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    #: The deployment condition (``resource x ... = if (...)``), or None.
    condition: Any
    #: The resource's body: name, scope, parent, properties, ...
    body: dict[str, Any]

    def get(self, *path: str) -> Any:
        """The value at ``path`` in the body, or None when any step is missing."""
        node: Any = self.body
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


@dataclass(frozen=True)
class BicepFile:
    path: str
    data: dict[str, Any]

    @classmethod
    def of(cls, path: str, data: dict[str, Any]) -> BicepFile:
        return cls(path, data)

    @property
    def parameters(self) -> dict[str, Any]:
        return self.data.get("parameters") or {}

    @property
    def variables(self) -> dict[str, Any]:
        return {name: var["value"] for name, var in (self.data.get("variables") or {}).items()}

    @property
    def outputs(self) -> dict[str, Any]:
        return self.data.get("outputs") or {}

    @property
    def modules(self) -> dict[str, Any]:
        return self.data.get("modules") or {}

    def resources(self, type_: str | None = None) -> list[Resource]:
        found = []
        for symbol, raw in (self.data.get("resources") or {}).items():
            config = raw["config"]
            condition = None
            if "condition" in config and isinstance(config.get("config"), dict):
                condition, config = config["condition"], config["config"]
            resource = Resource(symbol, raw["type"], raw["api_version"], raw["existing"], condition, config)
            if type_ is None or resource.type.lower() == type_.lower():
                found.append(resource)
        return found

    def resource(self, symbol: str) -> Resource:
        for resource in self.resources():
            if resource.symbol == symbol:
                return resource
        raise KeyError(f"{self.path} declares no resource {symbol!r}")

    def resolve(self, value: Any) -> Any:
        """``value`` with references to variables replaced by what they hold.

        Resolves a bare variable name, ``variable.key`` on an object variable, and
        ``${variable}`` inside an interpolated string; anything else comes back unchanged.
        """
        variables = self.variables
        if isinstance(value, str):
            if value in variables:
                return self.resolve(variables[value])

            def substitute(match: re.Match[str]) -> str:
                resolved = variables.get(match.group(1))
                return resolved if isinstance(resolved, str) else match.group(0)

            return _INTERPOLATION.sub(substitute, value)
        if isinstance(value, dict) and "operator" in value:
            operator = value["operator"]
            if operator.get("type") == "property_accessor":
                owner, key = operator["operands"]["operand_1"], operator["operands"]["operand_2"]
                if isinstance(owner, str) and isinstance(key, str) and isinstance(variables.get(owner), dict):
                    return self.resolve(variables[owner].get(key, value))
        return value


def accessor(symbol: str, *attributes: str) -> dict[str, Any]:
    """How pycep writes ``symbol.a.b``: the parsed form of a property access, to compare with."""
    tail: Any = attributes[-1]
    for attribute in reversed(attributes[:-1]):
        tail = {"operator": {"type": "property_accessor", "operands": {"operand_1": attribute, "operand_2": tail}}}
    return {"operator": {"type": "property_accessor", "operands": {"operand_1": symbol, "operand_2": tail}}}


def text_of(node: Any) -> str:
    """Every string in an expression tree, keys and values, as one text (for "contains nothing like")."""
    return json.dumps(node, sort_keys=True)


def walk(node: Any) -> Iterator[Any]:
    """Every node of an expression tree, depth first."""
    yield node
    if isinstance(node, dict):
        for child in node.values():
            yield from walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk(child)


def app_settings(function_app: Resource) -> dict[str, Any]:
    """The function app's settings as name -> value expression."""
    settings = function_app.get("properties", "siteConfig", "appSettings") or []
    return {setting["name"]: setting["value"] for setting in settings}
