# The halkyon operator image: FROM scratch, nothing but
#   /usr/local/bin/halkyon        the Linux binary (Bun-compiled, dynamically linked against glibc)
#   the glibc loader and libc, libm, libpthread, libdl (from Debian's libc6 for the target arch)
#   /usr/bin/tini                 PID 1 (Debian's tini-static): Bun does not reap re-parented grandchildren
#   /etc/ssl/certs/ca-certificates.crt, /etc/passwd, /etc/group (user halkyon, 65532)
#   /plugins (owned by halkyon) and /tmp (1777), writable
#
# `npm run image` stages dist/image/rootfs-<arch>/ and dist/image/writable/, then assembles the image
# from this file for linux/amd64 and linux/arm64 into OCI archives, without a container tool or root
# (scripts/release/dockerfile.ts reads it: FROM scratch, ARG, COPY of folders, ENV, USER, WORKDIR,
# EXPOSE, ENTRYPOINT and CMD in exec form; anything else stops the build). To build it yourself,
# stage first (`npm run image` does), then e.g. `docker build --platform linux/arm64 .`.
FROM scratch
ARG TARGETARCH
COPY dist/image/rootfs-${TARGETARCH}/ /
COPY --chown=65532:65532 dist/image/writable/ /
ENV HOME=/tmp SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/halkyon"]
CMD ["run", "--plugins-dir", "/plugins"]
