// ws-relay.js: the Node.js reference, what people write when they build a chat backend themselves:
// a `ws` WebSocket server relaying text messages, no auth, no storage. Same protocol as
// bench/bare-relay.c: "id:NAME" -> "ok", then "TO TEXT" is forwarded unchanged to TO.
//   node ws-relay.js [port]
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9002);
const names = new Map();
let relayed = 0;
let dropped = 0;

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false, // throughput: no compression
  clientTracking: false,
  maxPayload: 1 << 20,
  backlog: 4096,
});

wss.on('connection', (ws) => {
  ws._socket.setNoDelay(true);
  let name = null;
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.close(1003);
    const s = data.toString();
    if (name === null) {
      if (!s.startsWith('id:')) return ws.close(1002, 'register first with id:NAME');
      name = s.slice(3);
      names.set(name, ws);
      ws.send('ok');
      return;
    }
    const sp = s.indexOf(' ');
    const to = sp > 0 ? names.get(s.slice(0, sp)) : undefined;
    if (!to) {
      dropped++;
      return;
    }
    to.send(s);
    relayed++;
  });
  ws.on('close', () => {
    if (name !== null && names.get(name) === ws) names.delete(name);
  });
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`ws-relay: listening on ws://127.0.0.1:${port}/`));

function stop() {
  console.error(`ws-relay: relayed ${relayed}, dropped ${dropped}`);
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
