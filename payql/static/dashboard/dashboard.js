// payql's dashboard: recent payments, live. Plain ES module, no build step.
//
// Live changes come from `paymentStatusChanged` (every payment: an admin's
// subscription). Before the list is read, `liveCursor` says where the changes stand;
// the subscription starts `after` it, so a change made while the list was read is
// not missed. Whenever it has to start again (a dropped network, a restarted server)
// it resumes `after` the last change received: the server sends every change after a
// cursor once, in order, so nothing is missed and nothing is shown twice.
import {
  claims,
  el,
  forgetToken,
  gql,
  keepToken,
  liveClient,
  money,
  newKey,
  takeToken,
  when,
} from "/static/common/api.js";

const ROW = `
  id orderId status amount currency paymentMethod gateway createdAt
  order { number customer { name email } }`;

const LIST = `query DashboardPayments($filter: PaymentFilter, $first: Int!, $after: String) {
  payments(filter: $filter, first: $first, after: $after) {
    total endCursor hasNextPage items { ${ROW} }
  }
}`;

const STATS = `query DashboardStats($since: DateTime!) {
  paymentStats(since: $since, bucketMinutes: 5) {
    start payments succeeded failed successRate
  }
}`;

const CURSOR = "query DashboardCursor { liveCursor }";

const WATCH = `subscription DashboardLive($after: ID) {
  paymentStatusChanged(after: $after) { cursor status payment { ${ROW} } }
}`;

const DETAIL = `query DashboardPayment($id: ID!) {
  payment(id: $id) {
    ${ROW}
    captureMethod gatewayTransactionId failureCode failureMessage
    capturedAmount refundedAmount refundableAmount
    cardDetails { brand last4 expiryMonth expiryYear }
    refunds { id amount currency status reason failureReason createdAt }
    events { id type fromStatus toStatus source createdAt }
    notifications { id channel eventType recipient status attempts lastError deliveredAt createdAt }
  }
}`;

const ERRORS = "errors { code field message }";
const REFUND = `mutation DashboardRefund($input: RefundPaymentInput!) {
  refundPayment(input: $input) { refund { id status } payment { id status } ${ERRORS} }
}`;
const CAPTURE = `mutation DashboardCapture($id: ID!) {
  capturePayment(id: $id) { payment { id status } ${ERRORS} }
}`;
const CANCEL = `mutation DashboardCancel($id: ID!) {
  cancelPayment(id: $id) { payment { id status } ${ERRORS} }
}`;

const PAGE = 50;
const $ = (selector) => document.querySelector(selector);

const state = {
  token: "",
  rows: new Map(), // payment id -> row, as the table shows it
  total: 0,
  cursor: null, // the last change received: a (re)started subscription starts after it
  unsubscribe: null,
  listVersion: 0, // which load of the list is current (filters change it)
  endCursor: null, // where the next page starts
  hasNext: false,
  selected: null,
  client: null,
  statsTimer: null,
};

// -- signing in --------------------------------------------------------------------

async function start() {
  state.token = takeToken();
  $("#sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    keepToken($("#token").value);
    window.location.reload();
  });
  $("#sign-out").addEventListener("click", () => {
    forgetToken();
    window.location.reload();
  });
  if (!state.token) return showSignIn("");
  const who = claims(state.token);
  if (!who || who.role !== "admin") {
    return showSignIn("This token is not an admin's: the dashboard shows every payment.");
  }
  try {
    state.cursor = (await gql(state.token, CURSOR)).liveCursor;
    await loadList();
  } catch (error) {
    return showSignIn(error.code === "UNAUTHENTICATED" ? `Signed out: ${error.message}` :
      error.message);
  }
  $("#who").textContent = `signed in as ${who.sub}`;
  $("#sign-out").hidden = false;
  $("#board").hidden = false;
  $("#filters").addEventListener("change", () => reload());
  $("#filters").addEventListener("input", debounce(() => reload(), 300));
  $("#filters").addEventListener("submit", (event) => event.preventDefault());
  $("#more").addEventListener("click", loadMore);
  follow();
  refreshStats();
  state.statsTimer = setInterval(refreshStats, 30000); // buckets roll over
  window.addEventListener("resize", debounce(() => state.stats && drawChart(state.stats), 200));
}

function showSignIn(message) {
  $("#sign-in").hidden = false;
  $("#sign-in-error").textContent = message;
  $("#token").focus();
}

// -- the list ----------------------------------------------------------------------

function filters() {
  const form = new FormData($("#filters"));
  const filter = {};
  if (form.get("status")) filter.status = [form.get("status")];
  if (form.get("gateway")) filter.gateway = form.get("gateway");
  if (form.get("method")) filter.paymentMethod = form.get("method");
  const search = String(form.get("search") || "").trim();
  if (search.includes("@")) filter.customerEmail = search;
  else if (search) filter.orderNumber = search;
  return filter;
}

function matches(row, filter) {
  if (filter.status && !filter.status.includes(row.status)) return false;
  if (filter.gateway && row.gateway !== filter.gateway) return false;
  if (filter.paymentMethod && row.paymentMethod !== filter.paymentMethod) return false;
  if (filter.customerEmail &&
      row.order.customer.email.toLowerCase() !== filter.customerEmail.toLowerCase()) {
    return false;
  }
  if (filter.orderNumber && row.order.number !== filter.orderNumber.toUpperCase()) return false;
  return true;
}

async function loadList() {
  const version = ++state.listVersion;
  const data = await gql(state.token, LIST, { filter: filters(), first: PAGE });
  if (version !== state.listVersion) return; // the filters changed meanwhile
  state.rows = new Map(data.payments.items.map((row) => [row.id, row]));
  keepPage(data.payments);
  render();
}

// The next page of the same list, below the rows shown (live changes go on
// arriving above).
async function loadMore() {
  const version = state.listVersion;
  $("#more").disabled = true;
  try {
    const data = await gql(state.token, LIST, {
      filter: filters(), first: PAGE, after: state.endCursor,
    });
    if (version !== state.listVersion) return;
    for (const row of data.payments.items) {
      if (!state.rows.has(row.id)) state.rows.set(row.id, row);
    }
    keepPage(data.payments);
    render();
  } catch (error) {
    $("#list-error").textContent = error.message;
  } finally {
    $("#more").disabled = false;
  }
}

function keepPage(page) {
  state.total = page.total;
  state.endCursor = page.endCursor;
  state.hasNext = page.hasNextPage;
}

async function reload() {
  try {
    await loadList();
    $("#list-error").textContent = "";
  } catch (error) {
    $("#list-error").textContent = error.message;
  }
}

function render(fresh = null) {
  const body = $("#payments tbody");
  const rows = [...state.rows.values()].sort((a, b) =>
    a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0);
  body.replaceChildren(...rows.map((row) => rowElement(row, row.id === fresh)));
  const shown = rows.length;
  $("#list-foot").textContent = shown ?
    `${shown} shown of ${Math.max(state.total, shown)} matching` :
    "No payments match these filters.";
  $("#more").hidden = !state.hasNext;
}

function rowElement(row, fresh) {
  return el("tr", {
    dataset: { paymentId: row.id },
    class: [row.id === state.selected ? "selected" : "", fresh ? "fresh" : ""].join(" ").trim(),
    onclick: () => openDetail(row.id),
  },
  el("td", {}, when(row.createdAt)),
  el("td", {}, row.order.number),
  el("td", {}, row.order.customer.email),
  el("td", { class: "num" }, money(row.amount, row.currency)),
  el("td", {}, label(row.paymentMethod)),
  el("td", {}, row.gateway),
  el("td", {}, badge(row.status)));
}

function badge(status) {
  return el("span", { class: `badge ${status}` }, label(status));
}

function label(value) {
  return value ? value.replace(/_/g, " ").toLowerCase() : "";
}

// -- live --------------------------------------------------------------------------

function follow() {
  state.client = liveClient(state.token, {
    connected: () => {
      const node = $("#live");
      node.dataset.connections = String(Number(node.dataset.connections || 0) + 1);
      setLive("live");
    },
    closed: () => setLive("reconnecting"),
    error: () => setLive("reconnecting"),
  });
  subscribe();
}

function subscribe() {
  if (state.unsubscribe) state.unsubscribe();
  // graphql-ws sends this same object again each time it resubscribes after a
  // reconnect, so keeping `after` current here makes every resubscription resume.
  const payload = { query: WATCH, variables: { after: state.cursor } };
  state.payload = payload;
  let ended = false;
  const again = (reason) => {
    if (ended) return;
    ended = true;
    // The server ended this subscription (it fell behind, or lost its broadcast)
    // and asks for a new one `after` the last change seen: here it is.
    setLive("reconnecting", reason);
    setTimeout(subscribe, 1000);
  };
  state.unsubscribe = state.client.subscribe(payload, {
    next: (message) => {
      if (message.errors) {
        // Shown, not acted on: the server ends the subscription itself when it must.
        setLive("live", message.errors.map((e) => e.message).join("; "));
        return;
      }
      applyChange(message.data.paymentStatusChanged);
    },
    error: (error) => again(error && error.message ? error.message : String(error)),
    complete: () => again("the server ended the subscription"),
  });
}

function applyChange(change) {
  const row = change.payment;
  state.cursor = change.cursor;
  state.payload.variables.after = state.cursor;
  setLive("live");
  const known = state.rows.has(row.id);
  if (matches(row, filters())) {
    if (!known) state.total += 1;
    state.rows.set(row.id, row);
  } else if (known) {
    state.rows.delete(row.id);
    state.total = Math.max(0, state.total - 1);
  }
  render(row.id);
  if (state.selected === row.id) openDetail(row.id, true);
  scheduleStats();
}

function setLive(kind, reason = "") {
  const node = $("#live");
  node.dataset.state = kind;
  node.textContent = kind === "live" ? "live" : kind === "reconnecting" ? "reconnecting…" :
    "offline";
  node.title = reason || "live status";
}

// -- the chart ---------------------------------------------------------------------

const scheduleStats = debounce(() => refreshStats(), 1000);

async function refreshStats() {
  const since = new Date(Date.now() - 60 * 60 * 1000);
  since.setSeconds(0, 0);
  try {
    const data = await gql(state.token, STATS, { since: since.toISOString() });
    drawChart(data.paymentStats);
  } catch (error) {
    $("#chart-summary").textContent = `chart unavailable: ${error.message}`;
  }
}

function drawChart(buckets) {
  state.stats = buckets;
  const svg = $("#chart");
  const ns = "http://www.w3.org/2000/svg";
  const W = Math.max(360, Math.round(svg.clientWidth || 720));
  const H = 180, left = 34, right = 40, top = 10, bottom = 24;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const plotW = W - left - right, plotH = H - top - bottom;
  const most = Math.max(1, ...buckets.map((b) => b.payments));
  const slot = plotW / Math.max(1, buckets.length);
  const shapes = [];
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    shapes.push(node);
    return node;
  };
  make("line", { class: "axis", x1: left, x2: W - right, y1: top + plotH, y2: top + plotH });
  make("text", { x: left - 6, y: top + 8, "text-anchor": "end" }, String(most));
  make("text", { x: left - 6, y: top + plotH, "text-anchor": "end" }, "0");
  make("text", { x: W - right + 6, y: top + 8 }, "100%");
  make("text", { x: W - right + 6, y: top + plotH }, "0%");
  const points = [];
  buckets.forEach((b, i) => {
    const h = (b.payments / most) * plotH;
    const x = left + i * slot;
    const bar = make("rect", {
      class: "bar", x: x + slot * 0.15, width: slot * 0.7, y: top + plotH - h, height: h,
    });
    const title = document.createElementNS(ns, "title");
    title.textContent = `${new Date(b.start).toLocaleTimeString()}: ${b.payments} payments` +
      (b.successRate === null ? "" : `, ${Math.round(b.successRate * 100)}% succeeded`);
    bar.append(title);
    if (i % 3 === 0) {
      make("text", { x: x + slot / 2, y: H - 6, "text-anchor": "middle" },
        new Date(b.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    }
    if (b.successRate !== null) {
      points.push([x + slot / 2, top + plotH - b.successRate * plotH]);
    }
  });
  if (points.length) {
    make("polyline", { class: "rate", points: points.map((p) => p.join(",")).join(" ") });
    for (const [x, y] of points) make("circle", { class: "dot", cx: x, cy: y, r: 2.5 });
  }
  svg.replaceChildren(...shapes);
  const total = buckets.reduce((n, b) => n + b.payments, 0);
  const ok = buckets.reduce((n, b) => n + b.succeeded, 0);
  const failed = buckets.reduce((n, b) => n + b.failed, 0);
  const rate = ok + failed ? `${Math.round((ok / (ok + failed)) * 100)}% succeeded` :
    "none settled yet";
  $("#chart-summary").textContent = `${total} payments, ${rate}`;
  svg.dataset.total = String(total);
}

// -- one payment -------------------------------------------------------------------

async function openDetail(id, quietly = false) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#payments tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.paymentId === id);
  }
  const panel = $("#detail");
  panel.hidden = false;
  if (!quietly) panel.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  let payment;
  try {
    payment = (await gql(state.token, DETAIL, { id })).payment;
  } catch (error) {
    panel.replaceChildren(closeButton(), el("p", { class: "error" }, error.message));
    return;
  }
  if (!payment) {
    panel.replaceChildren(closeButton(), el("p", { class: "error" }, "Payment not found."));
    return;
  }
  if (state.selected !== id) return; // another was opened meanwhile
  const notice = panel.querySelector(".notice");
  // Parts that do not apply (no refund form once nothing is refundable) are left out.
  panel.replaceChildren(...detailView(payment, notice ? notice.textContent : "").filter(Boolean));
}

function closeButton() {
  return el("button", {
    type: "button", class: "close", "aria-label": "Close", onclick: () => {
      state.selected = null;
      $("#detail").hidden = true;
      render();
    },
  }, "✕");
}

function detailView(p, notice) {
  const c = p.currency;
  const card = p.cardDetails ?
    `${p.cardDetails.brand} •••• ${p.cardDetails.last4} (${p.cardDetails.expiryMonth}/` +
      `${p.cardDetails.expiryYear})` : "";
  const canCapture = p.status === "AUTHORIZED";
  const canCancel = ["PENDING", "REQUIRES_ACTION", "AUTHORIZED"].includes(p.status);
  const canRefund = Number(p.refundableAmount) > 0;
  const amountInput = el("input", {
    name: "amount", inputmode: "decimal", placeholder: p.refundableAmount,
    "aria-label": "Refund amount (empty: all that is refundable)",
  });
  const reasonInput = el("input", { name: "reason", placeholder: "reason", "aria-label": "Reason" });
  return [
    closeButton(),
    el("h2", {}, `Payment ${p.id}`),
    el("p", {}, badge(p.status), " ", el("span", { class: "muted" },
      `order ${p.order.number} · ${p.order.customer.name} <${p.order.customer.email}>`)),
    el("dl", {},
      el("dt", {}, "Amount"), el("dd", { "data-field": "amount" }, money(p.amount, c)),
      el("dt", {}, "Captured"), el("dd", {}, money(p.capturedAmount, c)),
      el("dt", {}, "Refunded"), el("dd", { "data-field": "refunded" }, money(p.refundedAmount, c)),
      el("dt", {}, "Refundable"), el("dd", {}, money(p.refundableAmount, c)),
      el("dt", {}, "Method"), el("dd", {}, `${label(p.paymentMethod)} via ${p.gateway}`),
      card && el("dt", {}, "Card"), card && el("dd", {}, card),
      p.gatewayTransactionId && el("dt", {}, "Gateway id"),
      p.gatewayTransactionId && el("dd", {}, el("code", {}, p.gatewayTransactionId)),
      p.failureCode && el("dt", {}, "Declined"),
      p.failureCode && el("dd", {}, `${p.failureMessage || ""} (${p.failureCode})`),
      el("dt", {}, "Created"), el("dd", {}, when(p.createdAt))),
    el("div", { class: "actions" },
      canCapture && el("button", {
        type: "button", class: "primary", onclick: () => act(p.id, CAPTURE, { id: p.id },
          "capturePayment", "Captured."),
      }, "Capture"),
      canCancel && el("button", {
        type: "button", class: "danger", onclick: () => act(p.id, CANCEL, { id: p.id },
          "cancelPayment", "Cancelled."),
      }, "Cancel payment")),
    canRefund && el("form", {
      class: "actions", onsubmit: (event) => {
        event.preventDefault();
        const amount = amountInput.value.trim();
        const input = { paymentId: p.id, idempotencyKey: newKey() };
        if (amount) input.amount = amount;
        if (reasonInput.value.trim()) input.reason = reasonInput.value.trim();
        act(p.id, REFUND, { input }, "refundPayment",
          amount ? `Refunded ${money(amount, c)}.` : "Refunded in full.");
      },
    }, amountInput, reasonInput, el("button", { type: "submit" }, "Refund")),
    el("p", { class: "error", role: "alert" }),
    el("p", { class: "notice", role: "status" }, notice),
    el("h3", {}, `Refunds (${p.refunds.length})`),
    p.refunds.length ? el("ol", {}, p.refunds.map((r) => el("li", {},
      `${money(r.amount, r.currency)} `, badge(r.status),
      r.reason ? ` ${r.reason}` : "", r.failureReason ? ` — ${r.failureReason}` : "",
      el("span", { class: "muted" }, ` ${when(r.createdAt)}`)))) :
      el("p", { class: "muted" }, "None."),
    el("h3", {}, `Notifications (${p.notifications.length})`),
    p.notifications.length ? el("ol", { class: "notifications" }, p.notifications.map((n) =>
      el("li", { "data-notification": n.id },
        `${n.channel === "EMAIL" ? "Email" : "Webhook"} `, el("code", {}, n.eventType),
        ` to ${n.recipient} `, badge(n.status),
        el("span", { class: "muted" },
          ` ${n.attempts} attempt${n.attempts === 1 ? "" : "s"}` +
          (n.deliveredAt ? ` · delivered ${when(n.deliveredAt)}` : "") +
          (n.lastError && n.status !== "DELIVERED" ? ` · ${n.lastError}` : ""))))) :
      el("p", { class: "muted" }, "None sent."),
    el("h3", {}, "Audit trail"),
    el("ol", { class: "events" }, p.events.map((e) => el("li", {},
      el("code", {}, e.type), " ",
      e.toStatus ? `${label(e.fromStatus) || "—"} → ${label(e.toStatus)} ` : "",
      el("span", { class: "muted" }, `${label(e.source)} · ${when(e.createdAt)}`)))),
  ];
}

async function act(id, mutation, variables, field, done) {
  const panel = $("#detail");
  for (const button of panel.querySelectorAll("button:not(.close)")) button.disabled = true;
  const error = panel.querySelector(".error");
  const notice = panel.querySelector(".notice");
  error.textContent = "";
  notice.textContent = "";
  try {
    const payload = (await gql(state.token, mutation, variables))[field];
    if (payload.errors.length) {
      error.textContent = payload.errors.map((e) => e.message).join("; ");
    } else {
      notice.textContent = done;
    }
  } catch (failure) {
    error.textContent = failure.message;
  }
  const kept = notice.textContent;
  const problem = error.textContent;
  await openDetail(id, true);
  if (problem) panel.querySelector(".error").textContent = problem;
  else panel.querySelector(".notice").textContent = kept;
}

// -- helpers -----------------------------------------------------------------------

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

start();
