// payql's demo checkout (development, simulated gateway): what an SPA checkout does.
// Plain ES module, no build step.
//
// 1. createOrder with the chosen lines: the server prices the order.
// 2. processPayment with a gateway token (here a Stripe test card's, never a card
//    number) and an idempotency key, so a retried click never pays twice.
// 3. While the payment is not final, follow it live (paymentStatusChanged); for
//    3-D Secure, the customer approves or denies in the bank's dialog, simulated by
//    /simulated/confirm as Stripe.js's confirmCardPayment would do. With PayPal, the
//    buyer approves on PayPal's page (payment.nextAction.redirectUrl, opened as a
//    popup); payql then captures the payment itself.
import { el, gql, liveClient, money, newKey, takeToken } from "/static/common/api.js";

const PRODUCTS = "query DemoProducts { products { sku name price currency stock } }";
const ERRORS = "errors { code field message }";
const ORDER = `
  id number currency totalAmount
  lines { sku name quantity unitPrice total }`;
const CREATE = `mutation DemoCreateOrder($input: CreateOrderInput!) {
  createOrder(input: $input) { order { ${ORDER} } ${ERRORS} }
}`;
const PAYMENT = `
  id status amount currency paymentMethod failureCode failureMessage
  cardDetails { brand last4 } nextAction { redirectUrl }`;
const PAY = `mutation DemoPay($input: ProcessPaymentInput!) {
  processPayment(input: $input) { payment { ${PAYMENT} } clientSecret ${ERRORS} }
}`;
const WATCH = `subscription DemoWatch($id: ID) {
  paymentStatusChanged(paymentId: $id) { status payment { ${PAYMENT} } }
}`;

const CARDS = [
  { token: "pm_card_visa", label: "Visa, succeeds", detail: "4242 4242 4242 4242" },
  { token: "pm_card_chargeDeclined", label: "Declined", detail: "4000 0000 0000 0002" },
  {
    token: "pm_card_chargeDeclinedInsufficientFunds",
    label: "Insufficient funds",
    detail: "4000 0000 0000 9995",
  },
  { token: "pm_card_chargeDeclinedExpiredCard", label: "Expired card", detail: "4000 0000 0000 0069" },
  {
    token: "pm_card_authenticationRequired",
    label: "3-D Secure required",
    detail: "4000 0025 0000 3155",
  },
  { token: "paypal", label: "PayPal", detail: "approve on PayPal's page (simulated)" },
];

// What a customer is told, by the gateway's decline code.
const DECLINES = {
  card_declined: "Your card was declined. Try another card, or ask your bank why.",
  insufficient_funds: "Your card has insufficient funds. Try another card.",
  expired_card: "Your card has expired. Try another card.",
  incorrect_cvc: "The card's security code is incorrect.",
  processing_error: "The payment could not be processed. Please try again.",
  authentication_failed: "The payment was not confirmed with your bank, so nothing was charged.",
  instrument_declined: "PayPal declined the way you chose to pay. Try another one.",
};

const DEMO_KEY = "payql.demo.token";
const FINAL = new Set(["COMPLETED", "AUTHORIZED", "FAILED", "CANCELLED"]);
const $ = (selector) => document.querySelector(selector);
const state = { token: "", products: [], order: null, payment: null, key: null, live: null };

async function start() {
  // The demo customer's own token (kept apart from an admin's in the same tab),
  // from payql itself: development only.
  state.token = takeToken(DEMO_KEY);
  if (!state.token) {
    const response = await fetch("/demo/token", { method: "POST" });
    state.token = (await response.json()).token;
    sessionStorage.setItem(DEMO_KEY, state.token);
  }
  $("#who").textContent = "signed in as the demo customer";
  const { products } = await gql(state.token, PRODUCTS);
  state.products = products;
  renderProducts();
  $("#review").addEventListener("click", review);
  $("#pay").addEventListener("click", pay);
  $("#back").addEventListener("click", () => show("#step-cart"));
  $("#again").addEventListener("click", () => window.location.reload());
  $("#approve").addEventListener("click", () => confirm3ds(true));
  $("#deny").addEventListener("click", () => confirm3ds(false));
  $("#to-paypal").addEventListener("click", openPayPal);
  renderCards();
}

function show(step) {
  for (const id of ["#step-cart", "#step-pay", "#step-done"]) $(id).hidden = id !== step;
}

// -- the basket --------------------------------------------------------------------

function renderProducts() {
  $("#products").replaceChildren(...state.products.map((p) => el("li", {},
    el("span", {}, p.name, el("span", { class: "muted" }, ` · ${p.sku}`)),
    el("span", { class: "price" }, money(p.price, p.currency)),
    el("input", {
      type: "number", min: 0, max: Math.min(p.stock, 99), value: 0, name: p.sku,
      "aria-label": `Quantity of ${p.name}`, oninput: updateReview,
    }))));
}

function chosenLines() {
  return [...document.querySelectorAll("#products input")]
    .map((input) => ({ sku: input.name, quantity: Number.parseInt(input.value || "0", 10) }))
    .filter((line) => line.quantity > 0);
}

function updateReview() {
  $("#review").disabled = chosenLines().length === 0;
}

async function review() {
  $("#cart-error").textContent = "";
  $("#review").disabled = true;
  try {
    const { createOrder } = await gql(state.token, CREATE, { input: { lines: chosenLines() } });
    if (createOrder.errors.length) {
      $("#cart-error").textContent = createOrder.errors.map((e) => e.message).join("; ");
      return;
    }
    state.order = createOrder.order;
    state.key = newKey(); // one key per order: a repeated click can never pay twice
    renderOrder();
    show("#step-pay");
  } catch (error) {
    $("#cart-error").textContent = error.message;
  } finally {
    updateReview();
  }
}

function renderOrder() {
  const o = state.order;
  $("#order-number").textContent = o.number;
  $("#order-lines tbody").replaceChildren(...o.lines.map((line) => el("tr", {},
    el("td", {}, `${line.name} × ${line.quantity}`),
    el("td", { class: "num" }, money(line.total, o.currency)))));
  $("#order-lines tfoot").replaceChildren(el("tr", {},
    el("td", {}, "Total"),
    el("td", { class: "num", "data-field": "total" }, money(o.totalAmount, o.currency))));
  $("#pay").textContent = `Pay ${money(o.totalAmount, o.currency)}`;
  $("#status").textContent = "";
  $("#pay-error").textContent = "";
}

function renderCards() {
  $("#cards").replaceChildren(el("legend", { class: "muted" },
    "Stripe's test cards; payql only ever sees their tokens."),
  ...CARDS.map((card, n) => el("label", {},
    el("input", { type: "radio", name: "card", value: card.token, checked: n === 0 }),
    el("span", {}, card.label), el("code", { class: "muted" }, card.detail))));
}

// -- paying ------------------------------------------------------------------------

async function pay() {
  const chosen = document.querySelector("input[name=card]:checked").value;
  const paypal = chosen === "paypal";
  $("#pay").disabled = true;
  $("#back").disabled = true;
  $("#pay-error").textContent = "";
  status("Paying…");
  try {
    const { processPayment: result } = await gql(state.token, PAY, {
      input: {
        orderId: state.order.id,
        paymentMethod: paypal ? "PAYPAL" : "CREDIT_CARD",
        // test cards and a simulated PayPal, even where real keys are configured
        gateway: "simulated",
        token: paypal ? null : chosen,
        idempotencyKey: state.key,
      },
    });
    if (result.errors.length) {
      $("#pay-error").textContent = result.errors.map((e) => e.message).join("; ");
      $("#pay").disabled = false;
      $("#back").disabled = false;
      status("");
      return;
    }
    state.payment = result.payment;
    if (FINAL.has(result.payment.status)) return finish(result.payment);
    follow(result.payment.id);
    const next = result.payment.nextAction;
    if (result.payment.status === "REQUIRES_ACTION" && next) askPayPal(next.redirectUrl);
    else if (result.payment.status === "REQUIRES_ACTION") ask3ds(result.clientSecret);
    else status(describe(result.payment.status));
  } catch (error) {
    $("#pay-error").textContent = error.message;
    $("#pay").disabled = false;
    $("#back").disabled = false;
  }
}

function follow(paymentId) {
  if (!state.live) state.live = liveClient(state.token);
  // Filtered by payment: each (re)subscription starts with its current state, so one
  // that had to start again misses nothing.
  let ended = false;
  const again = () => {
    if (ended || !state.live) return;
    ended = true;
    status("Live status interrupted; reconnecting…");
    setTimeout(() => state.live && follow(paymentId), 1000);
  };
  state.live.subscribe({ query: WATCH, variables: { id: paymentId } }, {
    next: (message) => {
      if (message.errors) return; // the server ends the subscription when it must
      const change = message.data.paymentStatusChanged;
      state.payment = change.payment;
      if (FINAL.has(change.status)) finish(change.payment);
      else status(describe(change.status));
    },
    error: again,
    complete: () => {
      if (state.live) again(); // ended by the server before the payment was final
    },
  });
}

function describe(paymentStatus) {
  return {
    PENDING: "Waiting for the payment to start…",
    PROCESSING: "Your bank is processing the payment…",
    REQUIRES_ACTION: "Waiting for you to confirm with your bank…",
  }[paymentStatus] || `Status: ${paymentStatus}`;
}

function status(text) {
  $("#status").textContent = text;
}

function ask3ds(clientSecret) {
  state.clientSecret = clientSecret;
  $("#three-ds-amount").textContent = money(state.payment.amount, state.payment.currency);
  status(describe("REQUIRES_ACTION"));
  $("#three-ds").showModal();
}

async function confirm3ds(approve) {
  $("#approve").disabled = true;
  $("#deny").disabled = true;
  try {
    const response = await fetch("/simulated/confirm", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ clientSecret: state.clientSecret, authenticate: approve }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      $("#pay-error").textContent = body.error || `the bank answered ${response.status}`;
    }
  } finally {
    $("#three-ds").close();
    $("#approve").disabled = false;
    $("#deny").disabled = false;
  }
  status(approve ? "Confirmed with your bank; finishing…" : "Not confirmed; finishing…");
  // The outcome arrives live, from the gateway's webhook (see follow()).
}

// PayPal: the buyer approves on PayPal's page, in a popup opened by their own click (so
// no popup blocker stops it). The outcome arrives live: payql captures the payment
// once PayPal says it was approved.
function askPayPal(url) {
  state.redirectUrl = url;
  $("#paypal-amount").textContent = money(state.payment.amount, state.payment.currency);
  status("Waiting for you to approve the payment on PayPal…");
  $("#paypal").showModal();
}

function openPayPal() {
  $("#paypal").close();
  const popup = window.open(state.redirectUrl, "paypal", "popup,width=520,height=640");
  if (!popup) window.location.assign(state.redirectUrl); // no popups: PayPal's redirect
  status("Approve the payment on PayPal's page; this page follows it live…");
}

function tryAgain() {
  state.key = newKey(); // a new attempt: the declined one keeps its own key
  renderOrder();
  $("#pay").disabled = false;
  $("#back").disabled = false;
  show("#step-pay");
}

function finish(payment) {
  if (state.live) {
    state.live.dispose();
    state.live = null;
  }
  const o = state.order;
  const paid = payment.status === "COMPLETED" || payment.status === "AUTHORIZED";
  const card = payment.cardDetails ?
    `${payment.cardDetails.brand} •••• ${payment.cardDetails.last4}` :
    payment.paymentMethod === "PAYPAL" ? "PayPal" : "your card";
  const outcome = paid ?
    el("div", { class: "receipt" },
      el("h2", {}, `Paid ${money(payment.amount, payment.currency)}`),
      el("p", {}, `Thank you! Order ${o.number} is paid with ${card}.`),
      el("table", { class: "lines" }, el("tbody", {}, o.lines.map((line) => el("tr", {},
        el("td", {}, `${line.name} × ${line.quantity}`),
        el("td", { class: "num" }, money(line.total, o.currency)))))),
      el("p", { class: "muted" }, `Payment ${payment.id}`)) :
    el("div", { class: "declined" },
      el("h2", {}, payment.status === "CANCELLED" ? "Payment cancelled" : "Payment declined"),
      el("p", { "data-field": "reason" }, DECLINES[payment.failureCode] ||
        payment.failureMessage || "The payment did not go through; nothing was charged."),
      el("p", { class: "muted" }, `Order ${o.number} is still open.`),
      el("button", { type: "button", onclick: tryAgain }, "Try another way to pay"));
  $("#outcome").replaceChildren(outcome);
  show("#step-done");
}

start().catch((error) => {
  $("#cart-error").textContent = `The demo could not start: ${error.message}`;
});
