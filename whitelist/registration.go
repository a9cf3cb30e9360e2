package whitelist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// RegistrationOptions configures the RFC 7591/7592 endpoint.
type RegistrationOptions struct {
	// Endpoint is the absolute URL the handler is served at, e.g.
	// https://id.example/register (advertised as registration_endpoint).
	// Management URLs are Endpoint + "/" + client_id.
	Endpoint string
	// TrustedIssuers may sign software statements.
	TrustedIssuers []TrustedIssuer
	// RequireSoftwareStatement refuses registrations without one.
	RequireSoftwareStatement bool
}

type regHandler struct {
	r        *Registry
	o        RegistrationOptions
	mount    string // path of Endpoint
	endpoint string
}

// RegistrationHandler serves dynamic registration (RFC 7591) at
// Endpoint's path and client management (RFC 7592) below it. Mount it on
// both the path and the path with a trailing slash. Registration needs an
// initial access token; management needs the client's registration
// access token.
func (r *Registry) RegistrationHandler(o RegistrationOptions) (http.Handler, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("whitelist: registration endpoint %q must be an absolute URL", o.Endpoint)
	}
	if u.Scheme != "https" && !r.dev {
		return nil, fmt.Errorf("whitelist: registration endpoint %q must use https", o.Endpoint)
	}
	mount := strings.TrimSuffix(u.Path, "/")
	if mount == "" {
		return nil, fmt.Errorf("whitelist: registration endpoint %q needs a path such as /register", o.Endpoint)
	}
	for i, ti := range o.TrustedIssuers {
		if ti.Issuer == "" || len(ti.Keys.Keys) == 0 {
			return nil, fmt.Errorf("whitelist: trusted issuer %d needs an issuer and keys", i)
		}
		for _, k := range ti.Keys.Keys {
			if !k.IsPublic() || !k.Valid() {
				return nil, fmt.Errorf("whitelist: trusted issuer %q: keys must be public", ti.Issuer)
			}
		}
	}
	return &regHandler{r: r, o: o, mount: mount, endpoint: strings.TrimSuffix(o.Endpoint, "/")}, nil
}

func (h *regHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	p := req.URL.Path
	switch {
	case p == h.mount || p == h.mount+"/":
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, &Error{Code: CodeInvalidRequest, Status: http.StatusMethodNotAllowed, Description: "register with POST"})
			return
		}
		h.register(w, req)
	case strings.HasPrefix(p, h.mount+"/"):
		id := strings.TrimPrefix(p, h.mount+"/")
		if strings.Contains(id, "/") {
			writeError(w, &Error{Code: CodeInvalidRequest, Status: http.StatusNotFound, Description: "no such registration resource"})
			return
		}
		h.manage(w, req, id)
	default:
		writeError(w, &Error{Code: CodeInvalidRequest, Status: http.StatusNotFound, Description: "no such registration resource"})
	}
}

func bearer(req *http.Request) string {
	a := req.Header.Get("Authorization")
	if len(a) < 7 || !strings.EqualFold(a[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(a[7:])
}

func unauthorized(w http.ResponseWriter, desc string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="invalid_token", error_description=%q`, desc))
	writeError(w, &Error{Code: CodeInvalidToken, Status: http.StatusUnauthorized, Description: desc})
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.httpStatus(), map[string]string{"error": e.Code, "error_description": e.Description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// readBody enforces the content type and the size limit.
func readBody(w http.ResponseWriter, req *http.Request) ([]byte, *Error) {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, &Error{Code: CodeInvalidClientMetadata, Status: http.StatusUnsupportedMediaType,
			Description: "send the client metadata as JSON with Content-Type: application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{Code: CodeInvalidClientMetadata, Status: http.StatusRequestEntityTooLarge,
				Description: fmt.Sprintf("the request body is larger than %d bytes", MaxBodyBytes)}
		}
		return nil, &Error{Code: CodeInvalidRequest, Description: "the request body could not be read"}
	}
	return body, nil
}

// requestMetadata parses a registration or update body, applying a
// software statement's claims over the body's.
func (h *regHandler) requestMetadata(body []byte) (fieldSet, Metadata, string, *Error) {
	f, e := parseObject(body)
	if e != nil {
		return nil, Metadata{}, "", e
	}
	issuer := ""
	if f.present("software_statement") {
		stmt, e := f.str("software_statement")
		if e != nil {
			return nil, Metadata{}, "", &Error{Code: CodeInvalidSoftwareStatement, Field: "software_statement", Description: "software_statement must be a JWT string"}
		}
		claims, iss, e := verifySoftwareStatement(stmt, h.o.TrustedIssuers, h.r.now())
		if e != nil {
			return nil, Metadata{}, "", e
		}
		for k, v := range claims {
			f[k] = v // the statement takes precedence (RFC 7591 §2.3)
		}
		issuer = iss
	} else if h.o.RequireSoftwareStatement {
		return nil, Metadata{}, "", &Error{Code: CodeInvalidSoftwareStatement, Field: "software_statement",
			Description: "software_statement is required: this server registers only software vouched for by a trusted issuer"}
	}
	m, e := f.metadata()
	if e != nil {
		return nil, Metadata{}, "", e
	}
	return f, m, issuer, nil
}

func tokenProblem(err error) string {
	switch {
	case errors.Is(err, ErrTokenExpired):
		return "the initial access token has expired; ask the operator for a new one"
	case errors.Is(err, ErrTokenUsed):
		return "the initial access token was for a single registration and has been used; ask the operator for a new one"
	case errors.Is(err, ErrTokenRevoked):
		return "the initial access token has been revoked"
	default:
		return "the initial access token is not valid"
	}
}

func (h *regHandler) register(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	tok := bearer(req)
	if tok == "" {
		unauthorized(w, "registration needs an initial access token from the operator: send Authorization: Bearer <token>")
		return
	}
	iat, err := h.r.checkToken(ctx, tok)
	if err != nil {
		if isStoreError(err) {
			h.fail(w, err)
			return
		}
		unauthorized(w, tokenProblem(err))
		return
	}
	body, e := readBody(w, req)
	if e != nil {
		writeError(w, e)
		return
	}
	_, m, issuer, e := h.requestMetadata(body)
	if e != nil {
		writeError(w, e)
		return
	}
	ch := Change{Actor: "iat:" + iat.ID, Via: "registration", Reason: "dynamic registration"}
	reg, err := h.r.create(ctx, m, createParams{
		tier: iat.Tier, approve: iat.AutoApprove, change: ch, registeredWith: iat.ID, ssIssuer: issuer,
		commit: func(ctx context.Context) error { return h.r.useToken(ctx, iat.ID) },
	})
	if err != nil && reg == nil {
		var ve *Error
		switch {
		case errors.As(err, &ve):
			writeError(w, ve)
		case errors.Is(err, ErrTokenUsed), errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenRevoked):
			unauthorized(w, tokenProblem(err))
		default:
			h.fail(w, err)
		}
		return
	}
	if err != nil {
		h.r.log.Warn("whitelist: client registered but its audit or notification failed", "client_id", reg.Client.ID, "error", err)
	}
	_ = h.r.appendAudit(ctx, tokenLogKey, AuditEvent{Action: ActionTokenUse, TokenID: iat.ID, ClientID: reg.Client.ID,
		Actor: ch.Actor, Via: ch.Via})
	h.r.log.Info("whitelist: client registered", "client_id", reg.Client.ID, "tier", reg.Client.Tier,
		"status", reg.Client.Status, "token_id", iat.ID)
	writeJSON(w, http.StatusCreated, h.info(reg.Client, reg.ClientSecret, reg.RegistrationAccessToken))
}

func isStoreError(err error) bool {
	return !errors.Is(err, ErrUnknownToken) && !errors.Is(err, ErrTokenExpired) &&
		!errors.Is(err, ErrTokenUsed) && !errors.Is(err, ErrTokenRevoked) && !errors.Is(err, ErrUnknownClient)
}

func (h *regHandler) fail(w http.ResponseWriter, err error) {
	h.r.log.Error("whitelist: registration failed", "error", err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		writeError(w, &Error{Code: CodeServerError, Status: http.StatusServiceUnavailable, Description: "try again later"})
		return
	}
	writeError(w, &Error{Code: CodeServerError, Status: http.StatusInternalServerError, Description: "internal error; try again later"})
}

// ClientInfo is the RFC 7591 §3.2.1 / RFC 7592 §3 response: the
// registered metadata with what the server provisioned, plus Watashi's
// status, tier and minimum acr. scope and claims are the effective
// ones (the tier's when the client registered none), so that a client
// that PUTs back what it read keeps exactly its access.
type ClientInfo struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64 `json:"client_secret_expires_at,omitempty"`
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	Metadata
	Status Status `json:"status"`
	Tier   string `json:"tier"`
	MinACR string `json:"min_acr"`
}

func (h *regHandler) info(c *Client, secret, rat string) ClientInfo {
	ci := ClientInfo{
		ClientID: c.ID, ClientSecret: secret, ClientIDIssuedAt: c.CreatedAt.Unix(),
		RegistrationAccessToken: rat, RegistrationClientURI: h.endpoint + "/" + c.ID,
		Metadata: c.Metadata, Status: c.Status, Tier: c.Tier, MinACR: c.MinACR,
	}
	if c.TokenEndpointAuthMethod == AuthClientSecretBasic {
		var never int64
		ci.ClientSecretExpiresAt = &never
	}
	ci.Scope = strings.Join(c.AllowedScopes, " ")
	ci.Claims = c.AllowedClaims
	return ci
}

func (h *regHandler) manage(w http.ResponseWriter, req *http.Request, id string) {
	ctx := req.Context()
	tok := bearer(req)
	if tok == "" {
		unauthorized(w, "send the registration access token you received at registration: Authorization: Bearer <token>")
		return
	}
	c, err := h.r.Get(ctx, id)
	if err != nil && !errors.Is(err, ErrUnknownClient) {
		h.fail(w, err)
		return
	}
	// An unknown client and a wrong token look the same (RFC 7592 §2.1).
	if c == nil || !tokenMatches(tok, c.RegistrationTokenHash) {
		unauthorized(w, "the registration access token is not valid for this client")
		return
	}
	self := Change{Actor: "client:" + id, Via: "registration"}
	switch req.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, h.info(c, "", ""))
	case http.MethodPut:
		body, e := readBody(w, req)
		if e != nil {
			writeError(w, e)
			return
		}
		f, m, _, e := h.requestMetadata(body)
		if e != nil {
			writeError(w, e)
			return
		}
		sentID, e := f.str("client_id")
		if e != nil || sentID != id {
			writeError(w, metaErr("client_id", "must be present and equal to %s (RFC 7592 §2.2)", quote(id)))
			return
		}
		if f.present("client_secret") {
			s, _ := f.str("client_secret")
			if !c.VerifySecret(s) {
				writeError(w, metaErr("client_secret", "does not match the current secret; omit it"))
				return
			}
		}
		self.Reason = "RFC 7592 update"
		nc, secret, err := h.r.update(ctx, id, m, self)
		if err != nil && nc == nil {
			var ve *Error
			if errors.As(err, &ve) {
				writeError(w, ve)
				return
			}
			if errors.Is(err, ErrUnknownClient) {
				unauthorized(w, "the registration access token is not valid for this client")
				return
			}
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, h.info(nc, secret, ""))
	case http.MethodDelete:
		self.Reason = "RFC 7592 delete"
		if err := h.r.Delete(ctx, id, self); err != nil && !errors.Is(err, ErrUnknownClient) {
			if errors.Is(err, ErrPartial) {
				h.r.log.Warn("whitelist: client deleted but its audit or notification failed", "client_id", id, "error", err)
			} else {
				h.fail(w, err)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeError(w, &Error{Code: CodeInvalidRequest, Status: http.StatusMethodNotAllowed, Description: "use GET, PUT or DELETE"})
	}
}
