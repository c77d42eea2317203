// The simulated PayPal approval page (payql's /simulated/paypal): what PayPal's page
// does for a buyer, without PayPal. The payment's client secret comes in the address's
// fragment, which no server sees; the answer goes to /simulated/confirm, and the
// simulated gateway tells payql by webhook, as PayPal would.
const $ = (selector) => document.querySelector(selector);
const secret = decodeURIComponent(window.location.hash.slice(1));

async function answer(approve) {
  $("#approve").disabled = true;
  $("#cancel").disabled = true;
  const response = await fetch("/simulated/confirm", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ clientSecret: secret, approve }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("#result").textContent = body.error || `PayPal answered ${response.status}`;
    return;
  }
  $("#result").textContent = approve ?
    "Approved. You can return to the shop." : "Cancelled. You can return to the shop.";
  if (window.opener) window.close(); // a popup goes back to the shop by closing
}

if (!secret) {
  $("#result").textContent = "This page needs a payment: open it from the shop.";
  $("#approve").disabled = true;
  $("#cancel").disabled = true;
}
$("#approve").addEventListener("click", () => answer(true));
$("#cancel").addEventListener("click", () => answer(false));
