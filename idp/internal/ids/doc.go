// Package ids makes the random identifiers and the hashes under which the
// provider stores secrets. Every identifier a browser, wallet or relying
// party holds comes from here, so that their strength is decided in one
// place: base64url, so that they never contain the ':', '.', '{' or '}'
// that store keys and token formats use as separators.
package ids
