// Package deploytest checks what deploy/ ships without running it: the
// Dockerfile's invariants (parsed with BuildKit's parser), the Compose
// file's structure, and the Helm chart rendered with the Helm SDK for
// several value sets, every manifest decoded into the Kubernetes API
// types. It is a module of its own so that Kubernetes and Helm stay out
// of Watashi's go.mod; `make test` runs it.
package deploytest
