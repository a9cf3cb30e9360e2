// Package notify tells residents who asked for it, by mail, each time
// they sign in, and asks them to prove their identity again when their
// facts went stale.
//
// # Flow
//
// Opt-in: the account page calls RequestConfirmation with the address a
// signed-in resident typed. ParseAddress accepts one bare local@domain
// and nothing that could become a header or an SMTP command;
// Subscriptions.Request bounds the confirmations per account (MaxPending
// a day) and stores the address sealed, under a random single-use token
// that lives ConfirmTTL; the confirmation mail carries the token's link.
// Handler serves the link as a page with one button (mail scanners
// follow links; a GET changes nothing), and its POST spends the token
// once, on any node, making the sealed address the account's.
//
// Each sign-in publishes events.SignedIn to the outbox; HandleEvent, the
// outbox consumer ConsumerName, turns one of an account with a confirmed
// address into a job in the store, named after the event so that a
// redelivery adds nothing. FactsStale does the same with another text.
// Only the store is touched there: the relay is never on a sign-in's
// path. Run, on every node, reads the queue, takes a short lock per job
// and sends it through the Mailer (Sender: STARTTLS or implicit TLS,
// AUTH PLAIN from a password file); a temporary failure is retried with
// backoff from MinBackoff to MaxBackoff, a 5xx reply or MaxAge drops the
// job. The text is rendered at sending time from IDs (the service's
// display name, the passkey's name through Names), Japanese then
// English, as one MIME text/plain message in UTF-8.
//
// A sign-in mail carries a "this wasn't me" link: an HMAC-signed token
// naming the account, valid NotMeTTL and spent once in the store. Its
// page's button calls SignOut (the session index's SignOutEverywhere)
// and sends the browser to the account page, where the resident removes
// the card, phone or passkey.
//
// Addresses are sealed at rest (idp/seal) in subscriptions, pending
// confirmations and queued jobs alike; logs never name one.
package notify
