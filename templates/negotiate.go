package templates

import (
	"strings"

	"golang.org/x/text/language"
)

// Bounds on what Negotiate reads. Browsers send a few dozen bytes and RPs
// a handful of ui_locales; anything beyond these is not a person's
// preference, and parsing it would only let a request buy CPU time.
const (
	maxAcceptLanguage = 1 << 10 // bytes; a longer header is ignored
	maxTags           = 32      // language tags considered from either source
	maxTagLen         = 64      // bytes; a longer ui_locales entry is ignored
)

// supported and matcher follow Languages: index i of a match is
// Languages[i], and the first tag is what the matcher falls back to.
var (
	supported = func() []language.Tag {
		tags := make([]language.Tag, len(Languages))
		for i, l := range Languages {
			tags[i] = language.MustParse(l)
		}
		return tags
	}()
	matcher = language.NewMatcher(supported)
)

// Negotiate picks the UI language. The RP's ui_locales (OIDC, in its
// order of preference) come first: the RP knows its users and asked
// explicitly. Otherwise the browser's Accept-Language decides, by quality
// value. Whatever matches none of Languages, is malformed or is
// implausibly large gives DefaultLanguage: residents are in Japan.
//
// Matching is x/text's, so regional and legacy forms count ("en-GB" and
// "eng" are English, "ja-JP" Japanese) and entries are weighed in order
// of preference, not just the first one taken.
func Negotiate(uiLocales []string, acceptLanguage string) string {
	var ui []language.Tag
	for _, l := range uiLocales[:min(len(uiLocales), maxTags)] {
		if len(l) > maxTagLen {
			continue
		}
		if t, err := language.Parse(l); err == nil {
			ui = append(ui, t)
		}
	}
	if l, ok := best(ui); ok {
		return l
	}
	if l, ok := best(acceptTags(acceptLanguage)); ok {
		return l
	}
	return DefaultLanguage
}

// best returns the supported language that matches tags (most preferred
// first), if the matcher is confident in one. With no confident match the
// matcher still returns some supported tag, not necessarily the default,
// so the confidence is what decides.
func best(tags []language.Tag) (string, bool) {
	if len(tags) == 0 {
		return "", false
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return "", false
	}
	return Languages[i], true
}

// acceptTags parses an Accept-Language header into tags, highest quality
// first, with the wildcard replaced by the languages it stands for. A
// header that is too long or malformed yields none: a guess from part of
// it could pick a language the resident did not ask for.
func acceptTags(header string) []language.Tag {
	if header == "" || len(header) > maxAcceptLanguage {
		return nil
	}
	// Tags and the "q" are case-insensitive, but the parser only takes
	// a lower-case "q".
	tags, q, err := language.ParseAcceptLanguage(strings.ToLower(header))
	if err != nil {
		return nil
	}
	for _, w := range q {
		if !(w > 0 && w <= 1) { // q=2, NaN, Inf: not a quality value
			return nil
		}
	}
	tags = tags[:min(len(tags), maxTags)]
	return expandWildcard(tags)
}

// mul is what x/text parses the Accept-Language wildcard "*" to (and
// "mul", "multiple languages", may as well mean the same).
var mul = language.MustParse("mul")

// expandWildcard replaces "*" by the supported languages the header does
// not name, in Languages order. "*" stands for every language not listed
// (RFC 9110), so "en;q=0.5, *" prefers any language, Japanese first, to
// English, while "*, ja;q=0.1" means anything but Japanese. The matcher
// alone would not match "*" at all and let the other entries decide. The
// parser has already dropped entries with q=0, so "ja;q=0, *" cannot
// exclude Japanese; no browser sends that.
func expandWildcard(tags []language.Tag) []language.Tag {
	star := -1
	for i, t := range tags {
		if t == mul {
			star = i
			break
		}
	}
	if star < 0 {
		return tags
	}
	var rest []language.Tag
	for _, s := range supported {
		sb, _ := s.Base()
		named := false
		for _, t := range tags {
			if b, c := t.Base(); c == language.Exact && b == sb {
				named = true
				break
			}
		}
		if !named {
			rest = append(rest, s)
		}
	}
	out := make([]language.Tag, 0, len(tags)-1+len(rest))
	out = append(out, tags[:star]...)
	out = append(out, rest...)
	for _, t := range tags[star+1:] {
		if t != mul {
			out = append(out, t)
		}
	}
	return out
}
