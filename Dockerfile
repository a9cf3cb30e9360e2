# syntax=docker/dockerfile:1
#
# Watashi container image: `make image`, or
#   docker build -t watashi:dev .
#
# Two stages. The first builds a static binary (CGO off: no libc to match,
# nothing to load at run time). The second is scratch plus exactly three
# files: the binary, the CA bundle (https to OCSP/CRL locations, sector
# documents and jwks_uri) and a passwd line naming the unprivileged user.
# No shell, no package manager, nothing written at run time: run it with a
# read-only root file system. All state lives in Redis.
#
# docs/operator-guide.md explains the configuration it expects
# (/etc/watashi/watashi.yaml, secrets as files).

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused while only the code changes.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ENV CGO_ENABLED=0 GOOS=linux GOFLAGS=-trimpath
RUN go build -ldflags "-s -w -buildid=" -o /out/watashi ./cmd/watashi \
 && go version -m /out/watashi | grep -q 'CGO_ENABLED=0'
# The unprivileged user of the final image, as a passwd/group line of its
# own: scratch has no useradd.
RUN echo 'watashi:x:65532:65532:watashi:/nonexistent:/sbin/nologin' > /out/passwd \
 && echo 'watashi:x:65532:' > /out/group

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/watashi /watashi
USER 65532:65532
# 8080: the public listener (behind the TLS front). 9090: /healthz,
# /readyz and /metrics; never publish it beyond the cluster.
EXPOSE 8080 9090
ENV WATASHI_LISTEN=0.0.0.0:8080 WATASHI_TELEMETRY_LISTEN=0.0.0.0:9090
ENTRYPOINT ["/watashi"]
CMD ["serve", "--config", "/etc/watashi/watashi.yaml"]
