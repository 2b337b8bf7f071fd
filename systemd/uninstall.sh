#!/bin/sh
# Remove what systemd/install.sh installed (`make uninstall`). The config (/etc/pdm-agent) and
# the state (outbox, learned baselines in /var/lib/pdm-agent) are kept unless --purge is given.
# Same variables as install.sh (DESTDIR, PREFIX, CONFDIR, UNITDIR, BINDIR).
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/pdm-agent}
CONFDIR=${CONFDIR:-/etc/pdm-agent}
UNITDIR=${UNITDIR:-/etc/systemd/system}
BINDIR=${BINDIR:-/usr/local/bin}
PURGE=no
for arg in "$@"; do
    case $arg in
        --purge) PURGE=yes ;;
        *) printf 'usage: %s [--purge]\n' "$0" >&2; exit 2 ;;
    esac
done

say() { printf 'pdm-agent uninstall: %s\n' "$*"; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    printf 'pdm-agent uninstall: error: run as root (sudo make uninstall)\n' >&2
    exit 1
fi
UNIT=$DESTDIR$UNITDIR/pdm-agent.service
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now pdm-agent.service 2>/dev/null || true
fi
rm -f "$UNIT"
rm -rf "$UNIT.d"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    systemctl reset-failed pdm-agent.service 2>/dev/null || true
fi
LINK=$DESTDIR$BINDIR/pdm-agent
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$PREFIX/venv/bin/pdm-agent" ]; then
    rm -f "$LINK"
fi
rm -rf "$DESTDIR$PREFIX"
say "removed the unit, $PREFIX and $BINDIR/pdm-agent"

if [ "$PURGE" = yes ]; then
    # DynamicUser= keeps the state under /var/lib/private with a symlink in /var/lib.
    rm -rf "$DESTDIR$CONFDIR" "$DESTDIR/var/lib/pdm-agent" "$DESTDIR/var/lib/private/pdm-agent"
    say "purged $CONFDIR and /var/lib/pdm-agent"
else
    say "kept $CONFDIR and /var/lib/pdm-agent (outbox, learned baselines); --purge removes them"
fi
