// A Node.js socket.io 4 server with @socket.io/redis-adapter 8, driven by the
// Go tests over stdin/stdout, one JSON object per line.
//   env: PORT, REDIS_URL; NODE_NAME (optional: socket.data.node of its sockets, as the
//        example's Go nodes set it); or REDIS_CLUSTER (comma-separated host:port) with
//        SHARDED=1 for createShardedAdapter (else createAdapter on the cluster);
//        STREAMS=1 for @socket.io/redis-streams-adapter 0.3 instead (with SHARDED=1:
//        useShardedPubSub), on either
//   out: {"ready": true, "uid": "..."} once listening; then one answer per command
//        and {"event": name, "args": [...]} for events its own test client
//        cannot see (server-side emits).
//   in:  {"id": n, "op": "emit" | "emitWithAck" | "fetch" | "allRooms" | "serverSideEmit" | "join" | "disconnect",
//         "rooms": [...], "except": [...], "event": "...", "args": [...]}
const { Server } = require("socket.io");
const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
const { createAdapter: createStreamsAdapter } = require("@socket.io/redis-streams-adapter");
const { createClient, createCluster } = require("redis");
const readline = require("readline");

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function main() {
  const pub = process.env.REDIS_CLUSTER
    ? createCluster({ rootNodes: process.env.REDIS_CLUSTER.split(",").map((a) => ({ url: "redis://" + a })) })
    : createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  pub.on("error", () => {});
  sub.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);

  const io = new Server({ allowEIO3: true, transports: ["websocket"] });
  // KEY: the key prefix (and stream name), so that tests on a shared Redis
  // do not count each other's servers. default: "socket.io"
  const key = process.env.KEY || "socket.io";
  if (process.env.STREAMS === "1") {
    io.adapter(createStreamsAdapter(pub, { useShardedPubSub: process.env.SHARDED === "1", streamName: key, channelPrefix: key }));
  } else {
    io.adapter(process.env.SHARDED === "1"
      ? createShardedAdapter(pub, sub, { channelPrefix: key })
      : createAdapter(pub, sub, { requestsTimeout: 3000, key }));
  }
  io.on("connection", (socket) => {
    if (process.env.NODE_NAME) socket.data.node = process.env.NODE_NAME;
    socket.on("join", (room, cb) => { socket.join(room); if (cb) cb("ok"); });
    socket.on("leave", (room, cb) => { socket.leave(room); if (cb) cb("ok"); });
    // The example's comment contract: to the post's room, acked "ok".
    socket.on("comment", (c, cb) => {
      io.to("post:" + c.post).emit("comment", { post: c.post, text: c.text, node: "node" });
      if (cb) cb("ok");
    });
  });
  io.on("ping", (...args) => {
    const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
    out({ event: "ping", args });
    if (cb) cb({ from: "node", got: args });
  });

  const sel = (cmd) => {
    let op = io.to(cmd.rooms || []);
    if (cmd.except && cmd.except.length) op = op.except(cmd.except);
    return op;
  };
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", async (line) => {
    const cmd = JSON.parse(line);
    try {
      switch (cmd.op) {
        case "emit":
          sel(cmd).emit(cmd.event, ...(cmd.args || []));
          return out({ id: cmd.id, ok: true });
        case "fetch": {
          const sockets = await sel(cmd).fetchSockets();
          return out({ id: cmd.id, sockets: sockets.map((s) => ({ id: s.id, rooms: [...s.rooms] })) });
        }
        case "allRooms":
          return out({ id: cmd.id, rooms: [...(await io.of("/").adapter.allRooms())] });
        case "serverCount":
          return out({ id: cmd.id, count: await io.of("/").adapter.serverCount() });
        case "emitWithAck": { // acks from every client, or those in time: {acks, timedOut}
          const [acks, timedOut] = await new Promise((resolve) =>
            sel(cmd).timeout(cmd.timeout || 3000).emit(cmd.event, ...(cmd.args || []), (err, responses) => resolve([responses, !!err])));
          return out({ id: cmd.id, acks, timedOut });
        }
        case "serverSideEmit": {
          const acks = await io.serverSideEmitWithAck(cmd.event, ...(cmd.args || []));
          return out({ id: cmd.id, acks });
        }
        case "join":
          sel(cmd).socketsJoin(cmd.join);
          return out({ id: cmd.id, ok: true });
        case "leave":
          sel(cmd).socketsLeave(cmd.leave);
          return out({ id: cmd.id, ok: true });
        case "disconnect":
          sel(cmd).disconnectSockets(true);
          return out({ id: cmd.id, ok: true });
        case "burst": { // n events of size bytes to a room, as fast as the loop goes
          const payload = "x".repeat(cmd.size || 0);
          for (let i = 0; i < cmd.n; i++) io.to(cmd.room).emit("m", i, payload);
          return out({ id: cmd.id, ok: true });
        }
        case "localRooms":
          return out({ id: cmd.id, rooms: [...io.of("/").adapter.rooms.keys()] });
      }
      out({ id: cmd.id, error: "unknown op " + cmd.op });
    } catch (err) {
      out({ id: cmd.id, error: String(err && err.message || err) });
    }
  });
  rl.on("close", () => process.exit(0));

  io.listen(Number(process.env.PORT));
  out({ ready: true, uid: io.of("/").adapter.uid });
}

main().catch((err) => { console.error(err); process.exit(1); });
