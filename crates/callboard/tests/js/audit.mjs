// Runs the graphql-http server audits (GraphQL over HTTP spec conformance) against a URL.
// Prints one line per audit; exits 1 when any MUST audit fails.
//
//   node audit.mjs http://127.0.0.1:7007/graphql
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const results = await auditServer({ url });
let failed = 0;
for (const result of results) {
  const must = result.name.startsWith('MUST');
  if (result.status !== 'ok') {
    let detail = result.reason;
    if (result.response) {
      try {
        detail += ` (status ${result.response.status}: ${(await result.response.text()).slice(0, 300)})`;
      } catch {
        // The body may have been read by the audit already.
      }
    }
    console.log(`${result.status.toUpperCase()} ${result.name}: ${detail}`);
    if (must) failed++;
  } else {
    console.log(`ok ${result.name}`);
  }
}
const musts = results.filter((r) => r.name.startsWith('MUST')).length;
console.log(`${musts - failed} of ${musts} MUST audits pass`);
process.exit(failed ? 1 : 0);
