// One subscription through the graphql-ws client (the one Apollo Client and urql
// use), for tests/test_live_e2e.py. Usage:
//
//   node subscribe.mjs '{"url": "ws://...", "token": "...", "query": "...",
//                        "variables": {...}, "count": 3}'
//
// Prints one JSON object per line on stdout, as things happen:
//   {"event": "connected"}                    connection_ack received
//   {"event": "next", "payload": {...}}       a result (the ExecutionResult)
//   {"event": "error", "errors": [...]}       the sink's error: GraphQL errors...
//   {"event": "error", "close": {code, reason}}  ...or the socket's close event
//   {"event": "complete"}                     the sink completed
//   {"event": "closed", "code": n}            the socket closed
// After `count` results it unsubscribes (a `complete` message) and disposes the
// client; it exits 0 once the socket is closed, whatever the subscription's end.

import { createClient } from "graphql-ws";
import WebSocket from "ws";

const options = JSON.parse(process.argv[2]);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

let finished = false;
const client = createClient({
  url: options.url,
  webSocketImpl: WebSocket,
  connectionParams: options.token ? { Authorization: `Bearer ${options.token}` } : {},
  retryAttempts: 0,
  on: {
    connected: () => print({ event: "connected" }),
    closed: (event) => {
      print({ event: "closed", code: event?.code ?? null });
      if (finished) process.exit(0);
    },
  },
});

function finish() {
  if (finished) return;
  finished = true;
  client.dispose();
  // Exit once the socket is closed; never hang on a handle left open.
  setTimeout(() => process.exit(0), 2000).unref();
}

let received = 0;
const unsubscribe = client.subscribe(
  { query: options.query, variables: options.variables ?? {} },
  {
    next: (payload) => {
      print({ event: "next", payload });
      received += 1;
      if (received >= options.count) {
        unsubscribe();
        finish();
      }
    },
    error: (error) => {
      if (Array.isArray(error)) print({ event: "error", errors: error });
      else if (error && "code" in error) print({ event: "error", close: { code: error.code, reason: error.reason } });
      else print({ event: "error", message: String(error) });
      finish();
    },
    complete: () => {
      print({ event: "complete" });
      finish();
    },
  },
);
