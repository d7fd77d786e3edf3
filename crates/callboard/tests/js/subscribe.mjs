// Subscribes with the stock graphql-ws client and prints one JSON line per event:
// {"event":"connected"}, then {"event":"next","data":…} per message, {"event":"error",…}.
//
//   node subscribe.mjs ws://127.0.0.1:7007/graphql 'subscription { entityChanged { ref } }'
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, query] = process.argv.slice(2);
const print = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  on: { connected: () => print({ event: 'connected' }) },
});
client.subscribe(
  { query },
  {
    next: (message) => print({ event: 'next', at: Date.now(), ...message }),
    error: (error) => {
      print({ event: 'error', error: Array.isArray(error) ? error : String(error?.message ?? error) });
      process.exit(1);
    },
    complete: () => {
      print({ event: 'complete' });
      process.exit(0);
    },
  },
);
