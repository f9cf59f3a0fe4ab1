#!/bin/sh
# Prints the URI of the Debian archive that this machine's apt already uses for SUITE
# (e.g. bookworm), so that scripts add a suite (bookworm-backports) or bootstrap a root
# from the same mirror instead of naming one. DEBIAN_MIRROR, when set, wins.
#
#   debian_mirror.sh SUITE [SOURCES_FILE...]
#
# Reads one-line sources (`deb [options] URI SUITE COMPONENT...`) and deb822 `.sources`
# files (Types/URIs/Suites/Enabled stanzas); default: /etc/apt/sources.list and
# /etc/apt/sources.list.d/*.list and *.sources. The first `deb` entry (not `deb-src`,
# not disabled) whose suites include SUITE gives the URI. Exits 1 when there is none.
set -eu

suite=${1:?usage: debian_mirror.sh SUITE [SOURCES_FILE...]}
shift
if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    exit 0
fi
if [ "$#" -eq 0 ]; then
    set -- /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
fi
found=$(
    for f in "$@"; do
        [ -r "$f" ] || continue
        case $f in
            *.sources) kind=deb822 ;;
            *) kind=oneline ;;
        esac
        awk -v suite="$suite" -v kind="$kind" '
            function emit(uri) { sub(/\/+$/, "", uri); print uri; done_ = 1; exit }
            function stanza_end(    i, n, t, s, u, has_deb, has_suite) {
                if (enabled != "no") {
                    n = split(types, t, /[ \t]+/)
                    for (i = 1; i <= n; i++) if (t[i] == "deb") has_deb = 1
                    n = split(suites, s, /[ \t]+/)
                    for (i = 1; i <= n; i++) if (s[i] == suite) has_suite = 1
                    if (has_deb && has_suite && split(uris, u, /[ \t]+/) > 0) {
                        for (i = 1; i in u; i++) if (u[i] != "") emit(u[i])
                    }
                }
                types = ""; suites = ""; uris = ""; enabled = ""; last = ""
            }
            kind == "oneline" {
                sub(/#.*/, "")
                if ($1 != "deb") next
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) emit($i)
                next
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { stanza_end(); next }
            /^[ \t]/ { if (last == "uris") uris = uris " " $0; else if (last == "suites") suites = suites " " $0; next }
            {
                field = tolower($0); sub(/:.*/, "", field)
                value = $0; sub(/^[^:]*:[ \t]*/, "", value)
                last = field
                if (field == "types") types = value
                else if (field == "uris") uris = value
                else if (field == "suites") suites = value
                else if (field == "enabled") enabled = tolower(value)
            }
            END { if (!done_ && kind == "deb822") stanza_end() }
        ' "$f"
    done | head -n 1
)
if [ -z "$found" ]; then
    echo "debian_mirror.sh: no Debian archive for suite $suite in the apt sources; set DEBIAN_MIRROR to its URI" >&2
    exit 1
fi
echo "$found"
