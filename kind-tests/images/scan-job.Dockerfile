# The kubevigil scan-job image for kind (see kind-tests/kind.sh): one static musl binary on distroless.
# Build context: a directory holding the binary `scan-job` (x86_64-unknown-linux-musl, release).
FROM gcr.io/distroless/static-debian12:nonroot
COPY scan-job /scan-job
USER 65532:65532
ENTRYPOINT ["/scan-job"]
