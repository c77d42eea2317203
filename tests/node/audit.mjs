// The GraphQL Foundation's GraphQL-over-HTTP audit suite (npm `graphql-http`), run
// against a live payql: `node audit.mjs URL` with the bearer token in PAYQL_AUDIT_TOKEN.
// Prints one JSON array on stdout: every audit's id, name and status (ok, warn, error,
// notice), and for the ones not ok the reason and what the server answered.
import { serverAudits } from "graphql-http";

const [url] = process.argv.slice(2);
const token = process.env.PAYQL_AUDIT_TOKEN;
if (!url || !token) {
  console.error("usage: PAYQL_AUDIT_TOKEN=<jwt> node audit.mjs <graphql url>");
  process.exit(2);
}

// Every request the audit makes carries the token: payql answers nothing without one.
function fetchWithToken(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${token}`);
  return fetch(input, { ...init, headers, signal: AbortSignal.timeout(30_000) });
}

async function answered(response) {
  if (!response) return null;
  let body = null;
  try {
    body = (await response.text()).slice(0, 500);
  } catch {
    // the audit has read the body already
  }
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    body,
  };
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetchWithToken })) {
  const result = await audit.fn();
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== "ok") {
    entry.reason = result.reason;
    entry.response = await answered(result.response);
  }
  results.push(entry);
}
process.stdout.write(JSON.stringify(results));
