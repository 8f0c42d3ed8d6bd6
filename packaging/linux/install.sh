#!/bin/sh
# Put Hearth in your desktop's app menu: no root, nothing outside your home folder.
#
#   ./install.sh              copy this Hearth folder to ~/.local/share/hearth, add the menu entry
#   ./install.sh --in-place   leave the folder where it is and point the menu entry at it
#   ./install.sh --uninstall  remove the copy, the menu entry and the icons
#
# Run it from the unpacked Hearth-<version>-linux-<arch>.tar.gz (it sits next to the Hearth
# executable), or from a checkout as packaging/linux/install.sh after `make package`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
dest=$data/hearth
apps=$data/applications
icons=$data/icons/hicolor
sizes="16 32 48 64 128 256 512"

# The bundle: this script's own folder in a release tarball, dist/Hearth in a checkout.
if [ -x "$here/Hearth" ]; then
    bundle=$here
elif [ -x "$here/../../dist/Hearth/Hearth" ]; then
    bundle=$(cd "$here/../../dist/Hearth" && pwd)
else
    echo "error: no Hearth bundle next to $0 (run \`make package\` first)." >&2
    exit 1
fi
# The icons and the .desktop template travel inside the bundle (_internal/assets) and the
# tarball; in a checkout they are in assets/ and packaging/linux/.
for dir in "$bundle/_internal/assets/icons" "$here/../../assets/icons"; do
    [ -f "$dir/hearth-48.png" ] && icon_src=$dir && break
done
for file in "$bundle/hearth.desktop" "$here/hearth.desktop"; do
    [ -f "$file" ] && desktop_src=$file && break
done
if [ -z "${icon_src:-}" ] || [ -z "${desktop_src:-}" ]; then
    echo "error: the icons or hearth.desktop are missing from $bundle." >&2
    exit 1
fi

refresh() {
    # Optional helpers: menus notice new entries without them, just later.
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$icons" || true
}

case "${1:-}" in
--uninstall)
    rm -f "$apps/hearth.desktop"
    for size in $sizes; do rm -f "$icons/${size}x$size/apps/hearth.png"; done
    rm -f "$icons/scalable/apps/hearth.svg"
    # Only the copy this script made; models, chats and settings live elsewhere and stay.
    [ -x "$dest/Hearth" ] && rm -rf "$dest"
    refresh
    echo "Hearth was removed. Your models, chats and settings are still in ~/.local/share/Hearth."
    exit 0
    ;;
--in-place)
    target=$bundle
    ;;
"")
    target=$dest
    if [ "$bundle" != "$dest" ]; then
        rm -rf "$dest.new"
        mkdir -p "$data"
        cp -a "$bundle" "$dest.new"
        rm -rf "$dest"
        mv "$dest.new" "$dest"  # swapped whole: an interrupted copy never replaces a good one
    fi
    ;;
*)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

for size in $sizes; do
    mkdir -p "$icons/${size}x$size/apps"
    cp "$icon_src/hearth-$size.png" "$icons/${size}x$size/apps/hearth.png"
done
mkdir -p "$icons/scalable/apps" "$apps"
cp "$icon_src/hearth.svg" "$icons/scalable/apps/hearth.svg"
sed "s|@HEARTH_DIR@|$target|g" "$desktop_src" > "$apps/hearth.desktop"
chmod 644 "$apps/hearth.desktop"
refresh
echo "Hearth is installed: find it in your app menu, or run $target/Hearth"
