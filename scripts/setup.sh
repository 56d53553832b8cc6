#!/usr/bin/env bash
# Installs what building, booting and testing the project needs on a Debian/Ubuntu machine.
# Idempotent: anything already present is left alone. Prints what it does.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }

# busybox-static and kmod (depmod): the Linux guests' initramfs; dpkg-deb unpacks Debian's kernel.
# acpica-tools (iasl): vmm-platform's tests disassemble the ACPI tables the VMM builds.
APT_PACKAGES=(qemu-system-x86 bochs bochsbios vgabios grub-pc-bin grub-common xorriso mtools
    busybox-static kmod acpica-tools)
RUST_TARGETS=(x86_64-unknown-none x86_64-unknown-linux-musl)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present: ${APT_PACKAGES[*]}"
fi

installed=$(rustup target list --installed)
for t in "${RUST_TARGETS[@]}"; do
    if grep -qx "$t" <<<"$installed"; then
        say "Rust target $t present"
    else
        say "adding Rust target $t"
        rustup target add "$t"
    fi
done
if ! rustup component list --installed | grep -q '^clippy'; then
    say "adding clippy"; rustup component add clippy rustfmt
fi
# Debian's stock kernel for the Linux scenarios, cached outside the repository (~/.cache/tern)
# so that the first test run does not stall on a 70 MB download. Needs apt's package lists.
meta=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null || true)
if ! grep -q '^Depends:.*linux-image-' <<<"$meta"; then
    say "apt knows no linux-image-amd64: updating the package lists"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
fi
say "fetching Debian's kernel (cached after the first time)"
if ! cargo run --release -q -p run -- fetch debian-kernel; then
    say "could not fetch Debian's kernel: the Linux scenarios will fail until it is fetched"
    exit 1
fi
say "done"
