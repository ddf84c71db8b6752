#!/bin/sh
# systemd/*.service as the package installs them (/lib/systemd/system, the daemons in /usr/sbin:
# stand-ins here), checked by `systemd-analyze verify` in a root of their own, once per Xen
# layout: Debian 12's (the SysV script /etc/init.d/xen seen as xen.service, xendomains) and
# upstream Xen's (xenstored.service, xendomains.service). Any complaint fails, warnings included.
# Then the ordering every unit must have on both: after XenStore, before the guests, and no hard
# dependency on a unit one of the two layouts lacks.
set -u
units=$(cd "$(dirname "$0")/../../systemd" && pwd)
command -v systemd-analyze >/dev/null || { echo "verify_units: systemd-analyze missing (package systemd)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

stub_unit() {  # stub_unit ROOT NAME
  printf '[Unit]\nDescription=stand-in for %s\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n' "$2" \
    >"$1/lib/systemd/system/$2"
}

for layout in debian upstream; do
  root=$work/$layout
  mkdir -p "$root/lib/systemd/system" "$root/usr/sbin" "$root/etc/systemd/system"
  # systemd's own units (sysinit.target, multi-user.target, ...) from this machine.
  cp -a /lib/systemd/system/. "$root/lib/systemd/system/"
  for binary in pvback-supervisor pvback-blk pvback-net; do
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/$binary"
    chmod 755 "$root/usr/sbin/$binary"
  done
  # The shell ExecReload= runs (every Debian system has one).
  mkdir -p "$root/bin"
  cp /bin/dash "$root/bin/sh" 2>/dev/null || cp /bin/sh "$root/bin/sh"
  case $layout in
    debian) stub_unit "$root" xen.service ;;  # what systemd-sysv-generator makes of /etc/init.d/xen
    upstream) stub_unit "$root" xenstored.service ;;
  esac
  stub_unit "$root" xendomains.service
  cp "$units"/*.service "$root/lib/systemd/system/"
  out=$(systemd-analyze verify --man=no --root="$root" pvback-supervisor.service pvback-blk@5-51712.service \
        pvback-net@5-0.service 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    fail "systemd-analyze verify ($layout layout) exited $rc:"
    echo "$out"
  else
    echo "ok: systemd-analyze verify, $layout layout"
  fi
done

for unit in "$units"/*.service; do
  name=$(basename "$unit")
  grep -q '^Type=notify$' "$unit" || fail "$name: not Type=notify"
  grep -q '^WatchdogSec=' "$unit" || fail "$name: no WatchdogSec="
  grep -q '^After=.*\bxen\.service\b' "$unit" || fail "$name: not After=xen.service (Debian's Xen)"
  grep -q '^After=.*\bxenstored\.service\b' "$unit" || fail "$name: not After=xenstored.service (upstream Xen)"
  grep -q '^Before=.*\bxendomains\.service\b' "$unit" || fail "$name: not Before=xendomains.service"
  grep -Eq '^(Requires|Requisite|BindsTo)=.*\b(xen|xenstored)\.service\b' "$unit" &&
    fail "$name: a hard dependency on a unit one of the layouts lacks"
  grep -Eq '^ExecStart=/usr/sbin/' "$unit" || fail "$name: ExecStart not in /usr/sbin, where the package installs"
done
[ "$failures" -eq 0 ] || { echo "verify_units: $failures failure(s)"; exit 1; }
echo "verify_units: all passed"
