#!/bin/bash
# Make one device's credentials and config, ready for flash.sh:
#
#   add-device.sh DEVICE_ID [--dir BROKER_DIR] [--group G]... [--host BROKER_HOST]
#                 [--port 8883] [--trust trust.json]
#
# Writes BROKER_DIR/devices/DEVICE_ID/ with config.toml, ca.crt, device.crt, device.key,
# mqtt-password (and trust.json with --trust); adds the device's password entry and its
# update groups to the broker's passwd and acl files. Send mosquitto SIGHUP afterwards
# to reload them. Re-running it for the same device renews its certificate and password.
set -euo pipefail

die() { echo "add-device.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: add-device.sh DEVICE_ID [--dir BROKER_DIR] [--group G]... [--host H] [--port P] [--trust FILE]"
ID=$1; shift
DIR=./broker
GROUPS_=()
HOST=
PORT=8883
TRUST=
DAYS=825
while [ $# -gt 0 ]; do
    case $1 in
        --dir) DIR=${2:?--dir needs a folder}; shift 2 ;;
        --group) GROUPS_+=("${2:?--group needs a name}"); shift 2 ;;
        --host) HOST=${2:?--host needs a name}; shift 2 ;;
        --port) PORT=${2:?--port needs a number}; shift 2 ;;
        --trust) TRUST=${2:?--trust needs a file}; shift 2 ;;
        --days) DAYS=${2:?--days needs a number}; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done

# The id is the device's host name, a topic level and a certificate CN (the same rule as
# flash.sh and the daemon config): an RFC 1123 label in lower case, and not a name the ACL
# gives another meaning to.
[[ $ID =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] \
    || die "device id '$ID' must be 1-63 of a-z 0-9 and '-', not starting or ending with '-' (it is the host name)"
case $ID in operator|groups|bundles) die "device id '$ID' is reserved" ;; esac
for g in ${GROUPS_[@]+"${GROUPS_[@]}"}; do
    [[ $g =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "group '$g' must be 1-64 of A-Z a-z 0-9 _ . -"
done
{ [ -f "$DIR/ca.crt" ] && [ -f "$DIR/ca.key" ]; } || die "no CA in $DIR (run make-ca.sh $DIR first)"
[ -z "$TRUST" ] || [ -f "$TRUST" ] || die "trust file $TRUST does not exist"
if [ -z "$HOST" ]; then
    # The first DNS name of the server certificate: what the device will verify.
    HOST=$(openssl x509 -in "$DIR/server.crt" -noout -ext subjectAltName 2>/dev/null \
        | tr ',' '\n' | sed -n 's/^ *DNS://p' | head -n 1)
    HOST=${HOST:-localhost}
fi

out="$DIR/devices/$ID"
mkdir -p "$out"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Client certificate: CN = device id = MQTT username on the certificate listener.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/device.key" 2>/dev/null
openssl req -new -key "$out/device.key" -subj "/CN=$ID" -out "$work/device.csr"
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=clientAuth" > "$work/client.ext"
openssl x509 -req -in "$work/device.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -CAserial "$DIR/ca.srl" -days "$DAYS" -sha256 \
    -extfile "$work/client.ext" -out "$out/device.crt" 2>/dev/null
cp "$DIR/ca.crt" "$out/ca.crt"

# Password (for the password listener, or a broker without client certificates).
openssl rand -base64 24 | tr -d '\n' > "$out/mqtt-password"
[ -f "$DIR/passwd" ] || : > "$DIR/passwd"
mosquitto_passwd -b "$DIR/passwd" "$ID" "$(cat "$out/mqtt-password")"

# ACL: replace this device's block (if any) by its current groups.
acl="$DIR/acl"
awk -v id="$ID" '
    /^# device / { skip = ($3 == id); if (skip) next }
    skip && (/^user / || /^topic / || /^$/) { next }
    { skip = 0; print }
' "$acl" > "$work/acl"
if [ ${#GROUPS_[@]} -gt 0 ]; then
    {
        echo "# device $ID"
        echo "user $ID"
        for g in "${GROUPS_[@]}"; do echo "topic read edge/groups/$g/model/update"; done
        echo
    } >> "$work/acl"
fi
cat "$work/acl" > "$acl"

# The device's config (keys as in config.example.toml); paths are relative to the
# config file's folder, /etc/edge-runtime on the device.
groups_toml=
for g in ${GROUPS_[@]+"${GROUPS_[@]}"}; do groups_toml="$groups_toml${groups_toml:+, }\"$g\""; done
cat > "$out/config.toml" <<TOML
device_id = "$ID"
state_dir = "/var/lib/edge-runtime"
groups = [$groups_toml]

[model]
path = "/var/lib/edge-runtime/models/current"
delegate = "auto"

[mqtt]
host = "$HOST"
port = $PORT
protocol = "5"
tls_ca = "ca.crt"
tls_cert = "device.crt"
tls_key = "device.key"
# On the broker's password listener (8884) use these instead of the certificate:
# username = "$ID"
# password_file = "mqtt-password"

[telemetry]
interval = 10

[update]
trust = "trust.json"
TOML
[ -z "$TRUST" ] || cp "$TRUST" "$out/trust.json"
chmod 0600 "$out"/*
chmod 0644 "$out/config.toml" "$out/ca.crt" "$out/device.crt"
echo "add-device.sh: $out ready (groups: ${GROUPS_[*]:-none}); reload the broker: kill -HUP \$(pidof mosquitto)"
