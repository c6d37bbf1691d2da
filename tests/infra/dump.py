"""Print files parsed as one JSON object, keyed by path; run by the infra tools' Python.

    $INFRA_TOOLS_BIN/python tests/infra/dump.py bicep infra/main.bicep ...   (pycep-parser)
    $INFRA_TOOLS_BIN/python tests/infra/dump.py yaml azure.yaml ...          (PyYAML, a checkov dependency)

The tests run in the app's virtual environment, which has neither parser: they read
this script's output. A file that does not parse ends the script with an error naming it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _parse_bicep(paths: list[str]) -> dict[str, object]:
    from pycep import BicepParser

    parser = BicepParser()
    parsed: dict[str, object] = {}
    for path in paths:
        try:
            parsed[path] = parser.parse(file_path=Path(path))
        except Exception as error:  # lark raises many types; name the file either way
            raise SystemExit(f"{path}: not valid Bicep for pycep-parser: {type(error).__name__}: {error}") from None
    return parsed


def _parse_yaml(paths: list[str]) -> dict[str, object]:
    import yaml

    parsed: dict[str, object] = {}
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
        # YAML 1.1 reads a workflow's `on:` key as the boolean true; JSON keys must be strings.
        if isinstance(document, dict) and True in document:
            document["on"] = document.pop(True)
        parsed[path] = document
    return parsed


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("bicep", "yaml"):
        raise SystemExit("usage: dump.py bicep|yaml FILE...")
    kind, paths = argv[0], argv[1:]
    parsed = _parse_bicep(paths) if kind == "bicep" else _parse_yaml(paths)
    json.dump(parsed, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
