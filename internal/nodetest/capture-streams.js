// One-off: two socket.io 4 servers with @socket.io/redis-streams-adapter 0.3.1 on one Redis,
// a socket.io-client 2.5.0 client on B in room post:1; A does every operation.
// Run from this directory with REDIS_URL, PA and PB (two free ports), under redis-cli MONITOR.
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-streams-adapter");
const { createClient } = require("redis");
const ioc = require("socket.io-client");
const url = process.env.REDIS_URL;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function server(port) {
  const c = createClient({ url }); c.on("error", () => {}); await c.connect();
  const io = new Server({ allowEIO3: true, transports: ["websocket"] });
  io.adapter(createAdapter(c));
  io.on("connection", (s) => { s.on("join", (room, cb) => { s.join(room); cb && cb("ok"); }); });
  io.on("ping-srv", (...a) => { const cb = a.pop(); cb("pong from " + port); });
  io.listen(port);
  return io;
}
(async () => {
  const A = await server(Number(process.env.PA)), B = await server(Number(process.env.PB));
  await sleep(500);
  const c = ioc("http://127.0.0.1:" + process.env.PB, { transports: ["websocket"] });
  c.on("ackme", (x, cb) => cb("acked " + x));
  await new Promise((r) => c.on("connect", r));
  await new Promise((r) => c.emit("join", "post:1", r));
  await sleep(200);
  A.to("post:1").emit("comment", { text: "hello", n: 1 });
  A.to(["post:1", "post:2"]).except("post:3").emit("multi", 42);
  A.emit("all", "x");
  A.to("post:1").emit("bin", Buffer.from([1, 2, 3]));
  await sleep(200);
  console.log("fetch", (await A.in("post:1").fetchSockets()).map((s) => s.id));
  A.in("post:1").socketsJoin("extra");
  A.in("extra").socketsLeave("extra");
  console.log("sse", await A.serverSideEmitWithAck("ping-srv", "a"));
  A.serverSideEmit("ping-srv-noack", 1);
  console.log("ack", await A.to("post:1").timeout(2000).emitWithAck("ackme", 7));
  await sleep(200);
  A.in("post:1").disconnectSockets(true);
  await sleep(500);
  process.exit(0);
})();
