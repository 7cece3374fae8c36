#!/usr/bin/env bash
# Build the Debian package of pgtide from a staged install (`make deb` runs it):
#
#   scripts/deb.sh STAGE OUTDIR
#
# STAGE/debian/pgtide holds `make install DESTDIR=STAGE/debian/pgtide PREFIX=/usr`. STAGE doubles
# as the throwaway source tree dpkg-shlibdeps needs (a debian/control naming the package) to
# compute Depends from the libraries the binary links, with their minimum versions. The package
# is written to OUTDIR/pgtide_VERSION_ARCH.deb, VERSION being what the binary reports.
# DEB_MAINTAINER overrides the Maintainer field.
set -euo pipefail

stage=$1
out=$2
root=$stage/debian/pgtide
binary=$root/usr/bin/pgtide
[ -x "$binary" ] || { echo "deb.sh: no staged binary at $binary (run make deb)" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps; do
  command -v $tool >/dev/null || { echo "deb.sh: $tool is missing (apt-get install dpkg-dev)" >&2; exit 1; }
done

version=$("$binary" --version | awk '$1 == "pgtide" { print $2 }')
[ -n "$version" ] || { echo "deb.sh: $binary --version printed no version" >&2; exit 1; }
arch=$(dpkg --print-architecture)

# Debian policy: binaries stripped, manual pages compressed.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$binary"
gzip -9n "$root/usr/share/man/man1/pgtide.1"

# dpkg-shlibdeps finds the package's root by its DEBIAN folder.
mkdir -p "$stage/debian" "$root/DEBIAN"
printf 'Source: pgtide\n\nPackage: pgtide\nArchitecture: any\n' >"$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O debian/pgtide/usr/bin/pgtide | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "deb.sh: dpkg-shlibdeps found no dependencies for $binary" >&2; exit 1; }

cat >"$root/DEBIAN/control" <<CONTROL
Package: pgtide
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-pgtide maintainers <pgtide@localhost>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: database
Priority: optional
Description: move a PostgreSQL database to another cluster while it keeps taking writes
 pgtide migrates a PostgreSQL-compatible database (PostgreSQL, PolarDB for PostgreSQL,
 other forks) from one cluster to another: schema migration, a parallel full data load
 under one snapshot, incremental migration by logical decoding, prechecks, object
 selection and name mapping, resume after interruption and a controlled stop at cutover.
 .
 Every decision of a migration is a Lua playbook; a running task can be inspected and
 steered from a REPL (pgtide status, pgtide attach).
CONTROL

deb=$out/pgtide_${version}_${arch}.deb
dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
echo "$deb"
