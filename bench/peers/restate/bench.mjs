// Load driver for Restate: the same figures as raftoral-bench workflows.
// Prints one JSON object on stdout.
const ingress = process.env.INGRESS || "http://127.0.0.1:8080";
const runs = Number(process.env.RUNS || 500);
const total = Number(process.env.WORKFLOWS || 2000);

async function call(n) {
  const r = await fetch(`${ingress}/steps/run`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(n),
  });
  if (!r.ok) throw new Error(`restate answered ${r.status}: ${await r.text()}`);
  return r.json();
}

function pct(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function measure(n) {
  for (let i = 0; i < 50; i++) await call(n);
  const lat = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await call(n);
    lat.push(performance.now() - t);
  }
  lat.sort((a, b) => a - b);
  const throughput = [];
  for (const c of [1, 64, 256]) {
    const count = c === 1 ? total / 10 : total;
    const per = Math.max(1, Math.floor(count / c));
    const t = performance.now();
    await Promise.all(Array.from({ length: c }, async () => { for (let i = 0; i < per; i++) await call(n); }));
    const secs = (performance.now() - t) / 1000;
    throughput.push([c, (per * c) / secs, (per * c * n) / secs]);
  }
  return {
    workload: n === 1 ? "ping_pong" : `steps-${n}`,
    p50_ms: pct(lat, 0.5), p90_ms: pct(lat, 0.9), p99_ms: pct(lat, 0.99),
    throughput,
  };
}

const results = [];
for (const n of [1, 10]) results.push(await measure(n));
console.log(JSON.stringify(results));
