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
const onevent = socket.onevent;
socket.onevent = function (packet) {
  const [event, ...args] = packet.data || [];
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
  const args = cmd.args || [];
  if (cmd.pad) args.push("x".repeat(cmd.pad));
  socket.emit(cmd.event, ...args, (...ack) => out({ id: cmd.id, ack }));
});
process.stdin.on("end", () => { socket.close(); process.exit(0); });
