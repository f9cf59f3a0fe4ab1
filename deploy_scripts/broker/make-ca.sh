#!/bin/bash
# Make the fleet's broker folder: a CA, the broker's server certificate (with SANs), the
# operator's credentials, a password file, the operator listener's password file
# (operators.passwd), the ACL and mosquitto.conf.
#
#   make-ca.sh DIR [--host NAME]... [--ip ADDRESS]... [--days N]
#
# An existing CA in DIR is kept (re-running renews no key, certificate or password that
# exists); delete server.crt to issue a new server certificate, e.g. for another host
# name. Re-running rewrites mosquitto.conf and the ACL's rules from the templates beside
# this script (the devices' blocks in the ACL are kept).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
die() { echo "make-ca.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: make-ca.sh DIR [--host NAME]... [--ip ADDRESS]... [--days N]"
DIR=$1; shift
HOSTS=()
IPS=()
DAYS=825
while [ $# -gt 0 ]; do
    case $1 in
        --host) HOSTS+=("${2:?--host needs a name}"); shift 2 ;;
        --ip) IPS+=("${2:?--ip needs an address}"); shift 2 ;;
        --days) DAYS=${2:?--days needs a number}; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[ ${#HOSTS[@]} -gt 0 ] || HOSTS=("$(hostname -f 2>/dev/null || hostname)" localhost)
[ ${#IPS[@]} -gt 0 ] || IPS=(127.0.0.1)
command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
command -v mosquitto_passwd >/dev/null || die "mosquitto_passwd is missing (apt-get install mosquitto)"

mkdir -p "$DIR" "$DIR/data" "$DIR/devices"
DIR=$(cd "$DIR" && pwd)
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# new_key FILE: an EC P-256 private key.
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME SUBJECT EXTFILE: NAME.key (made if missing) -> NAME.crt signed by the CA.
sign() {
    [ -f "$DIR/$1.key" ] || new_key "$DIR/$1.key"
    openssl req -new -key "$DIR/$1.key" -subj "$2" -out "$work/$1.csr"
    openssl x509 -req -in "$work/$1.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
        -CAcreateserial -CAserial "$DIR/ca.srl" -days "$DAYS" -sha256 \
        -extfile "$3" -out "$DIR/$1.crt" 2>/dev/null
}

if [ -f "$DIR/ca.crt" ] && [ -f "$DIR/ca.key" ]; then
    echo "make-ca.sh: keeping the CA in $DIR"
else
    new_key "$DIR/ca.key"
    openssl req -x509 -new -key "$DIR/ca.key" -subj "/CN=edge-runtime fleet CA" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$DIR/ca.crt"
    echo "make-ca.sh: made CA $DIR/ca.crt"
fi

if [ -f "$DIR/server.crt" ]; then
    echo "make-ca.sh: keeping server certificate $DIR/server.crt"
else
    san=
    for h in "${HOSTS[@]}"; do san="$san${san:+,}DNS:$h"; done
    for ip in "${IPS[@]}"; do san="$san${san:+,}IP:$ip"; done
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=$san" > "$work/server.ext"
    sign server "/CN=${HOSTS[0]}" "$work/server.ext"
    echo "make-ca.sh: made server certificate for $san"
fi

# The operator (fleet tools): a client certificate and a password entry.
if [ ! -f "$DIR/operator.crt" ]; then
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=clientAuth" > "$work/client.ext"
    sign operator "/CN=operator" "$work/client.ext"
fi
[ -f "$DIR/passwd" ] || : > "$DIR/passwd"
if [ ! -f "$DIR/operator.password" ]; then
    openssl rand -base64 24 | tr -d '\n' > "$DIR/operator.password"
    mosquitto_passwd -b "$DIR/passwd" operator "$(cat "$DIR/operator.password")"
fi
# The operator listener's password file: the operator alone, never a device.
if [ ! -s "$DIR/operators.passwd" ]; then
    : > "$DIR/operators.passwd"
    mosquitto_passwd -b "$DIR/operators.passwd" operator "$(cat "$DIR/operator.password")"
fi

# The ACL: the current rules, then the devices' blocks add-device.sh wrote (each begins
# with "# device <id>"), so re-running this script brings an older folder's rules up to
# date and keeps its devices.
if [ -f "$DIR/acl" ]; then
    { cat "$SCRIPT_DIR/acl"; sed -n '/^# device /,$p' "$DIR/acl"; } > "$work/acl"
    cat "$work/acl" > "$DIR/acl"
else
    cp "$SCRIPT_DIR/acl" "$DIR/acl"
fi
sed "s#@BROKER_DIR@#$DIR#g" "$SCRIPT_DIR/mosquitto.conf" > "$DIR/mosquitto.conf"
# mosquitto started as root drops to its own user before it reads the key, password and
# ACL files: let that user read them (and write its persistence folder), nobody else.
chmod 0644 "$DIR/ca.crt" "$DIR/server.crt" "$DIR/mosquitto.conf"
chmod 0755 "$DIR"
chmod 0750 "$DIR/data"
chmod 0640 "$DIR/server.key" "$DIR/acl" "$DIR/passwd" "$DIR/operators.passwd"
if getent passwd mosquitto >/dev/null && [ "$(id -u)" -eq 0 ]; then
    chgrp "$(id -gn mosquitto)" "$DIR/server.key" "$DIR/acl" "$DIR/passwd" "$DIR/operators.passwd"
    chown mosquitto "$DIR/data"
fi
echo "make-ca.sh: broker folder ready: mosquitto -c $DIR/mosquitto.conf"
