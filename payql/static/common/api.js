// What payql's pages share: the bearer token, GraphQL over HTTP and websockets, and
// money in the currency's own format. Plain ES module, no build step.

const KEY = "payql.token";

// The token: from the address's fragment (`#token=…`, never sent to the server), kept
// in sessionStorage for this tab only.
export function takeToken(key = KEY) {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(key, token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + window.location.search +
      (rest ? "#" + rest : ""));
  }
  return sessionStorage.getItem(key) || "";
}

export function keepToken(token) {
  sessionStorage.setItem(KEY, token.trim().replace(/^Bearer\s+/i, ""));
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch (error) {
    return null;
  }
}

export class GraphQLFailure extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join("; "));
    this.errors = errors;
    this.code = errors[0] && errors[0].extensions ? errors[0].extensions.code : undefined;
  }
}

// One operation over HTTP; resolves to `data`, rejects with a GraphQLFailure.
export async function gql(token, query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch (error) {
    throw new GraphQLFailure([{ message: `payql answered ${response.status}` }]);
  }
  if (body.errors && body.errors.length) throw new GraphQLFailure(body.errors);
  return body.data;
}

// How often the connection is checked, and how long a ping may go unanswered before
// the connection is taken for dead (a half-open socket after a network change never
// closes by itself) and replaced.
export const KEEPALIVE_MS = 10000;
export const PONG_TIMEOUT_MS = 5000;

// A graphql-transport-ws client (graphql-ws, vendored) that reconnects by itself.
export function liveClient(token, on = {}) {
  const url = new URL("/graphql", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  let socket = null;
  let unanswered = null;
  return graphqlWs.createClient({
    url: url.toString(),
    connectionParams: { Authorization: "Bearer " + token },
    lazy: false,
    keepAlive: KEEPALIVE_MS,
    connectionAckWaitTimeout: KEEPALIVE_MS, // a connection never acknowledged is dead too
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: async (retries) => {
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** retries)));
    },
    on: {
      ...on,
      connected: (...args) => {
        socket = args[0];
        if (on.connected) on.connected(...args);
      },
      ping: (received) => {
        if (received) return; // the server's ping: graphql-ws answers it
        clearTimeout(unanswered);
        unanswered = setTimeout(() => {
          if (socket && socket.readyState === WebSocket.OPEN) {
            socket.close(4408, "no pong: the connection is dead");
          }
        }, PONG_TIMEOUT_MS);
      },
      pong: (received) => {
        if (received) clearTimeout(unanswered);
      },
    },
  });
}

const formats = new Map();

// "12.50" in USD -> "$12.50"; in JPY "1000" -> "¥1,000": the currency's own digits.
export function money(amount, currency) {
  if (amount === null || amount === undefined) return "";
  let format = formats.get(currency);
  if (!format) {
    try {
      format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    } catch (error) {
      format = { format: (n) => `${n} ${currency}` };
    }
    formats.set(currency, format);
  }
  return format.format(Number(amount));
}

export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, {
    dateStyle: "short",
    timeStyle: "medium",
  });
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function newKey() {
  return crypto.randomUUID();
}
