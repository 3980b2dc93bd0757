#!/usr/bin/env bash
# Builds the clb-server and clb-client .deb packages into $DIST (default dist/) with nfpm,
# run with `go run` at a fixed version so that it stays out of the project's go.mod.
#   DEB_VERSION  upstream version (default: packaging/deb-version); the package is VERSION-1
#   DEB_ARCH     Debian architecture (default: from GOARCH)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
NFPM_VERSION=v2.45.2
BUILD=${BUILD:-build/deb}
DIST=${DIST:-dist}
DEB_VERSION=${DEB_VERSION:-$(packaging/deb-version)}
DEB_MAINTAINER=${DEB_MAINTAINER:-"clb developers <clb@example.org>"}
GOARCH=${GOARCH:-$($GO env GOARCH)}
case $GOARCH in
	386) DEB_ARCH=${DEB_ARCH:-i386} ;;
	arm) DEB_ARCH=${DEB_ARCH:-armhf} ;;
	*) DEB_ARCH=${DEB_ARCH:-$GOARCH} ;;
esac
# Guard the version: unset or malformed, nfpm would quietly build 0.0.0~rc0-1.
if ! [[ $DEB_VERSION =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
	echo "build-deb: DEB_VERSION '$DEB_VERSION' is not a Debian upstream version (want e.g. 1.2.3 or 0.1.0~git20250101.abcdef0)" >&2
	exit 1
fi
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
export BUILD DEB_VERSION DEB_ARCH DEB_MAINTAINER SOURCE_DATE_EPOCH

rm -rf "$BUILD"
mkdir -p "$BUILD/bin" "$DIST"
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH $GO build -trimpath \
	-ldflags "-s -w -X clb/agent.Version=$DEB_VERSION -X clb/register.Version=$DEB_VERSION" \
	-o "$BUILD/bin/" ./cmd/...
$GO run ./internal/tools/gendocs -o "$BUILD/docs"
gzip -9n <README.md >"$BUILD/README.md.gz"
date=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
for pkg in clb-server clb-client; do
	mkdir -p "$BUILD/$pkg"
	sed -e "s|@NAME@|$pkg|" -e "s|@VERSION@|$DEB_VERSION-1|" -e "s|@COMMIT@|$COMMIT|" \
		-e "s|@MAINTAINER@|$DEB_MAINTAINER|" -e "s|@DATE@|$date|" packaging/changelog.in |
		gzip -9n >"$BUILD/$pkg/changelog.Debian.gz"
	rm -f "$DIST/${pkg}_"*.deb
	# nfpm expands variables in some fields only: substitute them all here.
	sed -e "s|\${BUILD}|$BUILD|g" -e "s|\${DEB_VERSION}|$DEB_VERSION|g" -e "s|\${DEB_ARCH}|$DEB_ARCH|g" \
		-e "s|\${DEB_MAINTAINER}|$DEB_MAINTAINER|g" "packaging/nfpm-$pkg.yaml" >"$BUILD/nfpm-$pkg.yaml"
	$GO run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" package --packager deb \
		--config "$BUILD/nfpm-$pkg.yaml" --target "$DIST/" >/dev/null
done
ls "$DIST"/*.deb
