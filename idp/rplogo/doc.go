// Package rplogo shows relying parties' logos on the resident's pages
// without letting the resident's browser, or an integrator's URL, reach
// anything it should not.
//
//	GET /rp-logo/{client_id}   the client's logo, or a neutral mark
//
// A logo comes from the client's registration (logo_uri, or a static
// client's logo_uri). The provider fetches it itself through the guarded
// fetcher (whitelist.Fetcher: https only, no redirects, no internal
// addresses, bounded size and time) and serves the bytes from its own
// origin, so the resident's browser never contacts the RP before the
// resident has decided anything, and the page's CSP stays 'self'.
//
// Only raster images are served: PNG, JPEG and GIF, recognised by their
// bytes (never by the Content-Type the RP sent) and checked by decoding
// their header, at most 1024×1024 pixels and MaxBytes long. An SVG could
// carry script; it is refused like anything else that is not one of the
// three.
//
// Logos are cached in memory, at most MaxEntries of them (each at most
// MaxBytes), for TTL after a good fetch and FailTTL after a failed one, so
// that a page view never waits on an RP twice in a row and a broken URL
// is not asked again at every page view. Fetches of one logo are shared
// by the requests that wait for it, and at most a few run at once: a
// request that would start one more is answered with the mark. Whatever
// goes wrong, the answer is the mark: a rounded square with the RP's
// initial on a colour derived from its client ID (a generic mark for a
// client the provider does not know), never an error a page would show
// as a broken image.
package rplogo
