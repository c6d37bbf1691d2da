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
    if (admit(req, res)) handlers.forEach((h) => h(req, res));
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
