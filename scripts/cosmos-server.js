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
// COSMOS_LATENCY_MS delays every response, to model the network round trip to a real
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
