// harness.mjs: one Node.js client harness that drives Parley and every reference peer with the
// same direct-message scenario, for the peers parley-bench (C) cannot speak (XMPP). Parley and the
// other peers are measured through it too, so that this comparison is client-for-client fair.
//
//   node harness.mjs --system parley|relay|mqtt|xmpp --port N [--pairs 50] [--window 8]
//        [--rate R] [--warmup 1] [--duration 5] [--payload 150] [--server-pid PID]
//        [--users FILE] [--domain bench.local] [--label NAME] [--json FILE]
//
// N pairs; each client sends to its partner. Every text is "~pb:SENDER:N:T:" padded to the
// payload size, T the send time (ns, this process's monotonic clock). Flat out (rate 0) each
// sender keeps `window` messages in flight, counted by deliveries; at a fixed rate latency is
// measured from the schedule (a late send counts, beyond the 1 ms timer granularity). A run that
// lost or duplicated a message exits 1.
import fs from 'node:fs';
import { WebSocket } from 'ws';
import mqtt from 'mqtt';
import { client as xmppClient, xml } from '@xmpp/client';

const A = {
  system: 'parley', host: '127.0.0.1', port: 8080, pairs: 50, window: 8, rate: 0, warmup: 1,
  duration: 5, payload: 150, 'server-pid': 0, users: '', domain: 'bench.local', label: '',
  json: '', 'drain-ms': 10000, 'connect-batch': 50,
};
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in A) || i + 1 >= process.argv.length) {
    console.error(`harness: unknown or incomplete option ${process.argv[i]}`);
    process.exit(2);
  }
  A[k] = typeof A[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
if (!A.label) A.label = A.system;
const NC = 2 * A.pairs;
const now = () => Number(process.hrtime.bigint());
const runId = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0');
const log = (...a) => console.log(...a);

function text(sender, n, t) {
  const head = `~pb:${sender}:${n}:${t}:`;
  return head.length >= A.payload ? head : head + 'x'.repeat(A.payload - head.length);
}

// ---- server sampling from /proc ----
function procSample() {
  const pid = A['server-pid'];
  if (!pid) return null;
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+)/.exec(status);
    return { t: now(), cpu: Number(f[11]) + Number(f[12]), rss: m ? Number(m[1]) * 1024 : -1 };
  } catch {
    return null;
  }
}
const CLK_TCK = 100;

// ---- Parley users over REST (the same cache file format as parley-bench) ----
async function parleyUsers(n) {
  const users = [];
  if (A.users && fs.existsSync(A.users)) {
    for (const line of fs.readFileSync(A.users, 'utf8').split('\n')) {
      const [uid, token] = line.trim().split(/\s+/);
      if (uid && token && users.length < n) users.push({ uid, token });
    }
  }
  const base = `http://${A.host}:${A.port}`;
  const add = [];
  for (let i = users.length; i < n; i += 20) {
    const batch = [];
    for (let k = i; k < Math.min(n, i + 20); k++) {
      batch.push(fetch(`${base}/v1/accounts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: `h${runId}_${k}`, password: 'bench-password' }),
      }).then(async (r) => {
        const b = await r.json();
        if (r.status !== 201) throw new Error(`registration: ${r.status} ${JSON.stringify(b)}`);
        return { uid: b.user.id, token: b.token };
      }));
    }
    for (const u of await Promise.all(batch)) {
      users.push(u);
      add.push(`${u.uid} ${u.token}\n`);
    }
  }
  if (A.users && add.length) fs.appendFileSync(A.users, add.join(''));
  return users;
}

// ---- drivers: open(i) resolves when the client can send and receive; send(to, text) ----
class Conn {
  constructor(i) {
    this.i = i;
    this.partner = i ^ 1;
    this.sent = 0; this.acked = 0; this.errors = 0; this.delivered = 0; this.phaseSent = 0;
    this.next = 0; this.unique = 0; this.dups = 0; this.gaps = 0; this.stray = 0;
    this.dropped = false;
    this.phase = ((i * 2654435761) % 1000) / 1000;
  }
}

let USERS = [];
const conns = [];
const R = { running: false, sending: false, m0: 0, m1: Infinity, lat: [], delivWindow: 0 };

function onPayload(c, s) {
  if (typeof s !== 'string') s = String(s);
  const p = s.indexOf('~pb:');
  if (p < 0) return;
  const parts = s.slice(p + 4).split(':', 3);
  const sender = Number(parts[0]);
  const n = Number(parts[1]);
  const t = Number(parts[2]);
  const tn = now();
  if (sender === c.i) return; // an own message (sync returns those too)
  if (sender !== c.partner) { c.stray++; return; }
  if (n < c.next) { c.dups++; return; }
  if (n > c.next) c.gaps += n - c.next;
  c.next = n + 1;
  c.unique++;
  if (tn >= R.m0 && tn < R.m1) R.delivWindow++;
  if (R.running && t >= R.m0 && t < R.m1) R.lat.push(tn - t);
  const s2 = conns[sender];
  s2.delivered++;
  pump(s2);
}

const drivers = {
  parley: {
    open(c) {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${A.host}:${A.port}/v1/ws`, { perMessageDeflate: false });
        c.ws = ws;
        c.name = USERS[c.i].uid;
        ws.on('open', () => {
          ws._socket.setNoDelay(true);
          ws.send(JSON.stringify({ type: 'auth', token: USERS[c.i].token }));
        });
        ws.on('message', (data) => {
          const f = JSON.parse(data.toString());
          if (f.type === 'msg') onPayload(c, f.body && f.body.text);
          else if (f.type === 'ack') c.acked++;
          else if (f.type === 'ready') ws.send(JSON.stringify({ type: 'sync', id: 's', after: f.head, limit: 500 }));
          else if (f.type === 'synced') {
            if (f.more) ws.send(JSON.stringify({ type: 'sync', id: 's', after: f.upto, limit: 500 }));
            else resolve();
          } else if (f.type === 'error') {
            c.errors++;
            if (c.errors < 3) console.error(`harness: conn ${c.i}: ${JSON.stringify(f)}`);
          }
        });
        ws.on('error', reject);
        ws.on('close', (code) => { if (R.running) c.dropped = true; reject(new Error(`closed ${code}`)); });
      });
    },
    send(c, to, s, n) {
      c.ws.send(`{"type":"send","id":"${n}","to":"${to.name}","cmid":"${runId}-${n}","kind":"text","body":{"text":"${s}"}}`);
    },
    close(c) { c.ws.terminate(); },
  },
  relay: {
    open(c) {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${A.host}:${A.port}/`, { perMessageDeflate: false });
        c.ws = ws;
        c.name = `c${c.i}`;
        let live = false;
        ws.on('open', () => { ws._socket.setNoDelay(true); ws.send(`id:${c.name}`); });
        ws.on('message', (data) => {
          const s = data.toString();
          if (!live) { if (s === 'ok') { live = true; resolve(); } return; }
          onPayload(c, s);
        });
        ws.on('error', reject);
        ws.on('close', () => { if (R.running) c.dropped = true; });
      });
    },
    send(c, to, s) { c.ws.send(`${to.name} ${s}`); },
    close(c) { c.ws.terminate(); },
  },
  mqtt: {
    open(c) {
      return new Promise((resolve, reject) => {
        c.name = `c${c.i}`;
        const m = mqtt.connect(`mqtt://${A.host}:${A.port}`, {
          clientId: c.name, clean: true, keepalive: 0, reconnectPeriod: 0, protocolVersion: 4,
        });
        c.m = m;
        m.on('connect', () => m.subscribe(`u/${c.name}`, { qos: 0 }, (err) => (err ? reject(err) : resolve())));
        m.on('message', (topic, payload) => onPayload(c, payload.toString()));
        m.on('error', reject);
        m.on('close', () => { if (R.running) c.dropped = true; });
      });
    },
    send(c, to, s) { c.m.publish(`u/${to.name}`, s, { qos: 0 }); },
    close(c) { c.m.end(true); },
  },
  xmpp: {
    open(c) {
      // SASL ANONYMOUS: the server assigns the JID; no accounts to create
      const x = xmppClient({ service: `xmpp://${A.host}:${A.port}`, domain: A.domain });
      c.x = x;
      x.on('error', () => { if (R.running) c.dropped = true; });
      x.on('stanza', (st) => {
        if (st.is('message')) {
          const b = st.getChildText('body');
          if (b) onPayload(c, b);
        }
      });
      return x.start().then((jid) => {
        c.name = jid.toString();
        x.socket.socket?.setNoDelay?.(true);
      });
    },
    send(c, to, s) { c.x.send(xml('message', { to: to.name, type: 'chat' }, xml('body', {}, s))); },
    close(c) { c.x.stop().catch(() => {}); },
  },
};
const D = drivers[A.system];
if (!D) {
  console.error(`harness: unknown system ${A.system}`);
  process.exit(2);
}

function sendOne(c, stamp) {
  const n = c.sent++;
  D.send(c, conns[c.partner], text(c.i, n, stamp), n);
}

function pump(c) {
  if (!R.sending || A.rate > 0) return;
  while (c.sent - c.delivered < A.window) sendOne(c, now());
}

async function main() {
  log(`harness: direct scenario against ${A.system} at ${A.host}:${A.port} (${A.label}), ${NC} connections`);
  if (A.system === 'parley') USERS = await parleyUsers(NC);
  for (let i = 0; i < NC; i++) conns.push(new Conn(i));
  const t0c = now();
  for (let i = 0; i < NC; i += A['connect-batch']) {
    await Promise.all(conns.slice(i, i + A['connect-batch']).map((c) => D.open(c)));
  }
  log(`connected ${NC} in ${((now() - t0c) / 1e9).toFixed(2)} s`);

  const rss = [];
  const sampler = setInterval(() => { const s = procSample(); if (s) rss.push(s); }, 100);
  const t0 = now();
  R.running = true;
  R.sending = true;
  R.m0 = t0 + A.warmup * 1e9;
  R.m1 = R.m0 + A.duration * 1e9;
  let cpuA = null;
  let cpuB = null;
  const perSender = A.rate / NC;
  for (const c of conns) pump(c);
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const tn = now();
      if (!cpuA && tn >= R.m0) cpuA = procSample();
      if (A.rate > 0 && R.sending) {
        for (const c of conns) {
          const due = ((tn - t0) / 1e9) * perSender - c.phase;
          let k = 0;
          while (c.phaseSent < due && k < 10000) {
            let stamp = t0 + ((c.phaseSent + c.phase) / perSender) * 1e9;
            if (tn - stamp < 2e6) stamp = tn;
            sendOne(c, stamp);
            c.phaseSent++;
            k++;
          }
        }
      }
      if (R.sending && tn >= R.m1) {
        R.sending = false;
        cpuB = procSample();
        R.drainUntil = tn + A['drain-ms'] * 1e6;
      }
      if (!R.sending) {
        const done = conns.every((c) => c.unique >= conns[c.partner].sent - conns[c.partner].errors &&
          (A.system !== 'parley' || c.acked + c.errors >= c.sent));
        if (done || tn > R.drainUntil) { clearInterval(tick); resolve(); }
      }
    }, 1);
  });
  R.running = false;
  clearInterval(sampler);

  const lat = Float64Array.from(R.lat).sort();
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] / 1e3 : 0);
  const sum = (f) => conns.reduce((a, c) => a + f(c), 0);
  const sent = sum((c) => c.sent);
  const errors = sum((c) => c.errors);
  const expected = sent - errors;
  const delivered = sum((c) => c.unique);
  const lost = Math.max(0, expected - delivered);
  const dups = sum((c) => c.dups);
  const stray = sum((c) => c.stray);
  const dropped = sum((c) => (c.dropped ? 1 : 0));
  const rate = R.delivWindow / A.duration;
  const cpu = cpuA && cpuB ? (100 * (cpuB.cpu - cpuA.cpu)) / CLK_TCK / ((cpuB.t - cpuA.t) / 1e9) : -1;
  const rssMax = rss.reduce((a, s) => Math.max(a, s.rss), -1);
  const ok = lost === 0 && dups === 0 && errors === 0 && stray === 0 && dropped === 0;
  log(`${A.label} direct (harness): ${A.system}, ${NC} connections: delivered ${rate.toFixed(0)} msg/s ` +
      `(offered ${A.rate > 0 ? A.rate : 'flat out'}), server CPU ${cpu.toFixed(0)} %, RSS max ${(rssMax / 1048576).toFixed(1)} MiB`);
  log(`latency: p50 ${(q(0.5) / 1e3).toFixed(2)} ms, p99 ${(q(0.99) / 1e3).toFixed(2)} ms, ` +
      `p99.9 ${(q(0.999) / 1e3).toFixed(2)} ms, max ${(lat.length ? lat[lat.length - 1] / 1e6 : 0).toFixed(2)} ms (${lat.length} samples)`);
  log(`correctness: sent ${sent}, refused ${errors}, delivered ${delivered}, lost ${lost}, duplicated ${dups}, ` +
      `stray ${stray}, connections dropped ${dropped} -> ${ok ? 'OK' : 'FAILED'}`);
  if (A.json) {
    fs.writeFileSync(A.json, JSON.stringify({
      tool: 'harness', scenario: 'direct', proto: A.system, label: A.label, date: new Date().toISOString(),
      params: { conns: NC, pairs: A.pairs, window: A.window, rate: A.rate, warmup: A.warmup, duration: A.duration, payload: A.payload },
      result: {
        delivered_per_s: rate, offered_per_s: A.rate, server_cpu_pct: cpu, server_rss_max: rssMax,
        latency_us: { count: lat.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: lat.length ? lat[lat.length - 1] / 1e3 : 0 },
        sent, errors, expected, delivered, lost, dup: dups, stray, conns_dropped: dropped,
      },
      ok,
    }) + '\n');
  }
  for (const c of conns) D.close(c);
  setTimeout(() => process.exit(ok ? 0 : 1), 200);
}

const guard = setTimeout(() => { console.error('harness: timed out'); process.exit(3); }, 300000);
guard.unref();
main().catch((e) => { console.error(`harness: ${e.stack || e}`); process.exit(3); });
