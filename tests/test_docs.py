"""The README and docs/ as a reader follows them: short, every link and anchor landing, and what
they quote from the repository (paths, modules, make targets, host.json values, local settings)
still true of it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import APP_ROOT

README = APP_ROOT / "README.md"
DOCS = APP_ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 200

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def fenced_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            if fenced:
                blocks.append("\n".join(current))
                current = []
            fenced = not fenced
        elif fenced:
            current.append(line)
    return blocks


def code_spans(text: str) -> list[str]:
    return [m.group(2).strip() for _, line in prose_lines(text) for m in _CODE_SPAN.finditer(line)]


def links(text: str) -> list[tuple[int, str]]:
    """Every markdown link target outside code (fenced blocks and inline code spans)."""
    found = []
    for number, line in prose_lines(text):
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            found.append((number, match.group(1)))
    return found


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lowercased, punctuation dropped but for
    '-' and '_', each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings, with GitHub's -1, -2 ... for repeated ones."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


# --------------------------------------------------------------------- the helpers themselves

def test_github_slug_follows_githubs_rule() -> None:
    assert github_slug("PublishEvent: `POST /api/events`") == "publishevent-post-apievents"
    assert github_slug("Concurrency and RU/s") == "concurrency-and-rus"
    assert github_slug("The event chain: HTTP → Event Grid") == "the-event-chain-http--event-grid"
    assert github_slug("`ETL_WORK_QUEUE` and [the queue](x.md)") == "etl_work_queue-and-the-queue"


def test_links_skip_code_and_anchors_count_repeats(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Same\n\n## Same\n\n```\n## Not a heading [x](missing.md)\n```\n"
                    "See [a](other.md#same-1) and `[b](in-code.md)`.\n", encoding="utf-8")
    assert anchors(page) == {"title", "same", "same-1"}
    assert links(page.read_text(encoding="utf-8")) == [(10, "other.md#same-1")]


# --------------------------------------------------------------------- the pages

def test_readme_is_a_map_of_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail under docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(APP_ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for number, target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"line {number}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"line {number}: {target} (no heading with anchor #{anchor})")
    assert broken == [], f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for _, target in links(README.read_text(encoding="utf-8")) if target.partition("#")[0]}
    orphans = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert orphans == []


def function_folders() -> list[str]:
    return sorted(p.parent.name for p in APP_ROOT.glob("*/function.json"))


def test_every_function_has_a_row_in_the_readme_linking_its_pattern_page() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(function_folders()) >= 6
    missing = [name for name in function_folders()
               if not re.search(rf"^\| `{name}/` \|.*\]\(docs/[\w-]+\.md(#[\w-]+)?\)", readme, re.MULTILINE)]
    assert missing == []


def test_the_readme_layout_names_every_top_level_package() -> None:
    """Every function folder and Python package at the top of the repository is in the layout."""
    layout = next(block for block in fenced_blocks(README.read_text(encoding="utf-8")) if "common/" in block)
    packages = sorted(p.name for p in APP_ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and ((p / "function.json").exists() or any(p.glob("*.py"))))
    assert {"common", "tests"} <= set(packages)
    assert [name for name in packages if f"{name}/" not in layout] == []


def test_the_error_model_page_names_every_error_kind_and_trigger() -> None:
    from common import errors

    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = page[page.index("## The error model"):]
    kinds = [name for name in errors.__all__
             if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), BaseException)]
    assert len(kinds) >= 4
    assert [name for name in kinds if f"`{name}`" not in section] == []
    for trigger in ("HTTP", "Service Bus", "Storage queue", "Event Grid", "Timer"):
        assert re.search(rf"^\| {trigger}\b", section, re.MULTILINE), trigger


# --------------------------------------------------------------------- what the pages quote

def makefile_targets() -> set[str]:
    text = (APP_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.MULTILINE))


def test_every_make_target_named_in_the_docs_exists() -> None:
    targets = makefile_targets()
    assert {"start", "test", "bench"} <= targets
    unknown = set()
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for code in [*code_spans(text), *fenced_blocks(text)]:
            unknown |= {(page.name, name) for name in re.findall(r"(?:^|[\s;&|(])make\s+([a-z][\w-]*)", code)
                        if name not in targets}
    assert sorted(unknown) == []


def module_file(dotted: list[str]) -> Path | None:
    """The source of the module that ``dotted`` (or its longest prefix) names, if any."""
    for length in range(len(dotted), 1, -1):
        base = APP_ROOT.joinpath(*dotted[:length])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def defines(source: Path, name: str) -> bool:
    text = source.read_text(encoding="utf-8")
    return bool(re.search(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*[:=]|"
                          rf"\"{re.escape(name)}\"", text, re.MULTILINE))


def test_every_repository_path_and_module_the_docs_name_exists() -> None:
    """Inline code that names a path under an existing top-level folder (`etl/records.py`,
    `docs/queries.kql`) or a tool's file at the root (`pytest.ini`) must exist, and so must a dotted module reference with its attribute
    (`common.retry.is_transient`). Log and span names share the `etl.` prefix (`etl.completed`),
    so the pipeline package is checked in its slash form only."""
    top = {p.name for p in APP_ROOT.iterdir()}
    packages = {p.name for p in APP_ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"etl"}
    # App role names (`Orders.Read`) read like modules of the Orders function's folder.
    roles = {role["value"] for role in json.loads((APP_ROOT / "infra" / "app-roles.json").read_text(encoding="utf-8"))}
    missing, checked = [], 0
    for page in PAGES:
        for span in code_spans(page.read_text(encoding="utf-8")):
            span = span.removesuffix("()")
            if re.search(r"[\s<>*…%$]", span) or span in roles:
                continue
            if "/" in span and re.fullmatch(r"[\w.-]+(/[\w.-]+)*/?", span) and span.split("/")[0] in top:
                checked += 1
                if not (APP_ROOT / span).exists():
                    missing.append(f"{page.name}: {span}")
            elif re.fullmatch(r"[\w-]+(\.[\w-]+)*\.(ini|toml|txt|cfg|ya?ml)", span):
                checked += 1  # a tool's file at the root: requirements.txt, pytest.ini, azure.yaml
                if not (APP_ROOT / span).exists():
                    missing.append(f"{page.name}: {span}")
            elif re.fullmatch(r"[A-Za-z_]\w*(\.\w+)+", span) and span.split(".")[0] in packages:
                checked += 1
                parts = span.split(".")
                source = module_file(parts)
                if source is None:
                    missing.append(f"{page.name}: {span} (no such module)")
                elif source.stem != parts[-1] and source.parent.name != parts[-1] and not defines(source, parts[-1]):
                    missing.append(f"{page.name}: {span} ({source.relative_to(APP_ROOT)} defines no {parts[-1]})")
    assert checked > 40, checked  # the docs do name paths; a parser that found none would pass vacuously
    assert missing == []


def leaves(value: object, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v, key)
    else:
        yield key, json.dumps(value) if isinstance(value, bool) else str(value)


def test_host_json_and_binding_values_quoted_in_the_docs_are_the_real_ones() -> None:
    """`key: value` in the docs, for a key of host.json or of a function.json, is that file's value."""
    actual: dict[str, set[str]] = {}
    for path in [APP_ROOT / "host.json", *APP_ROOT.glob("*/function.json")]:
        for key, value in leaves(json.loads(path.read_text(encoding="utf-8"))):
            actual.setdefault(key, set()).add(value)
    wrong, checked = [], set()
    for page in PAGES:
        for span in code_spans(page.read_text(encoding="utf-8")):
            match = re.fullmatch(r"([\w.]+): (\S+)", span)
            if not match:
                continue
            key = match.group(1).split(".")[-1]
            if key in actual:
                checked.add(key)
                if match.group(2) not in actual[key]:
                    wrong.append(f"{page.name}: {span} (the repository has {sorted(actual[key])})")
    assert {"functionTimeout", "maxDequeueCount", "batchSize", "prefetchCount", "runOnStartup"} <= checked
    assert wrong == []


def test_local_values_on_the_settings_page_are_the_examples() -> None:
    """The settings tables' 'Local value' column, where it quotes a value, matches
    local.settings.example.json."""
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    wrong, checked = [], 0
    for _, line in prose_lines((DOCS / "settings.md").read_text(encoding="utf-8")):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not re.fullmatch(r"`[^`]+`", cells[0]):
            continue
        name, local = cells[0].strip("`"), cells[3]
        if name in example and re.fullmatch(r"`[^`]*`", local):
            checked += 1
            if local.strip("`") != example[name]:
                wrong.append(f"{name}: page {local}, example {example[name]!r}")
        elif name in example and local == "empty" and example[name] != "":
            wrong.append(f"{name}: page says empty, example {example[name]!r}")
    assert checked >= 25, checked
    assert wrong == []
