"""A big `Bookings` table in Azurite in a minute, not hours: rows written into Azurite's database file.

Why: Azurite (3.35) checks every insert with a `findOne({PartitionKey, RowKey})` that walks the
whole partition, and one business's bookings and their list index rows all live in one partition;
seeding 100,000 bookings (200,000 entities) through the API is quadratic and takes hours. The
benchmarks measure reads, so the bulk of a big table may arrive another way, as long as Azurite
then holds exactly what the product's writes would have left there.

How, with Azurite stopped and its data in a `--location` directory:

1. each row is the entity the product writes (`creation_operations`: booking row + index row),
   serialized as the table SDK's requests carry it, less the `@odata.type` annotations Azurite
   drops, and wrapped the way Azurite stores a document (keys, `properties` with `Timestamp`,
   `lastModifiedTime`, `eTag`);
2. `check_format` compares that wrapping with the documents Azurite itself stored for bookings
   written through the SDK first: a newer Azurite storing otherwise stops the benchmark here;
3. `azurite_bulk_load.js` inserts the documents with LokiJS (Azurite's own database library,
   from node_modules), so ids, metadata, indices and the file's serialization are LokiJS's.

Then Azurite starts again on the directory and every read goes through its real API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from math import isfinite
from pathlib import Path
from typing import Any

from azure.data.tables._serialize import _add_entity_properties

from devhost.azurite import DEV_ACCOUNT
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import creation_operations
from shared.domain.models import Booking

ROOT = Path(__file__).resolve().parent.parent
LOADER = ROOT / "bench" / "azurite_bulk_load.js"
DB_FILE = "__azurite_db_table__.json"
"""Azurite's table database in its `--location` (DEFAULT_TABLE_LOKI_DB_PATH in its constants)."""
UNANNOTATED = frozenset({"Edm.String", "Edm.Int32", "Edm.Boolean"})
"""Types whose `@odata.type` Azurite drops when it normalizes an entity (their Edm classes give no
type pair: EdmString.js, EdmInt32.js, EdmBoolean.js); the SDK sends Edm.String for every string."""
STORED_FIELDS = ("PartitionKey", "RowKey", "properties", "lastModifiedTime", "eTag")
"""What Azurite keeps of an entity; LokiJS adds `$loki` and `meta` on insert."""


def collection_name(table: str = BOOKINGS_TABLE, account: str = DEV_ACCOUNT) -> str:
    """The LokiJS collection that holds one table's entities (Azurite's getTableCollectionName)."""
    return f"{account}${table}"


def written_entities(bookings: Iterable[Booking]) -> Iterator[dict[str, Any]]:
    """The entities creating these bookings writes: each booking row, then its index row."""
    for booking in bookings:
        for operation in creation_operations(booking):
            yield operation[1]


def modification_times(start: datetime | None = None) -> Iterator[str]:
    """Azurite's `lastModifiedTime` format (7 fractional digits), 100 ns apart, from `start`."""
    ticks = round((start or datetime.now(UTC)).timestamp() * 10**7)
    while True:
        seconds, fraction = divmod(ticks, 10**7)
        prefix = f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}."
        for tick in range(fraction, 10**7):
            yield f"{prefix}{tick:07d}Z"
        ticks = (seconds + 1) * 10**7


@lru_cache(maxsize=4096)
def _sdk_datetime(value: datetime) -> str:
    """The SDK's text for a UTC datetime (`_to_utc_datetime`); a booking row and its index row,
    and neighbouring bookings, share most of theirs."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def request_body(entity: dict[str, Any]) -> dict[str, Any]:
    """What the table SDK sends for `entity` (`_add_entity_properties`), without the annotations
    Azurite drops. The SDK's function costs ~0.2 ms an entity, 40 s for 200,000 on 2 busy CPUs, so
    the plain value types bookings are made of are converted here the same way (`check_format`
    compares the result with what Azurite stored from the SDK's requests); any other value goes
    through the SDK's own function."""
    body: dict[str, Any] = {}
    for name, value in entity.items():
        kind = type(value)
        if kind is str or kind is bool or (kind is int and -(2**31) <= value < 2**31):
            body[name] = value
        elif kind is datetime and value.tzinfo is UTC:
            body[name] = _sdk_datetime(value)
            body[f"{name}@odata.type"] = "Edm.DateTime"
        elif kind is float and isfinite(value):
            body[name] = value
            body[f"{name}@odata.type"] = "Edm.Double"
        elif value is not None:
            return sdk_request_body(entity)
    return body


def sdk_request_body(entity: dict[str, Any]) -> dict[str, Any]:
    """The SDK's own request body for `entity`, without the annotations Azurite drops."""
    return {
        name: value
        for name, value in _add_entity_properties(entity).items()
        if not (name.endswith("@odata.type") and value in UNANNOTATED)
    }


def stored_document(entity: dict[str, Any], modified: str) -> dict[str, Any]:
    """The document Azurite keeps for `entity` inserted at `modified` (TableHandler.insertEntity,
    NormalizedEntity.normalize, LokiTableMetadataStore.insertTableEntity): the request body's
    properties, normalized, plus Timestamp."""
    properties = request_body(entity)
    properties["Timestamp"] = modified
    properties["Timestamp@odata.type"] = "Edm.DateTime"
    return {
        "PartitionKey": entity["PartitionKey"],
        "RowKey": entity["RowKey"],
        "properties": properties,
        "lastModifiedTime": modified,
        "eTag": f"W/\"datetime'{modified.replace(':', '%3A')}'\"",
    }


def stored_documents(location: Path, table: str = BOOKINGS_TABLE) -> list[dict[str, Any]]:
    """The documents of `table` in a stopped Azurite's database file."""
    path = location / DB_FILE
    if not path.exists():
        raise RuntimeError(f"Azurite wrote no {DB_FILE} in {location} (was it stopped with SIGTERM?)")
    database = json.loads(path.read_text(encoding="utf-8"))
    name = collection_name(table)
    for collection in database["collections"]:
        if collection["name"] == name:
            return list(collection["data"])
    raise RuntimeError(f"no collection {name} in {path}")


def check_format(location: Path, bookings: Iterable[Booking], table: str = BOOKINGS_TABLE) -> int:
    """Compare what Azurite stored for `bookings` (written through the SDK) with `stored_document`
    of the same entities; raise on the first difference. Returns the documents compared."""
    stored = {(d["PartitionKey"], d["RowKey"]): d for d in stored_documents(location, table)}
    compared = 0
    for entity in written_entities(bookings):
        document = stored.get((entity["PartitionKey"], entity["RowKey"]))
        if document is None:
            raise RuntimeError(f"Azurite holds no row {entity['RowKey']!r} written through the SDK")
        actual = {field: document.get(field) for field in STORED_FIELDS}
        expected = stored_document(entity, document["lastModifiedTime"])
        if actual != expected:
            differences = sorted(
                name
                for name in set(actual["properties"]) | set(expected["properties"])
                if actual["properties"].get(name) != expected["properties"].get(name)
            )
            fields = [f for f in STORED_FIELDS if f != "properties" and actual[f] != expected[f]]
            raise RuntimeError(
                "Azurite stores entities differently than the bulk loader writes them: "
                f"properties {differences}, fields {fields} of row {entity['RowKey']!r}"
            )
        compared += 1
    return compared


@dataclass(frozen=True)
class BulkLoad:
    """What a bulk load did: the table's rows afterwards, and where its time went."""

    count: int
    build_seconds: float  # the documents, built and written out by Python
    load_seconds: float  # LokiJS: read the database file, insert, rebuild indices, save


def bulk_load(location: Path, bookings: Iterable[Booking], table: str = BOOKINGS_TABLE) -> BulkLoad:
    """Insert `bookings` (booking and index rows) into a stopped Azurite's database file in
    `location`, whose `table` exists."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH (Azurite needs it too)")
    with tempfile.TemporaryDirectory(prefix="azurite-bulk-") as work:
        started = time.perf_counter()
        documents = Path(work) / "documents.ndjson"
        times = modification_times()
        with documents.open("w", encoding="utf-8") as out:
            for entity in written_entities(bookings):
                out.write(json.dumps(stored_document(entity, next(times)), separators=(",", ":")))
                out.write("\n")
        built = time.perf_counter()
        completed = subprocess.run(
            [node, str(LOADER), str(location / DB_FILE), collection_name(table), str(documents)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        loaded = time.perf_counter()
    if completed.returncode != 0:
        raise RuntimeError(f"{LOADER.name} failed: {completed.stderr.strip()[-2000:]}")
    count = int(json.loads(completed.stdout.strip().splitlines()[-1])["count"])
    return BulkLoad(count, built - started, loaded - built)
