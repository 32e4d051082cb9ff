# oidc-proxy in a FROM scratch image: the static binary, the CA bundle, a
# non-root user, nothing else.
#
#   docker build -t oidc-proxy .                  # or: podman build -t oidc-proxy .
#   docker build --build-arg VERSION=v1.2.3 -t oidc-proxy .
#
# The build stage is the official Go image; GO_IMAGE names another one
# with the same Go (CI, which cannot pull images, makes one from its own
# toolchain: see .ci/image). Run the image with the configuration at
# /etc/oidc-proxy/oidc-proxy.yaml and the secrets as files (for example
# under /run/secrets).
ARG GO_IMAGE=docker.io/library/golang:1.26.8-bookworm

# The build stage runs on the machine's own platform and cross-compiles for
# the image's (no emulation): one
#   docker buildx build --platform linux/amd64,linux/arm64 .
# makes both images.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/oidc-proxy ./cmd/oidc-proxy && \
    mkdir -p /out/state && cp /etc/ssl/certs/ca-certificates.crt /out/

FROM scratch
COPY --from=build /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/oidc-proxy /oidc-proxy
# Where the Memos bridge keeps the admin token it creates on Memos's first
# run: mount a volume here (a named volume takes this owner).
COPY --from=build --chown=65532:65532 /out/state/ /var/lib/oidc-proxy/
USER 65532:65532
EXPOSE 4180
HEALTHCHECK --interval=30s --timeout=5s CMD ["/oidc-proxy", "-healthcheck", "http://127.0.0.1:4180/oauth2/healthz"]
ENTRYPOINT ["/oidc-proxy"]
CMD ["-config", "/etc/oidc-proxy/oidc-proxy.yaml"]
