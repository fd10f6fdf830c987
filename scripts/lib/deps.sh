# shellcheck shell=bash
# Build and test dependencies of maildisk, installed from Debian 12 packages.
# Sourced by scripts/test and scripts/demo. apt runs only when a package is
# missing, so reruns cost one dpkg-query. The dovecot packages' postinst may
# start the system Dovecot; nothing here relies on it or touches it (the
# tests start private instances on free loopback ports).

MAILDISK_DEPS=(
	build-essential meson ninja-build pkg-config clang
	libfuse3-dev fuse3 libcurl4-openssl-dev libssl-dev libsqlite3-dev sqlite3
	libinih-dev libgmime-3.0-dev libcmocka-dev
	dovecot-imapd dovecot-pop3d openssl python3
	attr acl notmuch isync mpop rsync procps psmisc strace
	scdoc man-db bash-completion systemd
	recollcmd maildir-utils poppler-utils
	tracker tracker-miner-fs tracker-extract dbus-daemon
)

# Prints the packages of "$@" that are not installed, one per line.
maildisk_missing_deps() {
	local p
	for p in "$@"; do
		if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != "installed" ]; then
			echo "$p"
		fi
	done
}

maildisk_install_deps() {
	local missing
	mapfile -t missing < <(maildisk_missing_deps "${MAILDISK_DEPS[@]}")
	if [ "${#missing[@]}" -eq 0 ]; then
		return 0
	fi
	echo "missing packages: ${missing[*]}" >&2
	if [ "$(id -u)" -ne 0 ]; then
		echo "not root: install them first" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Configures (or reconfigures) a meson build dir: maildisk_setup DIR [OPTIONS...]
# Warnings are errors here (CI and developers), though not by default in
# meson.build (packagers, whose newer compiler may warn about more).
maildisk_setup() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" -Dwerror=true "$@"
	else
		meson setup "$dir" -Dwerror=true "$@"
	fi
}
