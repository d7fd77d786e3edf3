// Opens COUNT subscriptions on one graphql-ws connection and prints how many the server
// accepted and how many it refused, as one JSON line, after a second.
//
//   node many.mjs ws://127.0.0.1:7007/graphql 5
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, count] = process.argv.slice(2);
const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
let refused = 0;
const errors = [];
for (let i = 0; i < Number(count); i++) {
  client.subscribe(
    { query: 'subscription { entityChanged { ref } }' },
    {
      // A refusal by the resolver arrives as a result with errors (then `complete`).
      next: (message) => {
        if (message.errors) {
          refused++;
          errors.push(message.errors[0]?.message);
        }
      },
      error: (error) => {
        refused++;
        errors.push(Array.isArray(error) ? error[0]?.message : String(error?.message ?? error));
      },
      complete: () => {},
    },
  );
}
await new Promise((resolve) => setTimeout(resolve, 1000));
process.stdout.write(JSON.stringify({ refused, accepted: Number(count) - refused, errors }) + '\n');
await client.dispose();
process.exit(0);
