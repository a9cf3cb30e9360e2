// Progressive enhancement of the sign-in page. Without JavaScript the page
// refreshes itself (a <noscript> meta refresh) to rotate the QR code and
// to show the outcome; with it, the outcome arrives by server-sent events
// (or polling when those fail), the QR code rotates in place, and a
// verified sign-in continues without a click, also when the resident
// arrives on the page after approving (a same-device wallet's return).
(function () {
  "use strict";
  // Verified already (the resident came back from the wallet on this
  // device): continue at once, as the waiting page would have.
  var now = document.getElementById("finish-now");
  if (now) {
    now.submit();
    return;
  }
  var root = document.getElementById("signin");
  if (!root) {
    return;
  }
  var statusURL = root.getAttribute("data-status-url");
  var eventsURL = root.getAttribute("data-events-url");
  var refreshURL = root.getAttribute("data-refresh-url");
  var rotate = parseInt(root.getAttribute("data-rotate"), 10) || 20;
  var done = false;
  var pollTimer = null;

  function setAttr(id, name, value) {
    var el = document.getElementById(id);
    if (el && value) {
      el.setAttribute(name, value);
    }
  }

  function handle(st) {
    if (done || !st) {
      return;
    }
    if (st.qr) {
      setAttr("qr", "src", st.qr.image);
      setAttr("applink", "href", st.qr.app_link);
      setAttr("fallback", "href", st.qr.fallback);
      var input = document.getElementById("txurl");
      if (input && st.qr.tx_url) {
        input.value = st.qr.tx_url;
      }
    }
    if (st.state === "verified") {
      done = true;
      var form = document.getElementById("finish");
      form.hidden = false;
      form.submit();
    } else if (st.state && st.state !== "pending") {
      done = true;
      window.location.replace(refreshURL);
    }
  }

  function poll() {
    fetch(statusURL, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(handle)
      .catch(function () {});
  }

  function startPolling() {
    if (!pollTimer) {
      pollTimer = window.setInterval(function () { if (!done) { poll(); } }, 2000);
    }
  }

  if (window.EventSource && eventsURL) {
    var es = new EventSource(eventsURL);
    es.addEventListener("state", function (e) {
      try {
        handle(JSON.parse(e.data));
      } catch (err) {
        // ignore a garbled event; polling below keeps the page honest
      }
      if (done) {
        es.close();
      }
    });
    es.onerror = function () {
      es.close();
      startPolling();
    };
  } else {
    startPolling();
  }
  // Rotate the QR code (and learn the state) once per window.
  window.setInterval(function () { if (!done) { poll(); } }, rotate * 1000);
})();
