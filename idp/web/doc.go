// Package web is what every browser- and wallet-facing handler of the
// provider shares, so that each handler package states its own flow and
// nothing else: the middleware of the public listener, cookies, CSRF,
// the client address, rate limits, page rendering, error pages, the page
// language and JSON answers.
//
// One request, in order:
//
//  1. Kit.Wrap gives it a request ID (the upstream proxy's when it is
//     well formed), the security headers (a strict CSP with no inline
//     script or style, frame-ancestors 'none', HSTS outside development),
//     panic recovery into a 500 that names the request ID, and, once it is
//     answered, one access-log line and the route metrics. The log line has
//     the path but never the query, cookies, bodies or client addresses.
//  2. A handler reads the browser's state through the Kit: Lang decides the
//     page language once for the whole flow (a pick on any page's switch,
//     remembered in a cookie, then ui_locales, then Accept-Language, then
//     Japanese); CSRFToken and CheckCSRF protect every form (the standard
//     library's cross-origin check first, then a token bound to a
//     per-browser secret cookie); Allow counts the request against a rate
//     limit shared by every node through the store.
//  3. It answers with Render (a template page, buffered so a template
//     failure never sends half a page), ErrorPage, or WriteJSON. An Error
//     keeps what the user may read apart from the cause, which only the
//     log sees.
//
// Only the request ID rides in the request context; everything else is
// passed explicitly.
package web
