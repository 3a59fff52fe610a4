#!/usr/bin/env bash
# Builds skiff's test images from Debian's busybox-static, serves them from a local
# registry (Debian's docker-registry) and writes them as OCI archives for the air-gap
# path. Idempotent: when the registry already holds every image at the digest built
# here, it only checks and returns.
#
# Images (all linux/amd64, one gzip layer, no base image):
#   skiff-test/busybox:1  /bin/busybox and its applets; CMD ["sh"]
#   skiff-test/httpd:1    busybox httpd serving /www/index.html ("hello from skiff")
#                         on port 8080; CMD ["httpd","-f","-v","-p","8080","-h","/www"]
#   skiff-test/fail:1     ENTRYPOINT ["sh","-c","echo failing; exit 3"]
#   skiff-test/greet:1    ENTRYPOINT ["echo","hello"] CMD ["world"]: prints "hello world",
#                         and shows how command/args replace ENTRYPOINT/CMD
#   skiff-test/memhog:1   holds $ALLOC_MB (default 64) MiB in a shell variable, then
#                         sleeps; ENTRYPOINT ["sh","-c", …]
#   skiff-test/nobody:1   USER nobody (uid 65534, group nogroup, also in group staff
#                         of /etc/group); CMD ["id"]
#
# Environment:
#   SKIFF_REGISTRY     host:port of the registry (default 127.0.0.1:5000). It must be
#                      on loopback: the kubelet and skopeo talk plain HTTP to it.
#   SKIFF_IMAGES_DIR   where the OCI layouts, archives and the registry's data live
#                      (default /var/lib/skiff/test-images).
#
# Outputs, besides the registry:
#   $SKIFF_IMAGES_DIR/archives/<name>.tar  an OCI archive whose index names the image
#                      skiff.invalid/test/<name>:1 (io.containerd.image.name), a name no
#                      registry serves: a pod using it can only start from the archive.
set -euo pipefail

registry="${SKIFF_REGISTRY:-127.0.0.1:5000}"
dir="${SKIFF_IMAGES_DIR:-/var/lib/skiff/test-images}"
busybox=/bin/busybox
images=(busybox httpd fail greet memhog nobody)

say() { printf 'images: %s\n' "$*"; }
die() {
    printf 'images: %s\n' "$*" >&2
    exit 1
}

case "$registry" in
127.* | localhost:*) ;;
*) die "SKIFF_REGISTRY=$registry is not on loopback" ;;
esac
[ -x "$busybox" ] || die "$busybox missing: install busybox-static (make deps)"
command -v skopeo >/dev/null || die "skopeo missing (make deps)"
command -v docker-registry >/dev/null || die "docker-registry missing (make deps)"

mkdir -p "$dir"/{layouts,archives,registry,work}

# --- the registry ------------------------------------------------------------------
registry_up() { curl -fsS -m 2 "http://$registry/v2/" >/dev/null 2>&1; }

if ! registry_up; then
    cat >"$dir/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: $registry
YML
    say "starting docker-registry on $registry (log: $dir/registry.log)"
    setsid docker-registry serve "$dir/registry.yml" >>"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/registry.pid"
    for _ in $(seq 1 100); do
        registry_up && break
        sleep 0.1
    done
    registry_up || die "registry did not answer on http://$registry/v2/ (see $dir/registry.log)"
fi

# --- the images ----------------------------------------------------------------------
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Writes the OCI layout $dir/layouts/<name> for an image whose layer tree is $1 and
# whose config fragment (Entrypoint/Cmd/Env/WorkingDir…) is $2.
build_layout() {
    local name=$1 tree=$2 config_fragment=$3
    local out="$dir/layouts/$name" layer="$dir/work/$name-layer.tar"
    rm -rf "$out"
    mkdir -p "$out/blobs/sha256"
    # Deterministic tar and gzip, so digests only change when the content does.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tree" -cf "$layer" .
    local diff_id
    diff_id=$(sha "$layer")
    gzip -n -9 -c "$layer" >"$layer.gz"
    local layer_digest layer_size
    layer_digest=$(sha "$layer.gz")
    layer_size=$(stat -c %s "$layer.gz")
    mv "$layer.gz" "$out/blobs/sha256/$layer_digest"
    rm -f "$layer"
    printf '{"architecture":"amd64","os":"linux","config":{%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"tests/images/build.sh"}]}' \
        "$config_fragment" "$diff_id" >"$dir/work/config.json"
    local config_digest config_size
    config_digest=$(sha "$dir/work/config.json")
    config_size=$(stat -c %s "$dir/work/config.json")
    mv "$dir/work/config.json" "$out/blobs/sha256/$config_digest"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$dir/work/manifest.json"
    local manifest_digest manifest_size
    manifest_digest=$(sha "$dir/work/manifest.json")
    manifest_size=$(stat -c %s "$dir/work/manifest.json")
    mv "$dir/work/manifest.json" "$out/blobs/sha256/$manifest_digest"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"1","io.containerd.image.name":"skiff.invalid/test/%s:1"}}]}' \
        "$manifest_digest" "$manifest_size" "$name" >"$out/index.json"
    echo "sha256:$manifest_digest" >"$out/digest"
}

# The layouts are rebuilt only when this script or busybox changed.
stamp=$(cat "$0" "$busybox" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$dir/layouts/stamp" 2>/dev/null)" != "$stamp" ]; then
# The busybox tree: the static binary and a symlink per applet, as `busybox --install`.
tree="$dir/work/rootfs"
rm -rf "$tree"
mkdir -p "$tree"/{bin,etc,tmp,www,proc,sys,dev,root}
chmod 1777 "$tree/tmp"
cp "$busybox" "$tree/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$tree/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$tree/etc/passwd"
printf 'root:x:0:\nstaff:x:50:nobody\nnogroup:x:65534:\n' >"$tree/etc/group"
echo "hello from skiff" >"$tree/www/index.html"

path_env='"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
build_layout busybox "$tree" "$path_env,\"Cmd\":[\"sh\"]"
build_layout httpd "$tree" "$path_env,\"Cmd\":[\"httpd\",\"-f\",\"-v\",\"-p\",\"8080\",\"-h\",\"/www\"],\"ExposedPorts\":{\"8080/tcp\":{}}"
build_layout fail "$tree" "$path_env,\"Entrypoint\":[\"sh\",\"-c\",\"echo failing; exit 3\"]"
build_layout greet "$tree" "$path_env,\"Entrypoint\":[\"echo\",\"hello\"],\"Cmd\":[\"world\"]"
build_layout memhog "$tree" "\"Env\":[\"PATH=/bin\",\"ALLOC_MB=64\"],\"Entrypoint\":[\"sh\",\"-c\",\"x=\$(head -c \${ALLOC_MB}m /dev/zero | tr -c a a); echo allocated \${#x} bytes; exec sleep 3600\"]"
build_layout nobody "$tree" "$path_env,\"User\":\"nobody\",\"Cmd\":[\"id\"]"
rm -rf "$tree"
echo "$stamp" >"$dir/layouts/stamp"
fi

# --- push and archive ----------------------------------------------------------------
for name in "${images[@]}"; do
    layout="$dir/layouts/$name"
    want=$(cat "$layout/digest")
    have=$(curl -fsS -m 5 -o /dev/null -w '%header{docker-content-digest}' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -I "http://$registry/v2/skiff-test/$name/manifests/1" 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
        say "pushing $registry/skiff-test/$name:1 ($want)"
        skopeo copy --quiet --dest-tls-verify=false --preserve-digests \
            "oci:$layout:1" "docker://$registry/skiff-test/$name:1"
    fi
    archive="$dir/archives/$name.tar"
    if [ ! -f "$archive" ] || [ "$(cat "$archive.digest" 2>/dev/null)" != "$want" ]; then
        tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
            -C "$layout" -cf "$archive.tmp" oci-layout index.json blobs
        mv "$archive.tmp" "$archive"
        echo "$want" >"$archive.digest"
    fi
done
say "ready: ${images[*]} at $registry/skiff-test/<name>:1, archives in $dir/archives"
