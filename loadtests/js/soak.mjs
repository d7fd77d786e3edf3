// Soak load against a running `callboard serve`: for --seconds, mixed reads and writes at a fixed
// rate, with subscribers held open and some of them replaced every few seconds (connection churn
// is where leaks hide). Prints one JSON line per --report seconds: requests, errors, p50/p99 and
// the changes the subscribers received.
//
//   node soak.mjs http://127.0.0.1:7007/graphql [--seconds 1800] [--reads 50] [--writes 5]
//                 [--subscribers 50] [--churn 5] [--report 60]
//
// Reads (per second, open loop): entity by ref, a filtered list, facets, search and a graph
// question in turn. Writes: applyEntity on a rotating set of 200 resources, each a new version.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { gql, opt, url } from './client.mjs';

const SECONDS = opt('seconds', 1800);
const READS = opt('reads', 50);
const WRITES = opt('writes', 5);
const SUBSCRIBERS = opt('subscribers', 50);
const CHURN = opt('churn', 5);
const REPORT = opt('report', 60);

const refs = (await gql('{ entities(filter: [{all: ["kind=component"]}], first: 500) { nodes { ref } } }')).entities.nodes.map(
  (n) => n.ref,
);
const pick = (i) => refs[(i * 7919) % refs.length];
const reads = [
  (i) => gql('query($r: String!) { entity(ref: $r) { ref title owner { ref } ... on Component { system { ref } } } }', { r: pick(i) }),
  () => gql('{ entities(filter: [{all: ["kind=component", "spec.lifecycle=production"]}], first: 20) { totalCount nodes { ref owner { ref } } } }'),
  () => gql('{ facets(field: "spec.type") { value count } }'),
  (i) => gql('query($q: String!) { entities(search: $q, first: 20) { totalCount nodes { ref } } }', { q: ['order', 'payment', 'python', 'web'][i % 4] }),
  (i) => gql('query($r: String!) { dependencies(ref: $r, depth: 3) { ref depth } }', { r: pick(i) }),
];
const write = (i) =>
  gql('mutation($e: JSON!) { applyEntity(entity: $e) { status } }', {
    e: {
      apiVersion: 'backstage.io/v1alpha1',
      kind: 'Resource',
      metadata: { name: `soak-${i % 200}`, description: `version ${i}` },
      spec: { type: 'database', owner: 'group:default/soak' },
    },
  });

let window = { latencies: [], errors: 0, received: 0 };
const record = (promise) => {
  const t0 = performance.now();
  promise.then(
    () => window.latencies.push(performance.now() - t0),
    () => window.errors++,
  );
};

// Subscribers, each on its own connection, watching the soak resources' owner.
const wsUrl = url.replace(/^http/, 'ws');
function subscriber() {
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  client.subscribe(
    { query: 'subscription { entityChanged(owners: ["group:default/soak"]) { ref sequence } }' },
    { next: () => window.received++, error: () => {}, complete: () => {} },
  );
  return client;
}
const clients = Array.from({ length: SUBSCRIBERS }, subscriber);

const started = performance.now();
let lastReport = started;
let reads_sent = 0;
let writes_sent = 0;
let churned = 0;
while (performance.now() - started < SECONDS * 1000) {
  const elapsed = (performance.now() - started) / 1000;
  // Open loop: whatever is due now is sent now, whether earlier requests finished or not.
  while (reads_sent < elapsed * READS) {
    record(reads[reads_sent % reads.length](reads_sent));
    reads_sent++;
  }
  while (writes_sent < elapsed * WRITES) {
    record(write(writes_sent));
    writes_sent++;
  }
  while (CHURN > 0 && churned < elapsed / CHURN && clients.length > 0) {
    const i = churned % clients.length;
    await clients[i].dispose();
    clients[i] = subscriber();
    churned++;
  }
  if (performance.now() - lastReport >= REPORT * 1000) {
    const sorted = [...window.latencies].sort((a, b) => a - b);
    const q = (p) => (sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 100) / 100 : null);
    console.log(
      JSON.stringify({
        t: Math.round(elapsed),
        requests: sorted.length + window.errors,
        errors: window.errors,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        changes_received: window.received,
        subscribers: clients.length,
        replaced: churned,
      }),
    );
    window = { latencies: [], errors: 0, received: 0 };
    lastReport = performance.now();
  }
  await new Promise((r) => setTimeout(r, 10));
}
await Promise.all(clients.map((c) => c.dispose()));
process.exit(0);
