# The kubevigil controller image for kind (see kind-tests/kind.sh): one static musl binary on distroless.
# Build context: a directory holding the binary `controller` (x86_64-unknown-linux-musl, release).
FROM gcr.io/distroless/static-debian12:nonroot
COPY controller /controller
USER 65532:65532
ENTRYPOINT ["/controller"]
