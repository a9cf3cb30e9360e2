// Passkeys: signing in (a button, and the browser's autofill where it
// offers passkeys) and adding one (after a JPKI sign-in, and on the
// account page). Everything here is an enhancement: the sections stay
// hidden without JavaScript or WebAuthn, and the JPKI sign-in works
// without either.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function b64urlToBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function bufToB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeIDs(list) {
    (list || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
  }

  // credentialJSON is PublicKeyCredential.toJSON(), written out for
  // browsers that lack it.
  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") {
      return cred.toJSON();
    }
    var r = cred.response;
    var out = {
      id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: bufToB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = bufToB64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = bufToB64url(r.authenticatorData);
      out.response.signature = bufToB64url(r.signature);
      if (r.userHandle) { out.response.userHandle = bufToB64url(r.userHandle); }
    }
    return out;
  }

  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw j; }
        return j;
      });
    });
  }

  function say(el, text, bad) {
    if (!el) { return; }
    el.textContent = text || "";
    el.className = bad ? "status error-text" : "status";
  }

  // ourMessage is the message of our server's JSON error, never the
  // browser's own (English, technical) exception text.
  function ourMessage(err) {
    return err && typeof err.error === "string" && typeof err.message === "string" ? err.message : "";
  }

  // A failure of navigator.credentials itself: the resident cancelled,
  // or the browser refused. The page's own message is shown.
  function cancelledText(root) {
    return root.getAttribute("data-cancelled") || "";
  }

  // Sign-in.
  var login = document.getElementById("passkey-login");
  if (login) {
    var begin = login.getAttribute("data-begin");
    var finish = login.getAttribute("data-finish");
    var request = login.getAttribute("data-request");
    var csrf = login.getAttribute("data-csrf");
    var status = document.getElementById("passkey-status");
    var button = document.getElementById("passkey-signin");
    var pending = null; // the autofill request, aborted for the button
    var busy = false;

    var signIn = function (conditional) {
      var abort = new AbortController();
      if (conditional) { pending = abort; }
      return post(begin, csrf, { request: request }).then(function (opts) {
        var pk = opts.publicKey;
        pk.challenge = b64urlToBuf(pk.challenge);
        decodeIDs(pk.allowCredentials);
        var req = { publicKey: pk, signal: abort.signal };
        if (conditional) { req.mediation = "conditional"; }
        return navigator.credentials.get(req).then(function (cred) {
          busy = true;
          say(status, login.getAttribute("data-working"));
          return post(finish, csrf, { ceremony: opts.ceremony, credential: credentialJSON(cred) });
        });
      }).then(function (res) {
        window.location.assign(res.redirect);
      });
    };

    // An autofill request that fails said nothing to the resident, who
    // did not ask; a pressed button hears why, in the page's language:
    // our server's message, or ours for what the browser refused.
    var fail = function (conditional) {
      return function (err) {
        busy = false;
        if (conditional || (err && err.name === "AbortError")) { return; }
        say(status, ourMessage(err) || cancelledText(login), true);
      };
    };

    login.hidden = false;
    button.addEventListener("click", function () {
      if (busy) { return; }
      if (pending) { pending.abort(); pending = null; }
      say(status, "");
      signIn(false).catch(fail(false));
    });
    if (PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
        if (!ok) { return; }
        var field = document.getElementById("passkey-autofill");
        if (field) { field.hidden = false; }
        signIn(true).catch(fail(true));
      }).catch(function () {});
    }
  }

  // Registration.
  var reg = document.getElementById("passkey-register");
  if (reg) {
    var rBegin = reg.getAttribute("data-begin");
    var rFinish = reg.getAttribute("data-finish");
    var rRequest = reg.getAttribute("data-request") || "";
    var rCSRF = reg.getAttribute("data-csrf");
    var rStatus = document.getElementById("passkey-register-status");
    var rButton = document.getElementById("passkey-add");
    var rBusy = false;
    reg.hidden = false;
    rButton.addEventListener("click", function () {
      if (rBusy) { return; }
      rBusy = true;
      say(rStatus, "");
      post(rBegin, rCSRF, rRequest ? { request: rRequest } : {}).then(function (opts) {
        var pk = opts.publicKey;
        pk.challenge = b64urlToBuf(pk.challenge);
        pk.user.id = b64urlToBuf(pk.user.id);
        decodeIDs(pk.excludeCredentials);
        return navigator.credentials.create({ publicKey: pk }).then(function (cred) {
          say(rStatus, reg.getAttribute("data-working"));
          return post(rFinish, rCSRF, { ceremony: opts.ceremony, credential: credentialJSON(cred) });
        });
      }).then(function (res) {
        window.location.assign(res.redirect);
      }).catch(function (err) {
        rBusy = false;
        say(rStatus, ourMessage(err) || cancelledText(reg), true);
      });
    });
  }
})();
