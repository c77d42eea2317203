// payql's GraphiQL: served with its assets from payql itself (no CDN), signed in with
// a bearer token that is sent as the Authorization header over HTTP and in the
// websocket's connection_init, so that queries, mutations and subscriptions all work.
//
// The token comes from the address's fragment (`#token=…`, which `payql serve` prints
// in development; a fragment never reaches the server or its logs), or from the form.
// It is kept in sessionStorage, for this tab only.
import { claims, forgetToken, keepToken, takeToken } from "/static/common/api.js";

const EXAMPLE = `# payql: payments over GraphQL. Ctrl-Enter runs the operation.
#
# Try a subscription too, and watch a payment change live:
#   subscription { paymentStatusChanged { cursor status payment { id amount currency } } }

query RecentPayments {
payments(first: 5) {
  items { id status amount currency gateway createdAt }
  total
  endCursor
  hasNextPage
}
}
`;

function describe(token) {
  if (!token) return "no token: paste one to run operations";
  const c = claims(token);
  if (!c) return "a token that is not a JWT";
  const expires = c.exp ? new Date(c.exp * 1000) : null;
  const expired = expires && expires < new Date();
  return `signed in as ${c.sub} (${c.role || "customer"})` +
    (expired ? " — this token has expired" : "");
}

const token = takeToken();
document.getElementById("who").textContent = describe(token);

document.getElementById("token-form").addEventListener("submit", function (event) {
  event.preventDefault();
  const value = document.getElementById("token").value.trim().replace(/^Bearer\s+/i, "");
  if (value) keepToken(value);
  window.location.reload();
});
document.getElementById("forget").addEventListener("click", function () {
  forgetToken();
  window.location.reload();
});

const url = new URL("/graphql", window.location.href);
const socket = new URL(url);
socket.protocol = url.protocol === "https:" ? "wss:" : "ws:";
const auth = token ? { Authorization: "Bearer " + token } : {};
const fetcher = GraphiQL.createFetcher({
  url: url.toString(),
  subscriptionUrl: socket.toString(),
  headers: auth,
  wsConnectionParams: auth,
});

const search = new URLSearchParams(window.location.search);
const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(
  React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: EXAMPLE,
    query: search.get("q") || undefined,
    variables: search.get("v") || undefined,
    defaultEditorToolsVisibility: true,
    shouldPersistHeaders: false,
  }),
);
