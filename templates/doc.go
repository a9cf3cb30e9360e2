// Package templates is the embedded, themeable sign-in UI: HTML templates,
// their Japanese and English messages, and the static CSS and JavaScript
// they use. Operators theme it with an override directory whose files
// replace the embedded ones of the same name; a template that is missing
// or does not parse, or a message that a template uses but a language
// lacks, is a start-up error rather than a broken page in front of a
// resident (DESIGN.md §7.5).
//
// Templates receive a Page: {{.Lang}}, {{.Data}} (the handler's view) and
// {{.T "key" args...}} for messages. No template function reads the
// environment or the request.
package templates
