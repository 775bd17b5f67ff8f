// Publishes with the npm @socket.io/redis-emitter 5.x, then exits.
//   env: REDIS_URL; argv: one JSON command
//   {"nsp": "/", "rooms": [...], "except": [...], "op": "emit" | "join" | "disconnect" | "serverSideEmit",
//    "event": "...", "args": [...], "join": "room"}
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");

async function main() {
  const cmd = JSON.parse(process.argv[2]);
  const client = createClient({ url: process.env.REDIS_URL });
  await client.connect();
  let op = new Emitter(client).of(cmd.nsp || "/");
  if (cmd.rooms && cmd.rooms.length) op = op.to(cmd.rooms);
  if (cmd.except && cmd.except.length) op = op.except(cmd.except);
  switch (cmd.op) {
    case "emit": op.emit(cmd.event, ...(cmd.args || [])); break;
    case "join": op.socketsJoin(cmd.join); break;
    case "disconnect": op.disconnectSockets(true); break;
    case "serverSideEmit": new Emitter(client).of(cmd.nsp || "/").serverSideEmit(cmd.event, ...(cmd.args || [])); break;
  }
  await client.quit(); // after the PUBLISH above has been answered
  process.stdout.write(JSON.stringify({ ok: true }) + "\n");
}
main().catch((err) => { process.stdout.write(JSON.stringify({ error: String(err) }) + "\n"); process.exit(1); });
