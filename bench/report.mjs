// report.mjs: turns bench/results/*.json into summary.json, summary.md (the tables of
// bench/README.md) and latency-vs-load.png (gnuplot).   node bench/report.mjs [RESULTS_DIR]
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const dir = process.argv[2] || path.join(path.dirname(new URL(import.meta.url).pathname), 'results');
const R = {};
for (const f of fs.readdirSync(dir)) {
  if (!f.endsWith('.json') || f === 'summary.json') continue;
  try { R[f.slice(0, -5)] = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')); } catch { /* partial file */ }
}
const get = (prefix) => Object.keys(R).filter((k) => k.startsWith(prefix)).sort().map((k) => R[k]);
const stats = (vals) => {
  const v = vals.filter((x) => typeof x === 'number' && x >= 0).sort((a, b) => a - b);
  if (!v.length) return null;
  return { median: v[Math.floor(v.length / 2)], min: v[0], max: v[v.length - 1], n: v.length };
};
const fmtRate = (s) => (s ? `${Math.round(s.median).toLocaleString('en-US')}${s.n > 1 ? ` (${Math.round(s.min).toLocaleString('en-US')}–${Math.round(s.max).toLocaleString('en-US')})` : ''}` : 'n/a');
const fmtMs = (s) => (s ? `${(s.median / 1000).toFixed(2)}${s.n > 1 ? ` (${(s.min / 1000).toFixed(2)}–${(s.max / 1000).toFixed(2)})` : ''}` : 'n/a');
const ratio = (a, b) => (a && b && b.median > 0 ? `${(a.median / b.median).toFixed(2)}×` : 'n/a');
const okAll = (runs) => (runs.length ? runs.every((r) => r.ok) : null);
const lostDup = (runs) => runs.reduce((a, r) => a + (r.result?.lost || 0) + (r.result?.dup || 0), 0);

const S = { tables: {}, targets: [] };
const md = [];
const machine = fs.existsSync(path.join(dir, 'machine.txt')) ? fs.readFileSync(path.join(dir, 'machine.txt'), 'utf8').trim() : '';
md.push('```', machine, '```', '');

// ---- direct messages, parley-bench ----
const csys = ['parley', 'bare', 'wsrelay', 'mosquitto', 'ejabberd', 'prosody'];
const names = { parley: 'Parley', bare: 'bare relay', wsrelay: 'Node ws relay', mosquitto: 'mosquitto QoS 0', ejabberd: 'ejabberd', prosody: 'prosody' };
function directTable(tool, systems, title) {
  const flat = {};
  const p99 = {};
  const ok = {};
  const cpu = {};
  for (const s of systems) {
    const runs = get(`${tool}-direct-${s}-flat-`);
    flat[s] = stats(runs.map((r) => r.result.delivered_per_s));
    cpu[s] = stats(runs.map((r) => (r.result.server_cpu_pct > 0 && r.result.delivered_per_s > 0 ? (r.result.server_cpu_pct / 100) * 1e6 / r.result.delivered_per_s : -1)));
    const half = get(`${tool}-direct-${s}-rate50-`);
    p99[s] = stats(half.map((r) => r.result.latency_us.p99));
    ok[s] = okAll([...runs, ...half]);
  }
  S.tables[`${tool}-direct`] = { flat, p99_at_50pct: p99, server_cpu_us_per_msg: cpu, ok };
  md.push(`### ${title}`, '');
  md.push(`| | ${systems.map((s) => names[s]).join(' | ')} |`);
  md.push(`|---|${systems.map(() => '---').join('|')}|`);
  md.push(`| delivered msg/s, flat out, median (min–max) | ${systems.map((s) => fmtRate(flat[s])).join(' | ')} |`);
  md.push(`| Parley ÷ peer | ${systems.map((s) => (s === 'parley' ? '1' : ratio(flat.parley, flat[s]))).join(' | ')} |`);
  md.push(`| server CPU per delivered message, flat out, µs | ${systems.map((s) => (cpu[s] ? cpu[s].median.toFixed(1) : 'n/a')).join(' | ')} |`);
  md.push(`| p99 latency at 50 % of its own flat-out rate, ms | ${systems.map((s) => fmtMs(p99[s])).join(' | ')} |`);
  md.push(`| every message exactly once | ${systems.map((s) => (ok[s] === null ? 'n/a' : ok[s] ? 'yes' : 'NO')).join(' | ')} |`);
  md.push('');
  return flat;
}
const np = (tool) => get(`${tool}-direct-parley-flat-`)[0]?.params.pairs ?? '?';
const cflat = directTable('c', csys, `Direct messages (scenario 2), parley-bench (C, libuv): ${np('c')} pairs, 150-byte text`);
const hsys = ['parley', 'bare', 'wsrelay', 'mosquitto', 'ejabberd', 'prosody'];
const hflat = directTable('h', hsys, `Direct messages (scenario 2), the one Node.js harness for every system: ${np('h')} pairs, 150-byte text`);

// ---- idle ----
const idle = {};
for (const s of csys) {
  const r = get(`c-idle-${s}`)[0];
  if (r) idle[s] = r.result;
}
S.tables.idle = idle;
md.push('### Idle capacity (scenario 1), parley-bench', '');
md.push(`| | ${csys.map((s) => names[s]).join(' | ')} |`);
md.push(`|---|${csys.map(() => '---').join('|')}|`);
md.push(`| bytes per idle connection (RSS slope) | ${csys.map((s) => (idle[s] ? Math.round(idle[s].bytes_per_conn).toLocaleString('en-US') : 'n/a')).join(' | ')} |`);
md.push(`| Parley ÷ peer (memory: lower is better for Parley) | ${csys.map((s) => (s === 'parley' ? '1' : idle[s] && idle.parley && idle[s].bytes_per_conn > 0 ? `${(idle.parley.bytes_per_conn / idle[s].bytes_per_conn).toFixed(2)}×` : 'n/a')).join(' | ')} |`);
md.push(`| connections held | ${csys.map((s) => (idle[s] ? idle[s].conns.toLocaleString('en-US') : 'n/a')).join(' | ')} |`);
const lastStep = (s) => (idle[s]?.steps?.length ? idle[s].steps[idle[s].steps.length - 1] : null);
md.push(`| connect rate at the last step, /s | ${csys.map((s) => (lastStep(s) ? Math.round(lastStep(s).connect_rate).toLocaleString('en-US') : 'n/a')).join(' | ')} |`);
md.push(`| connect-to-live p99 at the last step, ms | ${csys.map((s) => (lastStep(s) ? (lastStep(s).connect_ms_x1000.p99 / 1000).toFixed(1) : 'n/a')).join(' | ')} |`);
md.push(`| idle server CPU at the last step, % | ${csys.map((s) => (lastStep(s) ? lastStep(s).idle_cpu_pct.toFixed(1) : 'n/a')).join(' | ')} |`);
md.push('');

// ---- catch-up, slow, groups ----
const cu = get('c-catchup-parley')[0];
const slow = get('c-slow-parley')[0];
const groups = ['10', '100', '1000'].map((g) => [g, get(`c-group-parley-${g}`)[0]]).filter(([, r]) => r);
S.tables.catchup = cu?.result || null;
S.tables.slow = slow?.result ? { ...slow.result, rss_timeline: undefined } : null;
S.tables.groups = Object.fromEntries(groups.map(([g, r]) => [g, r.result]));
md.push('### Parley alone: catch-up (4), slow consumers (5), group fan-out (3)', '');
md.push('| scenario | result |', '|---|---|');
if (cu) {
  md.push(`| 4. offline catch-up: ${cu.params.catchup_n.toLocaleString('en-US')} waiting messages, connect + auth + sync until \`more:false\` | median ${cu.result.sync_s_median.toFixed(3)} s (min ${cu.result.sync_s_min.toFixed(3)}, max ${cu.result.sync_s_max.toFixed(3)}) over ${cu.result.syncs.length} syncs; storing them took ${cu.result.store_s.toFixed(1)} s; ${cu.ok ? 'all delivered once' : 'FAILED'} |`);
}
if (slow) {
  const r = slow.result;
  md.push(`| 5. slow consumers: ${r.slow_clients} of ${r.conns} clients stop reading for ${slow.params.duration} s, their partners sending them ${slow.params.slow_rate} msg/s each, the others ${slow.params.rate} msg/s in total | server RSS while they do not read +${((r.rss_slow_max - r.rss_before) / 1048576).toFixed(1)} MiB (${((r.rss_slow_max - r.rss_before) / Math.max(1, r.slow_clients) / 1024).toFixed(0)} KiB per slow client; send_queue_max is 1,024 KiB), ${(r.rss_slow_last5s_change / 1048576).toFixed(2)} MiB change over its last 5 s; +${(r.rss_growth / 1048576).toFixed(1)} MiB at most, after they read again; others' p99 ${(r.baseline_latency_us.p99 / 1000).toFixed(2)} ms before → ${(r.latency_us.p99 / 1000).toFixed(2)} ms during; after they read again: ${slow.ok ? 'every message delivered once' : 'FAILED'} |`);
}
for (const [g, r] of groups) {
  if (r.result.skipped) {
    md.push(`| 3. group fan-out | skipped: ${r.result.reason} |`);
    break;
  }
  md.push(`| 3. group fan-out, ${r.params.groups} group(s) of ${g}, one sender each, flat out | ${Math.round(r.result.delivered_per_s).toLocaleString('en-US')} deliveries/s, p99 ${(r.result.latency_us.p99 / 1000).toFixed(1)} ms; ${r.ok ? 'all delivered once' : 'FAILED'} |`);
}
md.push('');

// ---- targets ----
const t = (name, value, goal, met) => S.targets.push({ name, value, goal, met });
const rr = (a, b) => (a && b && b.median > 0 ? a.median / b.median : null);
t('direct msg/s vs mosquitto QoS 0 (C client)', rr(cflat.parley, cflat.mosquitto), '≥ 3×', rr(cflat.parley, cflat.mosquitto) >= 3);
t('direct msg/s vs mosquitto QoS 0 (Node harness)', rr(hflat.parley, hflat.mosquitto), '≥ 3×', rr(hflat.parley, hflat.mosquitto) >= 3);
t('direct msg/s vs ejabberd (C client)', rr(cflat.parley, cflat.ejabberd), '≥ 10×', rr(cflat.parley, cflat.ejabberd) >= 10);
t('direct msg/s vs ejabberd (Node harness)', rr(hflat.parley, hflat.ejabberd), '≥ 10×', rr(hflat.parley, hflat.ejabberd) >= 10);
t('direct msg/s vs bare relay (C client)', rr(cflat.parley, cflat.bare), '≥ 0.5×', rr(cflat.parley, cflat.bare) >= 0.5);
t('memory per idle authenticated connection, KiB', idle.parley ? idle.parley.bytes_per_conn / 1024 : null, '< 8', idle.parley ? idle.parley.bytes_per_conn < 8192 : false);
t('100,000 waiting messages synced, s', cu ? cu.result.sync_s_median : null, '< 2', cu ? cu.result.sync_s_median < 2 && cu.params.catchup_n >= 100000 : false);
md.push('### Targets', '', '| target | measured | goal | met |', '|---|---|---|---|');
for (const x of S.targets) {
  const v = x.value === null || x.value === undefined ? 'n/a' : x.name.includes('vs') ? `${x.value.toFixed(2)}×` : x.value.toFixed(2);
  md.push(`| ${x.name} | ${v} | ${x.goal} | ${x.met ? 'yes' : '**no**'} |`);
}
md.push('');
const allRuns = Object.values(R);
S.runs = allRuns.length;
S.failed_runs = allRuns.filter((r) => r.ok === false).map((r) => `${r.tool}/${r.scenario}/${r.label}`);
S.lost_or_duplicated = lostDup(allRuns);
md.push(`${allRuns.length} runs; ${S.failed_runs.length ? `failed: ${S.failed_runs.join(', ')}` : 'every run delivered every message exactly once'}.`, '');
fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(S, null, 1) + '\n');
fs.writeFileSync(path.join(dir, 'summary.md'), md.join('\n') + '\n');
console.log(md.join('\n'));

// ---- plot: p99 and p50 latency against offered load (parley-bench sweep) ----
const series = [];
for (const s of csys) {
  const pts = [];
  for (const r of get(`c-direct-${s}-rate`)) pts.push([r.result.offered_per_s, r.result.latency_us.p50 / 1000, r.result.latency_us.p99 / 1000]);
  const byRate = new Map();
  for (const p of pts) {
    const k = Math.round(p[0]);
    if (!byRate.has(k)) byRate.set(k, []);
    byRate.get(k).push(p);
  }
  const rows = [...byRate.entries()].sort((a, b) => a[0] - b[0]).map(([k, ps]) => {
    const m = (i) => ps.map((p) => p[i]).sort((a, b) => a - b)[Math.floor(ps.length / 2)];
    return [k, m(1), m(2)];
  });
  const flat = get(`c-direct-${s}-flat-`).map((r) => [r.result.delivered_per_s, r.result.latency_us.p50 / 1000, r.result.latency_us.p99 / 1000]).sort((a, b) => a[0] - b[0]);
  if (!rows.length) continue;
  const f = path.join(dir, `plot-${s}.dat`);
  fs.writeFileSync(f, '# offered_msgs_per_s p50_ms p99_ms (fixed offered rates)\n' + rows.map((r) => r.join(' ')).join('\n') + '\n');
  const ff = path.join(dir, `plot-${s}-flat.dat`);
  fs.writeFileSync(ff, '# delivered_msgs_per_s p50_ms p99_ms (flat out, window of 8 per sender: the median run)\n' + (flat.length ? flat[Math.floor(flat.length / 2)].join(' ') : '') + '\n');
  series.push([s, path.basename(f), path.basename(ff)]); /* the script runs in dir: names only */
}
const pairs = get('c-direct-parley-flat-')[0]?.params.pairs ?? '?';
if (series.length) {
  const png = 'latency-vs-load.png';
  const plots = series.flatMap(([s, f, ff], i) => [
    `'${f}' using 1:3 with linespoints lw 2 pt 7 lc ${i + 1} title '${names[s]} p99'`,
    `'${f}' using 1:2 with linespoints lw 1 dt 2 pt 6 lc ${i + 1} title '${names[s]} p50'`,
    `'${ff}' using 1:3 with points pt 3 ps 2 lc ${i + 1} title '${names[s]} p99, flat out'`,
  ]);
  const gp = [
    `set terminal pngcairo size 1100,700 font ',11'`, `set output '${png}'`,
    `set title 'Direct messages: latency against offered load (parley-bench, ${pairs} pairs, 150-byte text, fixed rates; stars: flat out)'`,
    `set xlabel 'offered messages per second (log)'`, `set ylabel 'latency, ms (log)'`,
    'set logscale xy', 'set grid', 'set key outside right', `plot ${plots.join(', ')}`,
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'latency-vs-load.gp'), gp + '\n');
  try {
    execFileSync('gnuplot', ['latency-vs-load.gp'], { cwd: dir, stdio: 'inherit' });
    console.log(`plot: ${path.join(dir, png)}`);
  } catch (e) {
    console.error(`report: gnuplot failed (${e.message}); the data is in ${dir}/plot-*.dat`);
  }
}
