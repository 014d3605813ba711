#!/usr/bin/env bash
# Build the Debian package target/debian/appswitch_VERSION_ARCH.deb from a
# staged tree with dpkg-deb (docs/PACKAGING.md says what goes where and why).
#   APPSWITCH_DEB_PROFILE=release (default) | debug: which build to package.
#     debug reuses the binary `cargo build` made (the test's choice: CI has
#     built it already, and a release build takes minutes on 2 cores).
#   APPSWITCH_DEB_BIN=path: package that binary, built already (no cargo
#     run; the test passes the one cargo test built). Compression follows
#     the profile.
#   APPSWITCH_DEB_OUT=dir: where to stage and write (default target/debian).
#   DEBFULLNAME, DEBEMAIL: the Maintainer (default: the author of HEAD).
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"

profile=${APPSWITCH_DEB_PROFILE:-release}
case $profile in
  release) build=(cargo build --release --bin appswitch); compress=(-Zxz -z6) ;;
  debug) build=(cargo build --bin appswitch); compress=(-Zgzip -z1) ;;
  *) echo "package.sh: APPSWITCH_DEB_PROFILE=$profile: expected release or debug" >&2; exit 2 ;;
esac
if [[ -n ${APPSWITCH_DEB_BIN:-} ]]; then
  bin=$APPSWITCH_DEB_BIN
else
  "${build[@]}" >&2
  bin=target/$profile/appswitch
fi

version=$("$bin" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
if [[ -n ${DEBFULLNAME:-} && -n ${DEBEMAIL:-} ]]; then
  maintainer="$DEBFULLNAME <$DEBEMAIL>"
else
  maintainer=$(git log -1 --format='%an <%ae>' 2>/dev/null || echo 'appswitch maintainers <root@localhost>')
fi

out=${APPSWITCH_DEB_OUT:-target/debian}
root=$out/root
work=$out/work
rm -rf "$root" "$work"
mkdir -p "$root/DEBIAN" "$work"

# The program, stripped as dh_strip does (the release profile keeps line
# tables for local builds; a package ships none).
install -D -m 0755 "$bin" "$root/usr/bin/appswitch"
strip --remove-section=.comment --remove-section=.note "$root/usr/bin/appswitch"

# The config is a conffile: dpkg keeps the admin's edits on upgrade.
install -D -m 0644 configs/appswitch.toml "$root/etc/appswitch/appswitch.toml"
echo /etc/appswitch/appswitch.toml >"$root/DEBIAN/conffiles"
install -D -m 0644 configs/appswitch.service "$root/lib/systemd/system/appswitch.service"

# Man pages and completions from the CLI definition (src/assets.rs).
"$bin" generate-assets --out "$work/assets"
mkdir -p "$root/usr/share/man/man1"
for page in "$work"/assets/*.1; do
  gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 "$work/assets/appswitch.bash" "$root/usr/share/bash-completion/completions/appswitch"
install -D -m 0644 "$work/assets/_appswitch" "$root/usr/share/zsh/vendor-completions/_appswitch"
install -D -m 0644 "$work/assets/appswitch.fish" "$root/usr/share/fish/vendor_completions.d/appswitch.fish"

# The Debian changelog of a native package: this version, from this commit.
year=$(git log -1 --format=%cd --date=format:%Y 2>/dev/null || date +%Y)
when=$(git log -1 --format=%cd --date=rfc2822 2>/dev/null || date -R)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
install -d "$root/usr/share/doc/appswitch"
printf 'appswitch (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
  "$version" "$commit" "$maintainer" "$when" | gzip -9n >"$root/usr/share/doc/appswitch/changelog.gz"

license=$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)
[[ $license == "MIT OR Apache-2.0" ]] || { echo "package.sh: license '$license': update the copyright file" >&2; exit 1; }
cat >"$root/usr/share/doc/appswitch/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: appswitch

Files: *
Copyright: $year the appswitch developers
License: MIT or Apache-2.0

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
EOF

# Depends: the shared libraries the binary links (dpkg-shlibdeps reads
# their symbols files: libc6, libgcc-s1, libseccomp2 with the versions the
# used symbols need), and fuse3 for /dev/fuse set up and fusermount3.
mkdir -p "$work/shlibs/debian"
printf 'Source: appswitch\n\nPackage: appswitch\nArchitecture: any\n' >"$work/shlibs/debian/control"
staged_bin=$(realpath "$root/usr/bin/appswitch")
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$staged_bin" | sed -n 's/^shlibs:Depends=//p')
[[ -n $shlibs ]] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: appswitch
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $shlibs, fuse3
Section: net
Priority: optional
Description: application-level network for any Linux program
 appswitch runs a program under a tracer that stops it only on network
 system calls (ptrace with a seccomp-BPF filter), static binaries and Go
 included, and checks, redirects or records each call. The daemon
 (appswitch.service) holds the policy and services for every traced program
 and serves them as files under /appswitch.
EOF

for script in postinst prerm postrm; do
  install -m 0755 "scripts/debian/$script" "$root/DEBIAN/$script"
done

deb=$out/appswitch_${version}_${arch}.deb
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
echo "$deb"
