// Inserts many table entities into a stopped Azurite's table database file, in one pass.
//
//     node bench/azurite_bulk_load.js <__azurite_db_table__.json> <account$Table> <documents.ndjson>
//
// Why it exists: Azurite (3.35, LokiTableMetadataStore.insertTableEntity) checks every insert
// with findOne({PartitionKey, RowKey}), which walks the whole partition; all bookings of one
// business (and their list index rows) share a partition, so seeding 100,000 bookings through
// the API is quadratic and takes hours. bench/azurite_bulk.py writes each entity as Azurite stores
// it (checked against documents Azurite wrote itself); this script inserts them with LokiJS, the
// database library Azurite uses, so ids, metadata, indices and serialization are LokiJS's own.
// Prints {"inserted": n, "count": entities in the collection} as its last line.
"use strict";

const fs = require("fs");
const readline = require("readline");
const Loki = require("lokijs");

async function main() {
  const [dbFile, collectionName, documentsFile] = process.argv.slice(2);
  if (!documentsFile) {
    throw new Error("usage: azurite_bulk_load.js <db file> <collection> <documents.ndjson>");
  }
  const db = new Loki(dbFile, { persistenceMethod: "fs" });
  await new Promise((resolve, reject) => db.loadDatabase({}, (e) => (e ? reject(e) : resolve())));
  const collection = db.getCollection(collectionName);
  if (collection === null) {
    throw new Error(`no collection ${collectionName} in ${dbFile}: create the table first`);
  }
  const documents = [];
  const lines = readline.createInterface({ input: fs.createReadStream(documentsFile), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line) documents.push(JSON.parse(line));
  }
  // Adaptive binary indices splice every insert into a sorted array (O(n) each): turn them off for
  // the insert, then let LokiJS rebuild each index once, and leave the setting as Azurite made it.
  const adaptive = collection.adaptiveBinaryIndices;
  collection.adaptiveBinaryIndices = false;
  collection.insert(documents);
  collection.ensureAllIndexes(true);
  collection.adaptiveBinaryIndices = adaptive;
  await new Promise((resolve, reject) => db.saveDatabase((e) => (e ? reject(e) : resolve())));
  console.log(JSON.stringify({ inserted: documents.length, count: collection.count() }));
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
