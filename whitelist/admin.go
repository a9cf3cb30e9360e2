package whitelist

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// AdminOptions configures the operators' HTTP API. It has no default
// token: the API is off until the operator creates one.
type AdminOptions struct {
	// TokenHashFile holds the SHA-256 (hex, optionally prefixed
	// "sha256:") of the admin bearer token, as `watashi client
	// admin-token` prints it. Only the hash is on the server, so reading
	// the file does not give the token away.
	TokenHashFile string
	// TokenHash is the same value given directly; it wins over the file.
	TokenHash string
	// Prefix is the path the handler is mounted at (e.g. "/whitelist");
	// routes are below it.
	Prefix string
	// Blocks, when set, adds the kill switch's routes (/blocks).
	Blocks *Blocklist
}

// ErrAdminDisabled is returned by AdminHandler when no token hash is
// configured.
var ErrAdminDisabled = errors.New("whitelist: admin API is disabled (no admin token hash configured)")

// NewAdminToken makes an admin bearer token and the hash line to put in
// the server's TokenHashFile.
func NewAdminToken() (token, hashLine string) {
	token = "wadm_" + randomToken(32)
	return token, "sha256:" + tokenHash(token)
}

func parseAdminHash(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "sha256:")
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", errors.New("whitelist: admin token hash must be 64 hex digits (sha256:...)")
	}
	return strings.ToLower(s), nil
}

type adminHandler struct {
	r      *Registry
	blocks *Blocklist
	hash   string
	prefix string
}

// AdminHandler serves the operators' JSON API, the same actions as
// `watashi client`:
//
//	GET    /tiers
//	GET    /clients                  POST /clients {"metadata":{...},"tier":"...","approve":false}
//	GET    /clients/{id}             DELETE /clients/{id}
//	POST   /clients/{id}/{approve|suspend|resume|revoke|rotate-secret}
//	GET    /clients/{id}/history
//	GET    /tokens                   POST /tokens {"tier":"...","ttl":"168h","one_time":true,"auto_approve":false}
//	DELETE /tokens/{id}              GET /tokens/history
//	GET    /blocks                   POST /blocks {"kind":"label|aaguid|client","value":"..."}
//	DELETE /blocks/{kind}/{value}    GET /blocks/history
//
// Write requests may carry "actor" and "reason" (JSON body or query),
// which the audit log records with via "admin-api". Every request needs
// Authorization: Bearer <admin token>. Serve it only on the admin
// listener; mutual TLS there is the operator's choice (see
// docs/integrators.md).
func (r *Registry) AdminHandler(o AdminOptions) (http.Handler, error) {
	raw := o.TokenHash
	if raw == "" && o.TokenHashFile != "" {
		b, err := os.ReadFile(o.TokenHashFile)
		if err != nil {
			return nil, fmt.Errorf("whitelist: admin token hash file: %w", err)
		}
		raw = string(b)
	}
	if raw == "" {
		return nil, ErrAdminDisabled
	}
	h, err := parseAdminHash(raw)
	if err != nil {
		return nil, err
	}
	return &adminHandler{r: r, blocks: o.Blocks, hash: h, prefix: strings.TrimSuffix(o.Prefix, "/")}, nil
}

type adminBody struct {
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
	// POST /clients
	Metadata json.RawMessage `json:"metadata"`
	Tier     string          `json:"tier"`
	ID       string          `json:"id"`
	Approve  bool            `json:"approve"`
	// POST /tokens
	TTL         string `json:"ttl"`
	OneTime     bool   `json:"one_time"`
	AutoApprove bool   `json:"auto_approve"`
	Note        string `json:"note"`
	// POST /blocks
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

func adminErr(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (h *adminHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !tokenMatches(bearer(req), h.hash) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="watashi-admin"`)
		adminErr(w, http.StatusUnauthorized, "unauthorized", "admin bearer token required")
		return
	}
	p := strings.TrimPrefix(req.URL.Path, h.prefix)
	if h.prefix != "" && p == req.URL.Path {
		adminErr(w, http.StatusNotFound, "not_found", "no such admin route")
		return
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	var body adminBody
	if req.Method == http.MethodPost || req.Method == http.MethodDelete {
		if req.ContentLength != 0 && req.Body != nil {
			b, e := readBody(w, req)
			if e != nil && req.Method == http.MethodPost {
				adminErr(w, e.httpStatus(), "invalid_request", e.Description)
				return
			}
			if len(bytes.TrimSpace(b)) > 0 {
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&body); err != nil {
					adminErr(w, http.StatusBadRequest, "invalid_request", "the body is not the expected JSON object: "+err.Error())
					return
				}
			}
		}
	}
	q := req.URL.Query()
	if body.Actor == "" {
		body.Actor = q.Get("actor")
	}
	if body.Reason == "" {
		body.Reason = q.Get("reason")
	}
	if body.Actor == "" {
		body.Actor = "admin-api"
	}
	ch := Change{Actor: body.Actor, Via: "admin-api", Reason: body.Reason}
	ctx := req.Context()
	r := h.r
	route := req.Method + " " + strings.Join(routeShape(parts), "/")
	switch route {
	case "GET tiers":
		writeJSON(w, http.StatusOK, map[string]any{"tiers": r.Tiers()})
	case "GET clients":
		cs, err := r.List(ctx)
		if err != nil {
			h.fail(w, err)
			return
		}
		out := make([]*Client, len(cs))
		for i, c := range cs {
			out[i] = c.Redacted()
		}
		writeJSON(w, http.StatusOK, map[string]any{"clients": out})
	case "POST clients":
		m, err := ParseMetadata(body.Metadata)
		if err != nil {
			h.fail(w, err)
			return
		}
		reg, err := r.Add(ctx, AddRequest{Metadata: m, Tier: body.Tier, ID: body.ID, Approve: body.Approve, Change: ch})
		if reg == nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, withWarning(map[string]any{
			"client": reg.Client.Redacted(), "client_secret": reg.ClientSecret,
			"registration_access_token": reg.RegistrationAccessToken,
		}, err))
	case "GET clients/*":
		c, err := r.Get(ctx, parts[1])
		if err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"client": c.Redacted()})
	case "DELETE clients/*":
		err := r.Delete(ctx, parts[1], ch)
		if err != nil && !errors.Is(err, ErrPartial) {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, withWarning(map[string]any{"deleted": parts[1]}, err))
	case "GET clients/*/history":
		evs, err := r.History(ctx, parts[1])
		if err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"client_id": parts[1], "history": nonNil(evs)})
	case "POST clients/*/approve", "POST clients/*/suspend", "POST clients/*/resume", "POST clients/*/revoke":
		c, err := r.Transition(ctx, parts[1], parts[2], ch)
		if c == nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, withWarning(map[string]any{"client": c.Redacted()}, err))
	case "POST clients/*/rotate-secret":
		s, err := r.RotateSecret(ctx, parts[1], ch)
		if s == "" {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, withWarning(map[string]any{"client_id": parts[1], "client_secret": s}, err))
	case "GET tokens":
		ts, err := r.ListTokens(ctx)
		if err != nil {
			h.fail(w, err)
			return
		}
		now := r.now()
		out := make([]map[string]any, len(ts))
		for i, t := range ts {
			out[i] = map[string]any{"token": t.Redacted(), "state": t.State(now)}
		}
		writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
	case "GET tokens/history":
		evs, err := r.TokenHistory(ctx)
		if err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"history": nonNil(evs)})
	case "POST tokens":
		var ttl time.Duration
		if body.TTL != "" {
			d, err := time.ParseDuration(body.TTL)
			if err != nil {
				adminErr(w, http.StatusBadRequest, "invalid_request", "ttl must be a duration such as 168h")
				return
			}
			ttl = d
		}
		tok, t, err := r.IssueToken(ctx, TokenRequest{Tier: body.Tier, TTL: ttl, OneTime: body.OneTime,
			AutoApprove: body.AutoApprove, Note: body.Note, Change: ch})
		if t == nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, withWarning(map[string]any{"initial_access_token": tok, "token": t.Redacted()}, err))
	case "DELETE tokens/*":
		t, err := r.RevokeToken(ctx, parts[1], ch)
		if t == nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, withWarning(map[string]any{"token": t.Redacted(), "state": t.State(r.now())}, err))
	case "GET blocks", "POST blocks", "GET blocks/history", "DELETE blocks/*/*":
		h.serveBlocks(w, req, route, parts, body, ch)
	default:
		adminErr(w, http.StatusNotFound, "not_found", "no such admin route: "+req.Method+" "+p)
	}
}

// serveBlocks is the kill switch: the same actions as `watashi block`.
func (h *adminHandler) serveBlocks(w http.ResponseWriter, req *http.Request, route string, parts []string, body adminBody, ch Change) {
	if h.blocks == nil {
		adminErr(w, http.StatusNotFound, "not_found", "the block list is not configured on this server")
		return
	}
	ctx := req.Context()
	switch route {
	case "GET blocks":
		bs, err := h.blocks.List(ctx)
		if err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"blocks": bs})
	case "GET blocks/history":
		evs, err := h.blocks.History(ctx)
		if err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"history": nonNil(evs)})
	case "POST blocks":
		blk, err := h.blocks.Add(ctx, body.Kind, body.Value, ch)
		if blk == nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, withWarning(map[string]any{"block": blk}, err))
	case "DELETE blocks/*/*":
		err := h.blocks.Remove(ctx, parts[1], parts[2], ch)
		if err != nil && !errors.Is(err, ErrPartial) {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, withWarning(map[string]any{"unblocked": map[string]string{"kind": parts[1], "value": parts[2]}}, err))
	}
}

// routeShape replaces the ID segments with "*" so that routes match.
func routeShape(parts []string) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p
		if i == 1 && (parts[0] == "clients" || parts[0] == "tokens") && p != "history" {
			out[i] = "*"
		}
		if (i == 1 || i == 2) && parts[0] == "blocks" && len(parts) == 3 {
			out[i] = "*"
		}
	}
	return out
}

func nonNil(evs []AuditEvent) []AuditEvent {
	if evs == nil {
		return []AuditEvent{}
	}
	return evs
}

func withWarning(m map[string]any, err error) map[string]any {
	if err != nil {
		m["warning"] = err.Error()
	}
	return m
}

func (h *adminHandler) fail(w http.ResponseWriter, err error) {
	var ve *Error
	switch {
	case errors.As(err, &ve):
		adminErr(w, http.StatusBadRequest, ve.Code, ve.Description)
	case errors.Is(err, ErrUnknownClient), errors.Is(err, ErrUnknownToken), errors.Is(err, ErrNotBlocked):
		adminErr(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrInvalidTransition), errors.Is(err, ErrExists), errors.Is(err, ErrConflict),
		errors.Is(err, ErrNoSecret), errors.Is(err, ErrTokenRevoked), errors.Is(err, ErrAlreadyBlocked),
		errors.Is(err, ErrTooManyBlocks):
		adminErr(w, http.StatusConflict, "conflict", err.Error())
	default:
		h.r.log.Error("whitelist: admin API", "error", err)
		adminErr(w, http.StatusInternalServerError, "server_error", "internal error")
	}
}

// Redacted is the client as operators' tools show it: without the
// hashes of its credentials.
func (c *Client) Redacted() *Client {
	cp := c.clone()
	cp.SecretHash, cp.RegistrationTokenHash = "", ""
	return cp
}

// Redacted is the token record without its hash.
func (t *InitialAccessToken) Redacted() *InitialAccessToken {
	cp := *t
	cp.Hash = ""
	return &cp
}
