// Package metrics registers the provider's Prometheus collectors on the
// registry the operator injects (never the global one), tolerating a
// second provider on the same registry.
package metrics
