"use strict";
// Serves @vercel/cosmosdb-server over HTTPS with keep-alive on loopback.
// The package's own CLI answers "connection: close" on every response, which
// makes each request open a new TLS connection (about 2.5 times slower here).
// Usage: node scripts/cosmos-server.js [port]   (COSMOS_HOST overrides 127.0.0.1)
const path = require("path");
const { createHttpsServer } = require(path.join(__dirname, "..", "node_modules", "@vercel", "cosmosdb-server"));

const port = parseInt(process.argv[2] || process.env.COSMOS_PORT || "8081", 10);
const host = process.env.COSMOS_HOST || "127.0.0.1";
// Above aiohttp's 15 s idle-connection lifetime, so the client never reuses a socket the server closed.
const keepAliveMs = 65000;

const server = createHttpsServer({ keepAlive: true });
// Every collection's item store, so GET /_bench/ids?collection=<name> can list a collection's item ids
// at once (tests check what landed; a COUNT query here scans in JavaScript at a few thousand items a
// second). The package keeps its stores private: each registers itself on its first write.
const { default: Items } = require(path.join(__dirname, "..", "node_modules", "@vercel", "cosmosdb-server", "lib",
  "account", "items.js"));
const itemStores = new Set();
{
  const set = Items.prototype._set;
  Items.prototype._set = function register(data) {
    itemStores.add(this);
    return set.call(this, data);
  };
}
// Transactional batches are atomic, as Cosmos DB runs them: all operations or none. The package applies
// a batch's operations up to the first failure and keeps them; here an atomic batch (the SDK's
// execute_item_batch: x-ms-cosmos-is-batch-request and x-ms-cosmos-batch-atomic) runs under a journal of
// every change to the container's item store, undone in reverse when an operation fails. The answer is
// then what the service answers: 207 Multi-Status, the failing operation's own status, 424 (Failed
// Dependency) for every other operation, and nothing written. Node runs the operations on one thread
// with no await between them, so no other request sees a batch half-applied.
const documentOperations = require(path.join(__dirname, "..", "node_modules", "@vercel", "cosmosdb-server", "lib",
  "handler", "_document-operations.js"));
const accountModule = require(path.join(__dirname, "..", "node_modules", "@vercel", "cosmosdb-server", "lib",
  "account", "index.js"));
const { parsePartitionKey } = require(path.join(__dirname, "..", "node_modules", "@vercel", "cosmosdb-server", "lib",
  "utils", "get-partition-from-header.js"));
let account = null;
{
  const Account = accountModule.default;
  // The package builds its one account when the server starts listening; keep a hold of it.
  accountModule.default = class extends Account {
    constructor(...args) {
      super(...args);
      account = this;
    }
  };
}
let journal = null;
{
  // Record the previous entry of every map slot an operation touches (the item and its index entries).
  const remember = (store) => {
    if (journal === null) return;
    const mapsOf = [store._data, store._index];
    for (const map of mapsOf) {
      if (!map.__journaled) {
        const set = map.set;
        const del = map.delete;
        map.set = function journaledSet(key, value) {
          if (journal !== null) journal.push([this, key, this.has(key), this.get(key)]);
          return set.call(this, key, value);
        };
        map.delete = function journaledDelete(key) {
          if (journal !== null) journal.push([this, key, this.has(key), this.get(key)]);
          return del.call(this, key);
        };
        map.__journaled = { set, del };
      }
    }
  };
  const set = Items.prototype._set;
  Items.prototype._set = function journaled(data) {
    remember(this);
    return set.call(this, data);
  };
  const del = Items.prototype.delete;
  Items.prototype.delete = function journaledDelete(idOrRid, partition) {
    remember(this);
    return del.call(this, idOrRid, partition);
  };
}

function undo(entries) {
  for (let i = entries.length - 1; i >= 0; i -= 1) {
    const [map, key, had, value] = entries[i];
    const { set, del } = map.__journaled;
    if (had) set.call(map, key, value);
    else del.call(map, key);
  }
}

const BATCH_OPERATIONS = {
  Create: documentOperations.createOperation, Upsert: documentOperations.upsertOperation,
  Read: documentOperations.readOperation, Delete: documentOperations.deleteOperation,
  Replace: documentOperations.replaceOperation,
};

function isTrue(value) {
  return String(value || "").toLowerCase() === "true";
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function answer(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text),
    "x-ms-activity-id": require("crypto").randomUUID(), ...headers });
  res.end(text);
}

async function atomicBatch(req, res, dbId, collId) {
  let operations;
  try {
    operations = JSON.parse(await readBody(req));
  } catch (err) {
    answer(res, 400, { code: "BadRequest", message: "Invalid request body" });
    return;
  }
  const collection = account && account.database(dbId).collection(collId);
  if (!collection || !collection.read()) {
    answer(res, 404, { code: "NotFound", message: "Resource Not Found" });
    return;
  }
  if (!Array.isArray(operations) || operations.length === 0 || operations.length > 100) {
    // Cosmos DB: a transactional batch holds 1 to 100 operations.
    answer(res, 400, { code: "BadRequest", message: "A batch holds 1 to 100 operations." });
    return;
  }
  const partitionKey = req.headers["x-ms-documentdb-partitionkey"];
  const results = [];
  let failedAt = -1;
  journal = [];
  try {
    for (let i = 0; i < operations.length; i += 1) {
      const input = operations[i] || {};
      const run = BATCH_OPERATIONS[input.operationType];
      if (!run) {
        undo(journal);
        answer(res, 400, { code: "BadRequest",
          message: `Operation type '${input.operationType}' is not supported in Batch.` });
        return;
      }
      // Every operation of a batch is in the batch's partition (the header), as the service requires.
      const result = run(collection, { ...input, partitionKey: input.partitionKey || partitionKey });
      results.push(result);
      if (result.statusCode >= 400) {
        failedAt = i;
        break;
      }
    }
    if (failedAt >= 0) undo(journal);
  } catch (err) {
    undo(journal);
    throw err;
  } finally {
    journal = null;
  }
  if (failedAt >= 0) {
    const failed = results[failedAt];
    const body = operations.map((_, i) => (i === failedAt
      ? { statusCode: failed.statusCode, requestCharge: 1 }
      : { statusCode: 424, requestCharge: 0 }));
    answer(res, 207, body, { "x-ms-request-charge": "1" });
    return;
  }
  const body = results.map((result) => ({ statusCode: result.statusCode, requestCharge: 1,
    eTag: result.body ? result.body._etag : undefined, resourceBody: result.body }));
  answer(res, 200, body, { "x-ms-request-charge": String(results.length) });
}
// COSMOS_RU_PER_SECOND enforces a request-unit budget, as a provisioned container does: a token
// bucket holding one second of budget, refilled continuously. Each request is charged what Cosmos DB
// would roughly charge (a model, documented in the README's benchmark section):
//   write (create, upsert, replace) 5 RU per KB of body, at least 5; delete 5 RU; point read 1 RU;
//   query page 3 RU; metadata (accounts, databases, containers, partition key ranges) free.
// Beyond the budget the answer is 429 with x-ms-retry-after-ms (the time until the bucket holds the
// charge) and x-ms-substatus 3200, as the service answers. GET /_bench/stats reports the server's
// CPU seconds, RU charged and requests throttled (benchmarks read it around a measured run).
const ruPerSecond = parseFloat(process.env.COSMOS_RU_PER_SECOND || "0");
const stats = { requests: 0, charged: 0, throttled: 0 };
let faults = null;
let tokens = ruPerSecond;
let refilledAt = process.hrtime.bigint();

function chargeOf(req) {
  const url = req.url.split("?")[0];
  const isDoc = /\/docs(\/|$)/.test(url);
  if (!isDoc) return 0;
  const isQuery = req.method === "POST" && (req.headers["x-ms-documentdb-isquery"] === "true" ||
    String(req.headers["content-type"] || "").startsWith("application/query+json"));
  if (isQuery) return 3;
  if (req.method === "POST" || req.method === "PUT") {
    const bytes = parseInt(req.headers["content-length"] || "0", 10);
    return Math.max(5, 5 * bytes / 1024);
  }
  if (req.method === "DELETE") return 5;
  return 1;
}

function admit(req, res) {
  stats.requests += 1;
  const charge = chargeOf(req);
  if (ruPerSecond <= 0 || charge === 0) {
    stats.charged += charge;
    return true;
  }
  const now = process.hrtime.bigint();
  tokens = Math.min(ruPerSecond, tokens + Number(now - refilledAt) / 1e9 * ruPerSecond);
  refilledAt = now;
  if (tokens >= charge) {
    tokens -= charge;
    stats.charged += charge;
    res.setHeader("x-ms-request-charge", charge.toFixed(2));
    return true;
  }
  stats.throttled += 1;
  const waitMs = Math.max(1, Math.ceil((charge - tokens) / ruPerSecond * 1000));
  const body = JSON.stringify({ code: "TooManyRequests",
    message: "Message: {\"Errors\":[\"Request rate is large. More Request Units may be needed.\"]}" });
  req.resume();
  res.writeHead(429, { "content-type": "application/json", "x-ms-retry-after-ms": String(waitMs),
    "x-ms-substatus": "3200", "x-ms-request-charge": "0", "content-length": Buffer.byteLength(body) });
  res.end(body);
  return false;
}

{
  const handlers = server.listeners("request");
  server.removeAllListeners("request");
  server.on("request", (req, res) => {
    if (req.method === "GET" && req.url === "/_bench/stats") {
      const cpu = process.cpuUsage();
      if (ruPerSecond > 0) {
        const now = process.hrtime.bigint();
        tokens = Math.min(ruPerSecond, tokens + Number(now - refilledAt) / 1e9 * ruPerSecond);
        refilledAt = now;
      }
      // tokens: what the bucket holds now, so a reader can tell what a run could have used.
      const body = JSON.stringify({ ...stats, tokens: ruPerSecond > 0 ? tokens : 0,
        cpuSeconds: (cpu.user + cpu.system) / 1e6, ruPerSecond });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (req.method === "GET" && req.url.startsWith("/_bench/ids")) {
      const name = new URL(req.url, "https://localhost").searchParams.get("collection");
      const ids = [];
      for (const store of itemStores) {
        const collection = store._parent.read();
        if (collection && collection.id === name) {
          for (const item of store._data.values()) {
            const document = item.read();
            // The collection's partition key ranges are a store of the collection too: documents only.
            if (String(document._self || "").includes("/docs/")) ids.push(document.id);
          }
        }
      }
      const body = JSON.stringify(ids);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (req.url.startsWith("/_faults")) {
      // Fault injection for tests: POST /_faults?partitionKeyContains=<text>&status=503 makes every write
      // whose partition key header holds <text> fail with that status (DELETE /_faults clears it).
      const query = new URL(req.url, "https://localhost").searchParams;
      faults = req.method === "DELETE" ? null : { contains: query.get("partitionKeyContains") || "",
        status: parseInt(query.get("status") || "503", 10), hits: 0 };
      const body = JSON.stringify(faults || {});
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (faults && faults.contains && (req.method === "POST" || req.method === "PUT") &&
        String(req.headers["x-ms-documentdb-partitionkey"] || "").includes(faults.contains)) {
      faults.hits += 1;
      const body = JSON.stringify({ code: "ServiceUnavailable", message: "Injected fault for a test." });
      req.resume();
      res.writeHead(faults.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (!admit(req, res)) return;
    const batchPath = req.method === "POST" && isTrue(req.headers["x-ms-cosmos-is-batch-request"]) &&
      isTrue(req.headers["x-ms-cosmos-batch-atomic"]) &&
      /^\/dbs\/([^/]+)\/colls\/([^/]+)\/docs\/?$/.exec(req.url.split("?")[0]);
    // A point read of an item that does not exist: the package's handler throws on it (it reads the
    // partition key of the missing item) and answers 500; Cosmos DB answers 404, which the SDK raises as
    // CosmosResourceNotFoundError.
    const readPath = req.method === "GET" && account &&
      /^\/dbs\/([^/]+)\/colls\/([^/]+)\/docs\/([^/]+)\/?$/.exec(req.url.split("?")[0]);
    if (readPath && req.headers["x-ms-documentdb-partitionkey"]) {
      const collection = account.database(decodeURIComponent(readPath[1])).collection(decodeURIComponent(readPath[2]));
      const docId = decodeURIComponent(readPath[3]);
      let found = true;
      try {
        found = !collection.read() || Boolean(collection.document(docId,
          parsePartitionKey(req.headers["x-ms-documentdb-partitionkey"], docId)).read());
      } catch (err) {
        found = true; // a malformed header: the package answers it
      }
      if (!found) {
        answer(res, 404, { code: "NotFound", message: "Entity with the specified id does not exist in the system." });
        return;
      }
    }
    if (batchPath) {
      atomicBatch(req, res, decodeURIComponent(batchPath[1]), decodeURIComponent(batchPath[2])).catch((err) => {
        console.error(err);
        if (!res.headersSent) answer(res, 500, { code: "InternalServerError", message: err.message });
      });
      return;
    }
    handlers.forEach((h) => h(req, res));
  });
}
// COSMOS_LATENCY_MS delays every response (a 429 included), to model the network round trip to a real
// account (benchmarks use it; loopback answers in well under a millisecond).
const latencyMs = parseInt(process.env.COSMOS_LATENCY_MS || "0", 10);
if (latencyMs > 0) {
  const handlers = server.listeners("request");
  server.removeAllListeners("request");
  server.on("request", (req, res) => setTimeout(() => handlers.forEach((h) => h(req, res)), latencyMs));
}
server.keepAliveTimeout = keepAliveMs;
server.headersTimeout = keepAliveMs + 1000;
const sockets = new Set();
server.on("connection", (socket) => {
  sockets.add(socket);
  socket.on("close", () => sockets.delete(socket));
});
server.on("error", (err) => {
  console.error(`cosmos-server error: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  const address = server.address();
  console.log(`cosmos-server ready on https://${address.address}:${address.port}/ pid=${process.pid}`);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`cosmos-server stopping on ${signal}`);
  server.close(() => process.exit(0));
  for (const socket of sockets) socket.destroy();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
