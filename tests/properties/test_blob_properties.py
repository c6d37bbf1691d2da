"""Property-based tests of BlobEtl's blob surface: JSON arrays, JSON Lines, arbitrary bytes (issue 14).

Invariants pinned here, for any blob:
- no unhandled error: ``run_etl`` returns a summary for bad input, it does not raise;
- counts add up: when the blob is readable, ``totalRecords == written + invalid + superseded``, and
  ``written`` is the number of distinct items (id and partition key) the blob put in the container;
- nothing lost: every record is written, superseded by a later one with the same key, or named as
  invalid in the summary's errors with its index (and its line, for JSON Lines);
- a blob that is not readable as a whole (a truncated or malformed array, not UTF-8) writes nothing;
- a re-run of the same blob gives the same counts, the same errors and the same container contents.

The expected outcome of each record is derived here from the contract (BlobEtl/records.py's
docstrings: four required non-empty string fields that are text, an id Cosmos DB accepts), not
by calling the module's own validation.

A malformed array whose syntax error follows a number the strict reader refuses (or lies inside an
element nested past 64 levels) has its own test: this suite found such arrays written in part.
A number whose exponent is past decimal.Decimal's range made run_etl raise; its own test pins the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import assume, event, given
from hypothesis import strategies as st

from common.logs import bind_invocation
from common.settings import EtlSettings
from etl import run_etl
from tests.conftest import FakeContext
from tests.fakes import FakeContainer

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
REQUIRED = ("id", "data", "source", "type")
PARTITION_KEYS = {"/id": lambda r: r["id"], "/metadata/source": lambda r: r["source"],
                  "/metadata/type": lambda r: r["type"], "/sourceBlob": lambda r: None}

# ----------------------------------------------------------------------------------- strategies

def utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: Any code point, lone surrogates and C0 controls included (st.text() leaves surrogates out).
WILD_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.characters(max_codepoint=31))


def wild_text(max_size: int = 20, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.one_of(st.text(min_size=min_size, max_size=max_size),
                     st.lists(WILD_CHAR, min_size=min_size, max_size=max_size).map("".join))


INTS = st.one_of(st.integers(), st.sampled_from([2**63, 2**64 + 1, -(10**300), 10**4299]))
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(st.none() | st.booleans() | INTS | FINITE_FLOATS | wild_text(10),
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(wild_text(6), children, max_size=3),
                           max_leaves=8)

#: A small pool, so that records share ids (and supersede one another) often.
POOL_IDS = st.sampled_from(["r-1", "r-2", "r-3", "Zoë-李", "\U0001F600", " padded "])
GOOD_IDS = st.one_of(POOL_IDS, POOL_IDS, st.text(st.characters(exclude_characters="/\\?#", min_codepoint=32), min_size=1,
                                                 max_size=20).filter(str.strip),
                     st.just("x" * 255))
BAD_IDS = st.one_of(
    st.tuples(st.text(max_size=5), st.sampled_from(["/", "\\", "?", "#", "\x00", "\n", "\x1f"]), st.text(max_size=5))
    .map("".join),
    st.integers(256, 400).map(lambda n: "y" * n),
    st.tuples(st.text(max_size=5), st.characters(categories=["Cs"]), st.text(max_size=5)).map("".join),
    st.sampled_from(["", "   ", "\t"]),
    wild_text(30),
)
TEXT_FIELDS = st.one_of(st.text(min_size=1, max_size=20).filter(str.strip), st.sampled_from(["Straße", "ß", "ﬁ", "a"]))
BAD_FIELDS = st.one_of(st.sampled_from(["", "  ", "a\ud800", "\udc00"]), st.none(), st.booleans(), INTS, FINITE_FLOATS,
                       st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def as_json_reads_it(value: Any) -> Any:
    """``value`` as a JSON reader gives it back: a high surrogate followed by a low one is written as
    an escape pair, which JSON defines as one astral character, so it comes back as that character."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, list):
        return [as_json_reads_it(v) for v in value]
    if isinstance(value, dict):
        return {as_json_reads_it(k): as_json_reads_it(v) for k, v in value.items()}
    return value


@st.composite
def record_values(draw: st.DrawFn) -> Any:
    """A record as a Python value: mostly valid, sometimes broken in one way, sometimes not an object."""
    record = {"id": draw(GOOD_IDS), "data": draw(TEXT_FIELDS), "source": draw(st.sampled_from(["s1", "s2"])),
              "type": draw(st.sampled_from(["reading", "event"]))}
    record.update(draw(st.dictionaries(wild_text(6).filter(lambda k: k not in REQUIRED), JSON_VALUES, max_size=3)))
    kind = draw(st.sampled_from(["valid", "valid", "valid", "bad id", "bad field", "missing", "not an object"]))
    if kind == "bad id":
        record["id"] = draw(BAD_IDS)
    elif kind == "bad field":
        record[draw(st.sampled_from(REQUIRED))] = draw(BAD_FIELDS)
    elif kind == "missing":
        del record[draw(st.sampled_from(REQUIRED))]
    elif kind == "not an object":
        return draw(JSON_VALUES)
    return record


def valid_record(value: Any) -> bool:
    """The contract: an object with id, data, source, type as non-blank strings that are text; an id
    of at most 255 characters without '/', '\\', '?', '#' or control characters (below 32)."""
    if not isinstance(value, dict):
        return False
    for name in REQUIRED:
        field = value.get(name)
        if not isinstance(field, str) or not field.strip() or any(0xD800 <= ord(c) <= 0xDFFF for c in field):
            return False
    record_id = value["id"]
    return len(record_id) <= 255 and not any(c in "/\\?#" or ord(c) < 32 for c in record_id)


@dataclass(frozen=True)
class Element:
    """One record of a generated blob: its JSON text, and the record if the contract accepts it."""

    text: bytes
    value: Any = None
    valid: bool = False
    #: The id an error entry names for it (None for a record that could not be read at all).
    echoed_id: str | None = None


def _raw_record(middle: bytes) -> bytes:
    return b'{"id": "raw", "data": "d", "source": "s1", "type": "reading", "x": ' + middle + b"}"


#: Records a JSON writer would not produce but a blob may hold: refused by name, except an
#: out-of-range double (kept exact, so the record stays valid).
RAW_ELEMENTS = st.one_of(
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]).map(lambda c: Element(_raw_record(b"[" + c + b"]"))),
    st.integers(4301, 5000).map(lambda n: Element(_raw_record(b"9" * n))),
    st.integers(64, 3000).map(lambda d: Element(_raw_record(b"[" * d + b"]" * d))),
    st.integers(0, 40).map(lambda d: Element(_raw_record(b'{"a": ' * d + b"1" + b"}" * d),
                                             {"id": "raw", "data": "d", "source": "s1", "type": "reading"}, True)),
    st.sampled_from([b"1e400", b"-2.5E+999", b"18446744073709551616"]).map(
        lambda n: Element(_raw_record(n), {"id": "raw", "data": "d", "source": "s1", "type": "reading"}, True)),
    st.just(Element(b'{"id": "x\\ud800", "data": "d", "source": "s1", "type": "reading"}', echoed_id="x\ud800")),
    st.just(Element(b'{"id": "\\ud83d\\ude00", "data": "d", "source": "s1", "type": "reading"}',
                    {"id": "\U0001F600", "data": "d", "source": "s1", "type": "reading"}, True)),
)


@st.composite
def elements(draw: st.DrawFn, raw: bool = True, utf8_only: bool = False) -> Element:
    if raw and draw(st.integers(0, 5)) == 0:
        return draw(RAW_ELEMENTS)
    drawn = draw(record_values())
    text = json.dumps(drawn, ensure_ascii=draw(st.sampled_from([True, True, False])))
    # Raw UTF-8 cannot carry a lone surrogate: such a record makes the whole blob invalid UTF-8.
    data = text.encode("utf-8", "surrogatepass")
    if utf8_only and not utf8(data):
        data = json.dumps(drawn).encode()
    value = as_json_reads_it(drawn)
    record_id = value.get("id") if isinstance(value, dict) else None
    return Element(data, value, valid_record(value), record_id[:256] if isinstance(record_id, str) else None)


SEPARATORS = st.sampled_from([b",", b", ", b",\n", b"\r\n,\t"])


@dataclass(frozen=True)
class Blob:
    name: str
    data: bytes
    records: tuple[Element, ...]
    lines: tuple[int, ...] | None  # the line of each record, for JSON Lines


@st.composite
def blobs(draw: st.DrawFn, max_records: int = 25, min_records: int = 0, fmt: str | None = None, raw: bool = True,
          utf8_only: bool = False) -> Blob:
    records = tuple(draw(st.lists(elements(raw, utf8_only), min_size=min_records, max_size=max_records)))
    if (fmt or draw(st.sampled_from(["json", "jsonl"]))) == "json":
        separator = draw(SEPARATORS)
        data = b"[" + separator.join(r.text for r in records) + b"]"
        name = draw(st.sampled_from(["incoming/batch.json", "incoming/2026/day.JSON", "incoming/noext"]))
        lines = None
    else:  # JSON Lines: blank lines are skipped and do not count as records
        parts, lines_list, line = [], [], 0
        for record in records:
            for _ in range(draw(st.integers(0, 1))):
                parts.append(draw(st.sampled_from([b"", b"  ", b"\t"])))
                line += 1
            parts.append(record.text)
            line += 1
            lines_list.append(line)
        data = b"\n".join(parts) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))
        name = draw(st.sampled_from(["incoming/feed.jsonl", "incoming/feed.ndjson"]))
        lines = tuple(lines_list)
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return Blob(name, data, records, lines)


CONFIGS = st.builds(lambda concurrency, batch: EtlSettings("incoming", "summaries", write_concurrency=concurrency,
                                                           batch_size=batch, write_budget_seconds=5.0),
                    st.sampled_from([1, 8]), st.sampled_from([1, 2, 3, 50]))
CONTAINERS = st.sampled_from(sorted(PARTITION_KEYS))

#: Bytes assembled from JSON's pieces (and near misses), so that arbitrary blobs get past the first byte.
FRAGMENTS = st.sampled_from([b"[", b"]", b"{", b"}", b",", b":", b'"id"', b'"data"', b'"source"', b'"type"', b'"r-1"',
                             b'"x"', b'"\\ud800"', b'"a/b"', b"1", b"NaN", b"1e400", b" ", b"\n", b"\xff", b"\xc3\xa9",
                             b"\xef\xbb\xbf", b'"', b"\\", b"null"])
ANY_BYTES = st.one_of(st.binary(max_size=150), st.lists(FRAGMENTS, max_size=40).map(b"".join),
                      st.lists(FRAGMENTS, max_size=40).map(lambda parts: b"[" + b"".join(parts)))


# ------------------------------------------------------------------------------------- drivers

def fresh_container(partition_key: str) -> FakeContainer:
    # The partition key definition is cached per (database, container id): one id per definition.
    return FakeContainer((partition_key,), container_id="records" + partition_key.replace("/", "-"))


async def etl(data: bytes, name: str, container: FakeContainer, cfg: EtlSettings) -> Any:
    return await run_etl(data, source_blob=name, container=container, cfg=cfg,
                         log=bind_invocation(FakeContext(function_name="BlobEtl")), now=lambda: NOW)


def stored_keys(container: FakeContainer, name: str) -> set[tuple[str, str]]:
    return {key for key, item in container.items.items() if item["sourceBlob"] == name}


def assert_counts_add_up(summary: Any, container: FakeContainer, name: str) -> None:
    assert summary.total_records == summary.written + summary.invalid + summary.superseded
    assert summary.written == len(stored_keys(container, name))
    if summary.invalid <= 100:
        assert len(summary.errors) == summary.invalid
    indices = [entry["index"] for entry in summary.errors]
    assert indices == sorted(set(indices)) and all(0 <= i < summary.total_records for i in indices)
    assert all(isinstance(entry["reason"], str) and entry["reason"] for entry in summary.errors)
    expected_status = "succeeded" if summary.invalid == 0 else ("failed" if summary.written == 0 else "partial")
    assert summary.status == expected_status


def assert_wrote_nothing(summary: Any, container: FakeContainer) -> None:
    assert summary.status == "failed" and summary.error
    assert summary.total_records == summary.written == summary.invalid == summary.superseded == 0
    assert container.items == {} and container.calls["upsert"] == 0


# ------------------------------------------------------------------------------------ properties

@given(blob=blobs(), cfg=CONFIGS, partition_key=CONTAINERS)
async def test_every_record_is_written_superseded_or_named_invalid_and_the_counts_add_up(
        blob: Blob, cfg: EtlSettings, partition_key: str) -> None:
    container = fresh_container(partition_key)
    summary = await etl(blob.data, blob.name, container, cfg)
    if not utf8(blob.data):
        event("not UTF-8")
        assert_wrote_nothing(summary, container)
        return
    assert summary.error is None, summary.error
    event(summary.status)
    assert_counts_add_up(summary, container, blob.name)

    # The model: the last valid record of each item key is what lands.
    last: dict[tuple[str, str], Any] = {}
    valid = 0
    for record in blob.records:
        if record.valid:
            valid += 1
            last[(record.value["id"], json.dumps(PARTITION_KEYS[partition_key](record.value)
                                                 if partition_key != "/sourceBlob" else blob.name))] = record.value
    invalid = [index for index, record in enumerate(blob.records) if not record.valid]
    assert (summary.total_records, summary.written, summary.invalid, summary.superseded) == (
        len(blob.records), len(last), len(invalid), valid - len(last))
    assert set(container.items) == set(last)
    for key, value in last.items():
        item = container.items[key]
        assert item["processedData"] == value["data"].upper()
        assert item["metadata"] == {"source": value["source"], "type": value["type"]}
    assert [entry["index"] for entry in summary.errors] == invalid
    for entry in summary.errors:
        assert entry["id"] == blob.records[entry["index"]].echoed_id
        if blob.lines is not None:
            assert entry["line"] == blob.lines[entry["index"]]


@given(data=ANY_BYTES, name=st.sampled_from(["incoming/a.json", "incoming/a.jsonl", "incoming/a", "incoming/a.csv"]))
async def test_any_bytes_give_a_summary_never_an_error_and_the_counts_add_up(data: bytes, name: str) -> None:
    container = fresh_container("/id")
    summary = await etl(data, name, container, EtlSettings("incoming", "summaries", 8, 3, 5.0))
    event(summary.status if summary.error is None else "unreadable")
    if summary.error is not None:
        assert_wrote_nothing(summary, container)
    else:
        assert_counts_add_up(summary, container, name)


@given(blob=blobs(max_records=12, fmt="json", utf8_only=True), cut=st.floats(0, 1))
async def test_a_truncated_json_array_writes_nothing(blob: Blob, cut: float) -> None:
    data = blob.data[:min(int(len(blob.data) * cut), len(blob.data) - 1)]
    container = fresh_container("/id")
    summary = await etl(data, blob.name, container, EtlSettings("incoming", "summaries", 8, 2, 5.0))
    assert_wrote_nothing(summary, container)


@given(blob=blobs(max_records=12, min_records=2, fmt="json", utf8_only=True), which=st.integers(0, 100))
async def test_a_json_array_missing_a_comma_writes_nothing(blob: Blob, which: int) -> None:
    # Two numbers side by side make one number ("1" "2" is "12"): any other pair breaks the syntax.
    def number(element: Element) -> bool:
        return element.text[:1] in b"-0123456789"

    gaps = [i for i in range(len(blob.records) - 1) if not (number(blob.records[i]) and number(blob.records[i + 1]))]
    assume(gaps)
    gap = gaps[which % len(gaps)]
    data = b"[" + b"".join(r.text + (b"" if i == gap else b",") for i, r in enumerate(blob.records[:-1])) \
        + blob.records[-1].text + b"]"
    container = fresh_container("/id")
    summary = await etl(data, blob.name, container, EtlSettings("incoming", "summaries", 8, 2, 5.0))
    assert_wrote_nothing(summary, container)


@given(blob=blobs(), cfg=CONFIGS, partition_key=CONTAINERS)
async def test_a_rerun_of_the_same_blob_gives_the_same_counts_errors_and_container(
        blob: Blob, cfg: EtlSettings, partition_key: str) -> None:
    container = fresh_container(partition_key)
    first = await etl(blob.data, blob.name, container, cfg)
    after_first = {key: dict(item) for key, item in container.items.items()}
    second = await etl(blob.data, blob.name, container, cfg)
    assert second.to_document() == first.to_document()
    assert container.items == after_first


#: An element with a syntax error that sits after a number the strict reader refuses (NaN, Infinity,
#: an integer past 4300 digits), or inside an element nested deeper than 64 levels.
MALFORMED_AFTER_A_REFUSAL = st.one_of(
    st.tuples(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"9" * 4301]),
              st.sampled_from([b'{"y": 1}', b" garbage", b' "s"', b" 1 2", b"}"])).map(
        lambda p: b'{"x": ' + p[0] + b"}" + p[1]),
    st.integers(64, 200).map(lambda d: b"[" * d + b"oops" + b"]" * d),
)


@given(blob=blobs(max_records=6, min_records=1, fmt="json", raw=False, utf8_only=True), malformed=MALFORMED_AFTER_A_REFUSAL,
       where=st.integers(0, 6))
async def test_a_json_array_malformed_after_a_refused_number_or_past_the_depth_limit_writes_nothing(
        blob: Blob, malformed: bytes, where: int) -> None:
    """Found by this suite: check_blob skipped the syntax of an element refused for a limit."""
    texts = [r.text for r in blob.records]
    texts.insert(where % (len(texts) + 1), malformed)
    container = fresh_container("/id")
    summary = await etl(b"[" + b", ".join(texts) + b"]", blob.name, container, EtlSettings("incoming", "summaries", 8, 2, 5.0))
    assert_wrote_nothing(summary, container)


@given(blob=blobs(max_records=6, utf8_only=True), exponent=st.integers(10**18, 10**30), where=st.integers(0, 6))
async def test_a_record_with_an_exponent_past_decimals_range_is_named_invalid_not_raised(
        blob: Blob, exponent: int, where: int) -> None:
    huge = Element(_raw_record(b"1e" + str(exponent).encode()))
    records = list(blob.records)
    records.insert(where % (len(records) + 1), huge)
    if blob.lines is None:
        data = b"[" + b", ".join(r.text for r in records) + b"]"
    else:
        data = b"\n".join(r.text for r in records) + b"\n"
    container = fresh_container("/id")
    summary = await etl(data, blob.name, container, EtlSettings("incoming", "summaries", 8, 2, 5.0))
    assert summary.error is None
    assert summary.invalid == sum(not r.valid for r in records)
    assert_counts_add_up(summary, container, blob.name)
