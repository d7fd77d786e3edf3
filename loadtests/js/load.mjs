// API load scenarios against a running `callboard serve`. Prints one JSON line per scenario:
// {scenario, requests, errors, rps, p50_ms, p90_ms, p99_ms, max_ms}.
//
//   node load.mjs http://127.0.0.1:7007/graphql [--rate 500] [--seconds 20] [--subscribers 1000]
//
// Entity by ref runs open-loop at --rate: requests start on schedule whether or not earlier ones
// have finished, so a slow server shows up as latency, not as a politely reduced load. The other
// scenarios run one request at a time (latency without queueing).
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { gql, opt, url } from './client.mjs';

const RATE = opt('rate', 500);
const SECONDS = opt('seconds', 20);
const SUBSCRIBERS = opt('subscribers', 1000);

function summary(scenario, latencies, errors, seconds) {
  const sorted = [...latencies].sort((a, b) => a - b);
  const q = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN);
  const round = (x) => Math.round(x * 100) / 100;
  const line = {
    scenario,
    requests: latencies.length + errors,
    errors,
    rps: round((latencies.length + errors) / seconds),
    p50_ms: round(q(0.5)),
    p90_ms: round(q(0.9)),
    p99_ms: round(q(0.99)),
    max_ms: round(sorted[sorted.length - 1] ?? NaN),
  };
  console.log(JSON.stringify(line));
  return line;
}

async function openLoop(scenario, rate, seconds, makeRequest) {
  const latencies = [];
  let errors = 0;
  const pending = [];
  const started = performance.now();
  const total = Math.round(rate * seconds);
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    pending.push(
      makeRequest(i).then(
        () => latencies.push(performance.now() - t0),
        () => errors++,
      ),
    );
  }
  await Promise.all(pending);
  return summary(scenario, latencies, errors, (performance.now() - started) / 1000);
}

async function sequential(scenario, count, makeRequest) {
  const latencies = [];
  let errors = 0;
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    try {
      await makeRequest(i);
      latencies.push(performance.now() - t0);
    } catch {
      errors++;
    }
  }
  return summary(scenario, latencies, errors, (performance.now() - started) / 1000);
}

// Refs to ask for: a few pages of components.
const refs = [];
let after = null;
for (let page = 0; page < 10; page++) {
  const data = await gql(
    'query($after: String) { entities(filter: [{all: ["kind=component"]}], first: 500, after: $after) { nodes { ref } pageInfo { endCursor hasNextPage } } }',
    { after },
  );
  refs.push(...data.entities.nodes.map((n) => n.ref));
  after = data.entities.pageInfo.endCursor;
  if (!data.entities.pageInfo.hasNextPage) break;
}
const pick = (i) => refs[(i * 7919) % refs.length];

// Warm up connections and caches.
await openLoop('warm-up', 100, 3, (i) => gql('query($r: String!) { entity(ref: $r) { ref } }', { r: pick(i) }));

await openLoop('entity by ref', RATE, SECONDS, (i) =>
  gql('query($r: String!) { entity(ref: $r) { ref title owner { ref } ... on Component { system { ref } } } }', { r: pick(i) }),
);
await sequential('filtered list (20, with owners, totalCount)', 50, (i) =>
  gql(
    '{ entities(filter: [{all: ["kind=component", "spec.lifecycle=production"]}], first: 20) { totalCount nodes { ref owner { ref } } } }',
  ),
);
await sequential('full-text search (20, totalCount)', 50, (i) =>
  gql('query($q: String!) { entities(search: $q, first: 20) { totalCount nodes { ref } } }', {
    q: ['order', 'payment', 'service 1', 'python', 'web'][i % 5],
  }),
);
await sequential('facets (spec.type, all entities)', 50, () => gql('{ facets(field: "spec.type") { value count } }'));
await sequential('facets (metadata.tags, components)', 50, () =>
  gql('{ facets(field: "metadata.tags", filter: [{all: ["kind=component"]}]) { value count } }'),
);
// A filter the kept counts cannot answer: counted from the matching documents.
await sequential('facets (spec.lifecycle, components of type service: counted from documents)', 20, () =>
  gql('{ facets(field: "spec.lifecycle", filter: [{all: ["kind=component", "spec.type=service"]}]) { value count } }'),
);
await sequential('graph: dependencies at depth 3', 200, (i) =>
  gql('query($r: String!) { dependencies(ref: $r, depth: 3) { ref depth } }', { r: pick(i) }),
);
await sequential('mutation: applyEntity, waiting for the read model', 30, (i) =>
  gql(
    'mutation($e: JSON!) { applyEntity(entity: $e, wait: true) { status projected } }',
    {
      e: {
        apiVersion: 'backstage.io/v1alpha1',
        kind: 'Resource',
        metadata: { name: `loadtest-${i % 10}`, description: `run ${Date.now()}` },
        spec: { type: 'database', owner: 'group:default/loadtest' },
      },
    },
  ).then((d) => {
    if (d.applyEntity.status !== 'OK' || !d.applyEntity.projected) throw new Error('not applied');
  }),
);

// Subscribers: each on its own connection, all watching one entity; one change; time to each.
if (SUBSCRIBERS > 0) {
  const target = 'resource:default/loadtest-sub';
  const apply = (n) =>
    gql('mutation($e: JSON!) { applyEntity(entity: $e) { status } }', {
      e: {
        apiVersion: 'backstage.io/v1alpha1',
        kind: 'Resource',
        metadata: { name: 'loadtest-sub', description: `version ${n} ${Date.now()}` },
        spec: { type: 'database', owner: 'group:default/loadtest' },
      },
    });
  await apply(0);
  const wsUrl = url.replace(/^http/, 'ws');
  const clients = [];
  let connected = 0;
  let sent = 0;
  const received = [];
  await Promise.all(
    Array.from({ length: SUBSCRIBERS }, () =>
      new Promise((resolve) => {
        const client = createClient({
          url: wsUrl,
          webSocketImpl: WebSocket,
          retryAttempts: 0,
          lazy: false,
          on: { connected: () => (connected++, resolve()), error: () => resolve() },
        });
        clients.push(client);
        client.subscribe(
          { query: `subscription { entityChanged(refs: ["${target}"]) { ref sequence } }` },
          { next: () => received.push(performance.now() - sent), error: () => {}, complete: () => {} },
        );
      }),
    ),
  );
  await new Promise((r) => setTimeout(r, 2000));
  sent = performance.now();
  await apply(1);
  const deadline = performance.now() + 30000;
  while (received.length < connected && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const line = summary(`${SUBSCRIBERS} subscribers, one change (latency from the mutation)`, received, connected - received.length, (performance.now() - sent) / 1000);
  console.log(JSON.stringify({ subscribers_connected: connected, delivered: received.length }));
  await Promise.all(clients.map((c) => c.dispose()));
  void line;
}
process.exit(0);
