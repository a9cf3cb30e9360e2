// Package templates is the embedded, themeable sign-in UI: HTML templates,
// their Japanese and English messages, and the static CSS and JavaScript
// they use.
//
// Everything that can go wrong with a theme goes wrong at start-up, not in
// front of a resident halfway through signing in. New reads the embedded
// files with an operator's override directory laid over them (a file
// replaces the embedded one of the same name; message catalogues merge key
// by key, so a theme only lists what it changes), parses every page, and
// scans the templates for the message keys they name, refusing to start if
// any page is missing or broken or any language lacks a key. It reports
// all of the problems at once, so a theme is fixed in one round.
//
// Each page is parsed once, together with the layout, and serves every
// language: the language travels with the render, not the template.
// Templates receive a Page, {{.Lang}}, {{.Data}} (the handler's view) and
// {{.T "key" args...}}, which looks the key up in that language's
// catalogue when the page renders. Messages are plain text that
// html/template escapes like any other value, so a theme's wording cannot
// inject markup, and no template function reads the environment or the
// request. Render executes into a buffer and writes only a complete page,
// so a template that fails at run time produces an error the handler can
// turn into an error page instead of half a page.
//
// The layout gives every page the same frame: the logo and the language
// switch in the header (pages fill the "langs" block with the layout's
// "langswitch" template over their Data.Languages), the page's "main"
// block, and a "bodyclass" block for pages that need the wide frame (the
// login page's QR code beside this device's ways). The look is one
// stylesheet, static/watashi.css: cards on a quiet background, phone first,
// with colour pairs that keep WCAG AA contrast (the browser test runs
// axe-core over every page). No page needs a script to be read or
// answered; scripts only enhance (login.js, passkey.js). static/ also holds
// the logo (logo.svg) and the icons served at /favicon.ico and
// /static/apple-touch-icon.png.
//
// Which language is for the handler to decide; Negotiate is the fallback
// when the resident has not picked one. An RP's ui_locales come before the
// browser's Accept-Language because the RP asked explicitly, and anything
// unsupported, unconfident or malformed gives Japanese, because residents
// are in Japan. Both inputs come from the request, so their size is
// bounded before any parsing.
package templates
