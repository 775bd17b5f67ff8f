// A socket.io-client 2.5.0 client (SIO_CLIENT=socket.io-client-4: 4.8.1), driven by the Go
// tests over stdin/stdout, one JSON object per line.
//   out: {"connected": id}; {"event": name, "args": [...]} per event received;
//        {"id": n, "ack": [...]} per answered call; {"disconnected": reason}
//   in:  {"id": n, "event": "...", "args": [...]}  (emits, with an ack callback)
//        {"id": n, "autoAck": true|false}  (answer every event that asks for an
//        acknowledgement with {id: <socket id>, event, args}; off by default)
//        {"id": n, "event": "...", "args": [...], "pad": bytes}  (the same, with one more
//        argument: a string of that many bytes, built here rather than sent over stdin)
//        {"raw": "..."}  (one engine.io message as it is, for malformed packets)
//        {"id": n, "flood": {"event": "...", "n": N, "window": W, "post": p, "prefix": "..."}}  (emits N
//        events {post: p, text: prefix + i}, each with an ack callback, at most W unacknowledged at a
//        time; answers {id, acked, errors, firstError} once every ack is in: errors counts the acks
//        other than "ok")
//        {"id": n, "count": {"event": "...", "prefix": "...", "n": N, "firstMs": ms, "idleMs": ms}}  (counts
//        the events of that name whose first argument's text starts with prefix, without printing them;
//        answers {id, counting: true} at once, then {id, got} at the N-th, or once firstMs pass before
//        the first or idleMs after one)
const io = require(process.env.SIO_CLIENT || "socket.io-client");
const readline = require("readline");

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
//   argv: URL [local address to connect from]
//   SIO_TRANSPORTS: comma-separated transports (default: websocket)
//   SIO_CA: PEM file of the CA to trust for https:// and wss:// (engine.io-client passes it to Node's tls)
const transports = (process.env.SIO_TRANSPORTS || "websocket").split(",");
const opts = { transports, reconnection: false };
if (process.env.SIO_CA) opts.ca = require("fs").readFileSync(process.env.SIO_CA);
if (process.argv[3]) opts.localAddress = process.argv[3];
const socket = io(process.argv[2], opts);
socket.on("connect", () => out({ connected: socket.id }));
socket.on("disconnect", (reason) => out({ disconnected: reason }));
// description: engine.io-client 6 (socket.io-client 4) gives a failed poll's HTTP status there.
socket.on("connect_error", (err) => out({ error: String(err), description: typeof err.description === "number" ? err.description : undefined }));
let autoAck = false;
let counting = null; // the "count" under way: {id, event, prefix, n, idleMs, got, last, timer}
const countDone = () => {
  clearInterval(counting.timer);
  out({ id: counting.id, got: counting.got });
  counting = null;
};
const onevent = socket.onevent;
socket.onevent = function (packet) {
  const [event, ...args] = packet.data || [];
  if (counting && event === counting.event) {
    const text = args[0] && args[0].text;
    if (typeof text === "string" && text.startsWith(counting.prefix)) {
      counting.got++;
      counting.last = Date.now();
      if (counting.got >= counting.n) countDone();
    }
    return onevent.call(this, packet);
  }
  out({ event, args });
  if (autoAck && packet.id != null) this.ack(packet.id)({ id: socket.id, event, args });
  onevent.call(this, packet);
};
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.autoAck !== undefined) {
    autoAck = cmd.autoAck;
    return out({ id: cmd.id, ack: [] });
  }
  if (cmd.raw !== undefined) return socket.io.engine.write(cmd.raw);
  if (cmd.count) {
    counting = { id: cmd.id, ...cmd.count, got: 0, last: Date.now() };
    counting.timer = setInterval(() => {
      if (Date.now() - counting.last >= (counting.got ? counting.idleMs : counting.firstMs)) countDone();
    }, 20);
    return out({ id: cmd.id, counting: true });
  }
  if (cmd.flood) return flood(cmd.id, cmd.flood);
  const args = cmd.args || [];
  if (cmd.pad) args.push("x".repeat(cmd.pad));
  socket.emit(cmd.event, ...args, (...ack) => out({ id: cmd.id, ack }));
});
function flood(id, { event, n, window, post, prefix }) {
  let sent = 0, acked = 0, errors = 0, firstError;
  const next = () => {
    const i = sent++;
    socket.emit(event, { post, text: prefix + i }, (ack) => {
      acked++;
      if (ack !== "ok" && errors++ === 0) firstError = ack;
      if (sent < n) next();
      else if (acked === n) out({ id, acked, errors, firstError });
    });
  };
  for (let k = 0; k < Math.min(window, n); k++) next();
}
process.stdin.on("end", () => { socket.close(); process.exit(0); });
