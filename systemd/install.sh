#!/bin/sh
# Install pdm-agent as a systemd service (run from a clone, as root): `make install` calls this.
#
#   venv      $PREFIX/venv              (default /opt/pdm-agent), the agent and its dependencies
#   config    $CONFDIR/config.yaml      (default /etc/pdm-agent): systemd/production-config.yaml, product
#                                       defaults and no sensor (the service refuses to start until one is
#                                       added). An existing file is never overwritten: the new template goes
#                                       next to it as config.yaml.dist
#   unit      $UNITDIR/pdm-agent.service (default /etc/systemd/system), enabled when systemd runs
#   command   $BINDIR/pdm-agent          (default /usr/local/bin), for `pdm-agent config edit`
#   user      none to create: the unit uses DynamicUser=yes with SupplementaryGroups=dialout
#
# DESTDIR=/some/dir stages everything under that directory (packaging, tests) and never touches
# the running system (no systemctl). The staged venv is made relocatable to PREFIX: its scripts
# and byte code name $PREFIX, not $DESTDIR$PREFIX, so `cp -a $DESTDIR/. /` (or a package) works. PACKAGE is what pip installs (default: this clone; or a
# wheel), PIP_ARGS are passed to pip (e.g. --no-index --find-links WHEELHOUSE on an offline gateway).
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/pdm-agent}
CONFDIR=${CONFDIR:-/etc/pdm-agent}
UNITDIR=${UNITDIR:-/etc/systemd/system}
BINDIR=${BINDIR:-/usr/local/bin}
PYTHON=${PYTHON:-python3}
PIP_ARGS=${PIP_ARGS:-}
PACKAGE=${PACKAGE:-$SRC}

say() { printf 'pdm-agent install: %s\n' "$*"; }
die() { printf 'pdm-agent install: error: %s\n' "$*" >&2; exit 1; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo make install), or set DESTDIR to stage the files"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
    || die "$PYTHON is missing or older than 3.10"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "Python's venv module is missing: apt-get install python3-venv"

# 1. The agent in its own virtual environment (re-running upgrades it in place).
VENV=$DESTDIR$PREFIX/venv
say "virtual environment $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
NO_COMPILE=
[ -n "$DESTDIR" ] && NO_COMPILE=--no-compile  # compiled below, with the final paths
# shellcheck disable=SC2086 # PIP_ARGS is a list of words
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $NO_COMPILE $PIP_ARGS "$PACKAGE"
if [ -n "$DESTDIR" ]; then
    # A venv records its own path in its scripts' #! lines and activate files, and the byte code
    # records source paths: rewrite them to where the tree will live once the stage is copied.
    grep -rlF "$VENV" "$VENV/bin" "$VENV/pyvenv.cfg" 2>/dev/null | while IFS= read -r f; do
        [ -L "$f" ] || sed -i "s#$VENV#$PREFIX/venv#g" "$f"
    done
    find "$VENV" -name __pycache__ -type d -prune -exec rm -rf {} +
    # `|| true`: some packages ship files that are not Python 3 (test data); they stay uncompiled.
    "$VENV/bin/python" -m compileall -q -j 0 -s "$DESTDIR" -p / "$VENV/lib" >/dev/null || true
    if grep -rqF "$DESTDIR" "$VENV"; then
        die "the staged venv still names $DESTDIR: $(grep -rlF "$DESTDIR" "$VENV" | head -3)"
    fi
fi
install -d -m 0755 "$DESTDIR$PREFIX/share/doc"
for doc in README.md systemd/README.md:SERVICE-INSTALL.md docs/service.md:service.md docs/mqtt.md:mqtt.md; do
    from=${doc%%:*}; to=${doc#*:}; [ "$to" = "$doc" ] && to=$(basename "$from")
    [ -f "$SRC/$from" ] && install -m 0644 "$SRC/$from" "$DESTDIR$PREFIX/share/doc/$to"
done

# 2. The config: the production template (product defaults, no sensor: nothing simulated, no demo
#    fault), with this machine's host name as device.id when it is a valid id.
install -d -m 0755 "$DESTDIR$CONFDIR"
CONFIG=$DESTDIR$CONFDIR/config.yaml
NEW=$(mktemp)
trap 'rm -f "$NEW"' EXIT
HOST_ID=
if [ -z "$DESTDIR" ]; then
    HOST_ID=$(hostname 2>/dev/null | tr -c 'A-Za-z0-9_\n-' '-' | cut -c1-64)
fi
if [ -n "$HOST_ID" ]; then
    sed "s#^\(  id:\) gateway-01 #\1 $HOST_ID #" "$SRC/systemd/production-config.yaml" >"$NEW"
else
    cp "$SRC/systemd/production-config.yaml" "$NEW"
fi
if [ -e "$CONFIG" ]; then
    install -m 0644 "$NEW" "$CONFIG.dist"
    say "kept your $CONFIG; the new template is $CONFIG.dist (diff them after an upgrade)"
else
    install -m 0644 "$NEW" "$CONFIG"
    say "config $CONFIG: add your sensors (pdm-agent config edit); the service will not start without one"
fi
# The unit loads the broker password as a systemd credential from this root-only file;
# empty means no password. Never overwritten.
if [ ! -e "$DESTDIR$CONFDIR/mqtt-password" ]; then
    install -m 0600 /dev/null "$DESTDIR$CONFDIR/mqtt-password"
fi
if [ -z "$DESTDIR" ] && ! "$VENV/bin/pdm-agent" config check --config "$CONFIG" >/dev/null 2>&1; then
    say "note: $CONFIG is not ready yet (pdm-agent config check says why); the service refuses to start until it is"
fi

# 3. The unit (ExecStart follows PREFIX), and the command on PATH.
install -d -m 0755 "$DESTDIR$UNITDIR"
sed "s#/opt/pdm-agent/#$PREFIX/#g" "$SRC/systemd/pdm-agent.service" >"$NEW"
install -m 0644 "$NEW" "$DESTDIR$UNITDIR/pdm-agent.service"
install -d -m 0755 "$DESTDIR$BINDIR"
ln -sf "$PREFIX/venv/bin/pdm-agent" "$DESTDIR$BINDIR/pdm-agent"
say "unit $DESTDIR$UNITDIR/pdm-agent.service, command $DESTDIR$BINDIR/pdm-agent"

# 4. The serial-port group the unit's dynamic user joins.
getent group dialout >/dev/null 2>&1 || say "warning: no 'dialout' group; serial ports may be unreadable"

# 5. Enable (and restart after an upgrade) when systemd is running this machine.
if [ -n "$DESTDIR" ]; then
    say "staged under $DESTDIR; systemd left alone"
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    systemctl enable pdm-agent.service
    if systemctl is-active --quiet pdm-agent.service; then
        systemctl restart pdm-agent.service
        say "enabled and restarted"
    else
        say "enabled; start it with: systemctl start pdm-agent (logs: journalctl -u pdm-agent -f)"
    fi
else
    say "systemd is not running here; on the gateway run:"
    say "  systemctl daemon-reload && systemctl enable --now pdm-agent"
fi
