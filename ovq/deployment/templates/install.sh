#!/usr/bin/env bash
# Install this bundle as the systemd service ${unit} (run as root, from the bundle folder or a copy of it):
#   ./install.sh             create the service user, copy the bundle to ${install_dir}, set up its .venv
#                            (from wheels/ only when the bundle was built with --offline), install, enable, start
#   ./install.sh --no-start  the same, but only enable the unit (it starts at the next boot)
# Over an earlier install: the running unit is stopped, the earlier bundle replaced whole (its output/ kept), and
# the unit started again (with --no-start: left stopped).
# ROOT=/some/dir prefixes every system path (/etc, the install dir) for packaging or a dry run in a folder.
set -euo pipefail
HERE="$$(cd "$$(dirname "$${BASH_SOURCE[0]}")" && pwd)"
ROOT="$${ROOT:-}"
DEST="$$ROOT"'${install_dir}'
SERVICE_USER='${user}'
UNIT='${unit}'
start=(--now)
[ "$${1:-}" = "--no-start" ] && start=()

if [ "$$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo $$0)" >&2
  exit 1
fi
if [ "$$HERE" != "$$DEST" ] && [ -e "$$DEST" ] && [ ! -f "$$DEST/ovq.service" ] && [ -n "$$(ls -A "$$DEST")" ]; then
  # the install dir is replaced whole: one that is not an earlier bundle (--install-dir /opt/ovq, the folder of
  # every bundle) lost everything it held
  echo "install.sh: $$DEST holds files and is not an earlier ovq bundle (no ovq.service); replacing it would delete" \
    "them: build the bundle with an --install-dir of its own (e.g. $$DEST/NAME)" >&2
  exit 1
fi
umask 022   # what root makes here (folders, the .venv) the service user must read, whatever root's umask is
if ! id -u "$$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$$SERVICE_USER"
fi
for group in video render; do   # cameras (/dev/video*); iGPU and NPU (/dev/dri, /dev/accel)
  if getent group "$$group" >/dev/null; then usermod -aG "$$group" "$$SERVICE_USER"; fi
done
if [ "$$HERE" != "$$DEST" ]; then
  if [ -e "$$DEST" ] && systemctl is-active --quiet "$$UNIT" 2>/dev/null; then
    # `enable --now` leaves a running unit as it is: the earlier bundle's code and model ran on until a reboot
    echo "install.sh: stopping $$UNIT to replace it"
    systemctl stop "$$UNIT"
  fi
  # a fresh copy, not one over the earlier bundle (whose files would linger: models, wheels, its .venv); only its
  # results (output/) move into the new one
  mkdir -p "$$(dirname "$$DEST")"
  NEW="$$DEST.new-$$$$"
  rm -rf "$$NEW"
  mkdir "$$NEW"
  cp -a "$$HERE/." "$$NEW/"
  if [ -d "$$DEST/output" ]; then
    rm -rf "$$NEW/output"
    mv "$$DEST/output" "$$NEW/output"
  fi
  if [ -e "$$DEST" ]; then
    mv "$$DEST" "$$DEST.old-$$$$"
  fi
  mv "$$NEW" "$$DEST"
  rm -rf "$$DEST.old-$$$$"
fi
chown -R root:root "$$DEST"
chown -R "$$SERVICE_USER:" "$$DEST/output"        # the only folder the service writes (ReadWritePaths)
"$$DEST/run.sh" --setup                            # .venv, owned by root: the service cannot change its code
# readable (folders enterable) by the service user, writable by root only: a bundle copied or built under
# umask 077 keeps 0700 folders through cp -a. output/ (the service's results) keeps its modes; links are skipped
# (.venv/bin/python points into the system)
find "$$DEST" -path "$$DEST/output" -prune -o ! -type l -exec chmod u+rwX,go+rX,go-w {} +
chmod -R go-w "$$DEST/output"
install -d -m 750 "$$ROOT/etc/ovq"
for env in ovq.env "$${UNIT%.service}.env"; do   # shared by every ovq service, this one's own: see README.md
  [ -e "$$ROOT/etc/ovq/$$env" ] || install -m 600 /dev/null "$$ROOT/etc/ovq/$$env"   # URLs, passwords
done
install -d "$$ROOT/etc/systemd/system"
install -m 644 "$$DEST/ovq.service" "$$ROOT/etc/systemd/system/$$UNIT"
systemctl daemon-reload
systemctl enable "$${start[@]}" "$$UNIT"
echo "install.sh: $$UNIT installed from $$DEST; watch it with: journalctl -u $$UNIT -f"
