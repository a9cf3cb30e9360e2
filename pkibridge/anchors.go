package pkibridge

import "crypto/x509"

// Anchors is a set of trust anchors matched by key.
type Anchors struct {
	certs []*x509.Certificate
}
