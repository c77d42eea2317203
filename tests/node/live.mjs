// A real graphql-ws client (npm `graphql-ws`, the library Apollo and urql use) against
// a live payql, over the `ws` package's websocket:
//   PAYQL_TOKEN=<jwt> node live.mjs <base url> <payment id> <client secret>
// for a payment waiting for 3-D Secure. It subscribes, gets the payment's current
// state, passes 3-D Secure at the simulated gateway, gets the change, completes;
// connects again with `after` (the first message's cursor) and gets the change again,
// replayed; then runs a query over the socket. Prints one JSON object on stdout.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [base, paymentId, clientSecret] = process.argv.slice(2);
const token = process.env.PAYQL_TOKEN;
if (!base || !paymentId || !clientSecret || !token) {
  console.error("usage: PAYQL_TOKEN=<jwt> node live.mjs <base url> <payment id> <client secret>");
  process.exit(2);
}
setTimeout(() => {
  console.error("timed out");
  process.exit(3);
}, 30_000).unref();

const WATCH = `subscription Watch($paymentId: ID, $after: ID) {
  paymentStatusChanged(paymentId: $paymentId, after: $after) {
    cursor type status payment { id status }
  }
}`;

let connections = 0; // sockets the clients opened (acknowledged)

function connect(options = {}) {
  return createClient({
    url: base.replace(/^http/, "ws") + "/graphql",
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    retryAttempts: 0,
    on: { connected: () => (connections += 1) },
    ...options,
  });
}

function changeOf(message) {
  if (message.errors) throw new Error(JSON.stringify(message.errors));
  return message.data.paymentStatusChanged;
}

// 1. Live: the current state first, then the change 3-D Secure makes.
const first = connect();
const live = [];
for await (const message of first.iterate({ query: WATCH, variables: { paymentId } })) {
  const change = changeOf(message);
  live.push(change);
  if (live.length === 1) {
    const passed = await fetch(`${base}/simulated/confirm`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ clientSecret, authenticate: true }),
    });
    if (!passed.ok) throw new Error(`confirm: ${passed.status} ${await passed.text()}`);
  }
  if (change.status === "COMPLETED") break; // the library sends `complete`
}
await first.dispose();

// 2. Reconnected with `after`: every change since that cursor, replayed. (Not lazy:
// its socket stays open for step 3.)
const again = connect({ lazy: false });
const replayed = [];
const after = live[0].cursor;
for await (const message of again.iterate({ query: WATCH, variables: { paymentId, after } })) {
  const change = changeOf(message);
  replayed.push(change);
  if (change.status === "COMPLETED") break;
}

// 3. A query over the same socket: one result, then the operation completes.
const answers = [];
for await (const message of again.iterate({
  query: "query ($id: ID!) { paymentStatus(id: $id) }",
  variables: { id: paymentId },
})) {
  answers.push(message);
}
await again.dispose();

console.log(JSON.stringify({ live, replayed, answers, connections }));
