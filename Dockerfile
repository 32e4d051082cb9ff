# oidc-proxy in a FROM scratch image: the static binary, the CA bundle, a
# non-root user, nothing else. Base images are not pulled: the binary is
# built beforehand, as release tooling does. .ci/image does every step:
#
#   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o build/oidc-proxy ./cmd/oidc-proxy
#   cp /etc/ssl/certs/ca-certificates.crt build/
#   mkdir -p build/state
#   buildah bud --format docker -t oidc-proxy .     # or: docker build -t oidc-proxy .
#
# Run it with the configuration at /etc/oidc-proxy/oidc-proxy.yaml and the
# secrets as files (for example under /run/secrets).
FROM scratch
COPY build/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY build/oidc-proxy /oidc-proxy
# Where the Memos bridge keeps the admin token it creates on Memos's first
# run: mount a volume here (a named volume takes this owner).
COPY --chown=65532:65532 build/state/ /var/lib/oidc-proxy/
USER 65532:65532
EXPOSE 4180
HEALTHCHECK --interval=30s --timeout=5s CMD ["/oidc-proxy", "-healthcheck", "http://127.0.0.1:4180/oauth2/healthz"]
ENTRYPOINT ["/oidc-proxy"]
CMD ["-config", "/etc/oidc-proxy/oidc-proxy.yaml"]
