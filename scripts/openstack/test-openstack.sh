#!/bin/bash
# test-openstack.sh [STATE_DIR]
# Exercises the services started by start-openstack.sh with curl only (python3
# is used to read JSON and to compute expected checksums):
#   auth (Keystone v3 token + catalog, or Swift tempauth v1), Swift container,
#   50 MiB object (PUT/HEAD/GET + md5), SLO from 5 small segments, SLO larger
#   than 5 GiB (one 8 MiB segment referenced 700 times), Glance v2 image with
#   custom properties, upload/download + md5, visibility private/public,
#   listing and filters, and a Glance image whose location is a Swift object.
# Prints one PASS/FAIL line per check and "N passed, N failed" at the end.
# TEST_BIG_GET=0 skips streaming the whole >5 GiB SLO back (range GETs only).
set -uo pipefail

STATE=${1:-${OPENSTACK_STATE_DIR:-/var/tmp/snf-openstack}}
[ -f "$STATE/auth-mode" ] || { echo "no $STATE/auth-mode: run start-openstack.sh first" >&2; exit 2; }
AUTH=$(cat "$STATE/auth-mode")
BIG_GET=${TEST_BIG_GET:-1}
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PASS=0 FAIL=0
T0=$(date +%s%N)
secs() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
ok()   { PASS=$((PASS + 1)); echo "PASS $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
eq()   { [ "$1" = "$2" ] || { echo "   expected [$2], got [$1]" >&2; return 1; }; }
jget() { $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
hdr()  { grep -i "^$2:" "$1" | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# ------------------------------------------------------------------ auth
ks_token() {  # ks_token USER PASSWORD PROJECT -> token in $WORK/tok.USER, catalog in $WORK/cat.USER
    cat > "$WORK/auth.json" <<EOF
{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "$1",
  "domain": {"id": "default"}, "password": "$2"}}},
  "scope": {"project": {"name": "$3", "domain": {"id": "default"}}}}}
EOF
    curl -s -D "$WORK/h.$1" -o "$WORK/cat.$1" -H 'Content-Type: application/json' \
        -d @"$WORK/auth.json" "$OS_AUTH_URL/auth/tokens"
    hdr "$WORK/h.$1" X-Subject-Token > "$WORK/tok.$1"
    [ -s "$WORK/tok.$1" ]
}
endpoint() {  # endpoint USER TYPE
    jget "$WORK/cat.$1" "[e['url'] for s in d['token']['catalog'] if s['type'] == '$2' for e in s['endpoints'] if e['interface'] == 'public'][0]"
}

if [ "$AUTH" = keystone ]; then
    . "$STATE/openrc"
    t=$(date +%s%N)
    check "keystone v3 password token for tester/test" ks_token tester testing test
    echo "   token in $(secs $t)s"
    check "keystone v3 token for admin/admin" ks_token admin "$(. "$STATE/openrc-admin"; echo "$OS_PASSWORD")" admin
    check "keystone v3 token for tester2/test2" ks_token tester2 testing2 test2
    TOKEN=$(cat "$WORK/tok.tester") ADMIN_TOKEN=$(cat "$WORK/tok.admin") OTHER_TOKEN=$(cat "$WORK/tok.tester2")
    SWIFT_URL=$(endpoint tester object-store) GLANCE_URL=$(endpoint tester image)
    check "catalog has object-store endpoint ($SWIFT_URL)" test -n "$SWIFT_URL"
    check "catalog has image endpoint ($GLANCE_URL)" test -n "$GLANCE_URL"
    # token validation by a service (Swift) with the token of another project must fail
    check "tester2's token is refused on tester's Swift account" eq "$(code -H "X-Auth-Token: $OTHER_TOKEN" "$SWIFT_URL")" 403
else
    . "$STATE/openrc"
    curl -s -D "$WORK/h.auth" -o /dev/null -H "X-Auth-User: $ST_USER" -H "X-Auth-Key: $ST_KEY" "$ST_AUTH"
    TOKEN=$(hdr "$WORK/h.auth" X-Auth-Token) SWIFT_URL=$(hdr "$WORK/h.auth" X-Storage-Url)
    curl -s -D "$WORK/h.auth2" -o /dev/null -H "X-Auth-User: test2:tester2" -H "X-Auth-Key: testing2" "$ST_AUTH"
    OTHER_TOKEN=$(hdr "$WORK/h.auth2" X-Auth-Token)
    ADMIN_TOKEN=$TOKEN GLANCE_URL=$OS_IMAGE_URL
    check "tempauth v1 token and storage URL ($SWIFT_URL)" test -n "$TOKEN" -a -n "$SWIFT_URL"
    check "test2's token is refused on test's Swift account" eq "$(code -H "X-Auth-Token: $OTHER_TOKEN" "$SWIFT_URL")" 403
fi
AH=(-H "X-Auth-Token: $TOKEN")
check "unauthenticated Swift request is refused" eq "$(code "$SWIFT_URL")" 401

# ------------------------------------------------------------------ swift
C=images-$$
check "PUT container $C" eq "$(code -X PUT "${AH[@]}" "$SWIFT_URL/$C")" 201
head -c $((50 * 1024 * 1024)) /dev/urandom > "$WORK/disk.raw"
MD5=$(md5sum < "$WORK/disk.raw" | cut -d' ' -f1)
t=$(date +%s%N)
check "PUT 50 MiB object with ETag" eq "$(code -X PUT "${AH[@]}" -H "ETag: $MD5" -H 'Content-Type: application/octet-stream' \
    -T "$WORK/disk.raw" "$SWIFT_URL/$C/disk.raw")" 201
echo "   PUT 50 MiB in $(secs $t)s"
curl -s -I "${AH[@]}" "$SWIFT_URL/$C/disk.raw" > "$WORK/h.head"
check "HEAD size 52428800" eq "$(hdr "$WORK/h.head" Content-Length)" 52428800
check "HEAD etag is the md5" eq "$(hdr "$WORK/h.head" Etag)" "$MD5"
t=$(date +%s%N)
check "GET 50 MiB md5 matches" eq "$(curl -s "${AH[@]}" "$SWIFT_URL/$C/disk.raw" | md5sum | cut -d' ' -f1)" "$MD5"
echo "   GET 50 MiB in $(secs $t)s"

# SLO from 5 x 10 MiB segments
check "PUT container ${C}_segments" eq "$(code -X PUT "${AH[@]}" "$SWIFT_URL/${C}_segments")" 201
split -b $((10 * 1024 * 1024)) -d -a 3 "$WORK/disk.raw" "$WORK/seg."
echo -n '[' > "$WORK/manifest.json"; sep=
for f in "$WORK"/seg.*; do
    n=${f##*.} m=$(md5sum < "$f" | cut -d' ' -f1) sz=$(stat -c %s "$f")
    [ "$(code -X PUT "${AH[@]}" -T "$f" "$SWIFT_URL/${C}_segments/disk-slo.raw/$n")" = 201 ] || bad "PUT segment $n"
    printf '%s{"path": "/%s_segments/disk-slo.raw/%s", "etag": "%s", "size_bytes": %s}' "$sep" "$C" "$n" "$m" "$sz" >> "$WORK/manifest.json"
    sep=,
done
echo ']' >> "$WORK/manifest.json"
check "PUT SLO manifest (5 segments)" eq "$(code -X PUT "${AH[@]}" -T "$WORK/manifest.json" \
    "$SWIFT_URL/$C/disk-slo.raw?multipart-manifest=put")" 201
curl -s -I "${AH[@]}" "$SWIFT_URL/$C/disk-slo.raw" > "$WORK/h.slo"
check "SLO HEAD: X-Static-Large-Object True" eq "$(hdr "$WORK/h.slo" X-Static-Large-Object)" True
check "SLO HEAD: size 52428800" eq "$(hdr "$WORK/h.slo" Content-Length)" 52428800
check "SLO GET md5 matches the original" eq "$(curl -s "${AH[@]}" "$SWIFT_URL/$C/disk-slo.raw" | md5sum | cut -d' ' -f1)" "$MD5"

# SLO larger than Swift's 5 GiB single-object limit, from one 8 MiB segment used 700 times
SEG=$((8 * 1024 * 1024)) NSEG=700 BIG=$((8 * 1024 * 1024 * 700))
head -c $SEG "$WORK/disk.raw" > "$WORK/big.seg"
SEGMD5=$(md5sum < "$WORK/big.seg" | cut -d' ' -f1)
check "PUT 8 MiB segment" eq "$(code -X PUT "${AH[@]}" -T "$WORK/big.seg" "$SWIFT_URL/${C}_segments/big/seg")" 201
$PY - "$C" "$SEGMD5" $SEG $NSEG > "$WORK/big.json" <<'EOF'
import json, sys
c, md5, size, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print(json.dumps([{"path": "/%s_segments/big/seg" % c, "etag": md5, "size_bytes": size}] * n))
EOF
check "PUT SLO manifest of $BIG bytes (> 5 GiB)" eq "$(code -X PUT "${AH[@]}" -T "$WORK/big.json" \
    "$SWIFT_URL/$C/big.raw?multipart-manifest=put")" 201
check "a plain PUT larger than 5 GiB is refused (413)" eq "$(code -X PUT "${AH[@]}" -H "Content-Length: $BIG" \
    "$SWIFT_URL/$C/toobig.raw")" 413
curl -s -I "${AH[@]}" "$SWIFT_URL/$C/big.raw" > "$WORK/h.big"
check "big SLO HEAD: size $BIG" eq "$(hdr "$WORK/h.big" Content-Length)" "$BIG"
OFF=$((BIG - SEG + 4096))
check "big SLO ranged GET past 5 GiB returns the right bytes" eq \
    "$(curl -s "${AH[@]}" -H "Range: bytes=$OFF-$((OFF + 65535))" "$SWIFT_URL/$C/big.raw" | md5sum | cut -d' ' -f1)" \
    "$(tail -c +4097 "$WORK/big.seg" | head -c 65536 | md5sum | cut -d' ' -f1)"
if [ "$BIG_GET" = 1 ]; then
    BIGMD5=$($PY - "$WORK/big.seg" $NSEG <<'EOF'
import hashlib, sys
data, h = open(sys.argv[1], "rb").read(), hashlib.md5()
for _ in range(int(sys.argv[2])):
    h.update(data)
print(h.hexdigest())
EOF
)
    t=$(date +%s%N)
    check "big SLO full GET ($BIG bytes) md5 matches" eq \
        "$(curl -s "${AH[@]}" "$SWIFT_URL/$C/big.raw" | md5sum | cut -d' ' -f1)" "$BIGMD5"
    echo "   GET $BIG bytes in $(secs $t)s"
fi
check "container listing shows 3 objects" eq "$(curl -s "${AH[@]}" "$SWIFT_URL/$C" | wc -l)" 3

# ------------------------------------------------------------------ glance
G=$GLANCE_URL/v2
GH=(-H "X-Auth-Token: $TOKEN")
PATCH_CT='Content-Type: application/openstack-images-v2.1-json-patch'
curl -s "${GH[@]}" -H 'Content-Type: application/json' -o "$WORK/img.json" -w '%{http_code}' -d '{
  "name": "lab-raw-'$$'", "disk_format": "raw", "container_format": "bare", "visibility": "private",
  "OSFAMILY": "linux", "ROOT_PARTITION": "1", "USERS": "root"}' "$G/images" > "$WORK/code"
check "glance: create image with custom properties" eq "$(cat "$WORK/code")" 201
IMG=$(jget "$WORK/img.json" "d['id']")
check "glance: new image is queued" eq "$(jget "$WORK/img.json" "d['status']")" queued
t=$(date +%s%N)
check "glance: PUT /v2/images/{id}/file (50 MiB)" eq "$(code -X PUT "${GH[@]}" -H 'Content-Type: application/octet-stream' \
    -T "$WORK/disk.raw" "$G/images/$IMG/file")" 204
echo "   upload in $(secs $t)s"
curl -s "${GH[@]}" "$G/images/$IMG" > "$WORK/img.json"
check "glance: image active"               eq "$(jget "$WORK/img.json" "d['status']")" active
check "glance: size 52428800"              eq "$(jget "$WORK/img.json" "d['size']")" 52428800
check "glance: checksum is the md5"        eq "$(jget "$WORK/img.json" "d['checksum']")" "$MD5"
check "glance: os_hash_value is the sha512" eq "$(jget "$WORK/img.json" "d['os_hash_value']")" "$(sha512sum < "$WORK/disk.raw" | cut -d' ' -f1)"
check "glance: properties kept" eq "$(jget "$WORK/img.json" "d['OSFAMILY'], d['ROOT_PARTITION'], d['USERS']")" "('linux', '1', 'root')"
t=$(date +%s%N)
check "glance: download md5 matches" eq "$(curl -s "${GH[@]}" "$G/images/$IMG/file" | md5sum | cut -d' ' -f1)" "$MD5"
echo "   download in $(secs $t)s"
check "glance: update a property (PATCH replace)" eq "$(code -X PATCH "${GH[@]}" -H "$PATCH_CT" \
    -d '[{"op": "replace", "path": "/USERS", "value": "root,admin"}, {"op": "add", "path": "/hw_disk_bus", "value": "virtio"}]' \
    "$G/images/$IMG")" 200
check "glance: property filter ?OSFAMILY=linux lists the image" \
    eval 'curl -s "${GH[@]}" "$G/images?OSFAMILY=linux" | grep -q "$IMG"'
if [ "$AUTH" = keystone ]; then
    check "glance: private image invisible to another project" eq "$(code -H "X-Auth-Token: $OTHER_TOKEN" "$G/images/$IMG")" 404
    check "glance: member may not publicize (403)" eq "$(code -X PATCH "${GH[@]}" -H "$PATCH_CT" \
        -d '[{"op": "replace", "path": "/visibility", "value": "public"}]' "$G/images/$IMG")" 403
fi
check "glance: admin sets visibility public" eq "$(code -X PATCH -H "X-Auth-Token: $ADMIN_TOKEN" -H "$PATCH_CT" \
    -d '[{"op": "replace", "path": "/visibility", "value": "public"}]' "$G/images/$IMG")" 200
check "glance: ?visibility=public lists it" eval 'curl -s "${GH[@]}" "$G/images?visibility=public" | grep -q "$IMG"'
if [ "$AUTH" = keystone ]; then
    check "glance: public image visible to another project" eq "$(code -H "X-Auth-Token: $OTHER_TOKEN" "$G/images/$IMG")" 200
fi
check "glance: back to private" eq "$(code -X PATCH -H "X-Auth-Token: $ADMIN_TOKEN" -H "$PATCH_CT" \
    -d '[{"op": "replace", "path": "/visibility", "value": "private"}]' "$G/images/$IMG")" 200
check "glance: ?visibility=private lists it" eval 'curl -s "${GH[@]}" "$G/images?visibility=private" | grep -q "$IMG"'
curl -s "${GH[@]}" "$G/images" > "$WORK/list.json"
echo "   image list: $(jget "$WORK/list.json" "[(i['name'], i['visibility'], i['status']) for i in d['images']]")"
echo "   stored at: $(jget "$WORK/img.json" "d.get('direct_url') or d.get('locations')")"

# Glance image whose data stays in Swift: register a Swift TempURL of the SLO
# as the image location (needs show_multiple_locations = true and the Swift
# host/port in [import_filtering_opts]; Glance's http store then reads it)
check "swift: set account Temp-URL-Key" eq "$(code -X POST "${AH[@]}" -H 'X-Account-Meta-Temp-URL-Key: lab-key' "$SWIFT_URL")" 204
TEMPURL=$($PY - "$SWIFT_URL/$C/disk-slo.raw" lab-key <<'EOF'
import hmac, hashlib, sys, time, urllib.parse
url, key = sys.argv[1], sys.argv[2]
u = urllib.parse.urlsplit(url)
expires = int(time.time()) + 10 * 365 * 86400
sig = hmac.new(key.encode(), ("GET\n%d\n%s" % (expires, u.path)).encode(), hashlib.sha256).hexdigest()
print("%s?temp_url_sig=%s&temp_url_expires=%d" % (url, sig, expires))
EOF
)
check "swift: TempURL of the SLO works without a token" eq "$(curl -s "$TEMPURL" | md5sum | cut -d' ' -f1)" "$MD5"
curl -s "${GH[@]}" -H 'Content-Type: application/json' -o "$WORK/img2.json" -d '{
  "name": "lab-swift-location-'$$'", "disk_format": "raw", "container_format": "bare", "OSFAMILY": "linux"}' "$G/images"
IMG2=$(jget "$WORK/img2.json" "d['id']")
check "glance: add the TempURL as image location" eq "$(code -X PATCH "${GH[@]}" -H "$PATCH_CT" \
    -d '[{"op": "add", "path": "/locations/-", "value": {"url": "'"$TEMPURL"'", "metadata": {}}}]' \
    "$G/images/$IMG2")" 200
curl -s "${GH[@]}" "$G/images/$IMG2" > "$WORK/img2.json"
check "glance: location image active, size from Swift" eq "$(jget "$WORK/img2.json" "d['status'], d['size']")" "('active', 52428800)"
check "glance: location image download md5 matches" eq "$(curl -s "${GH[@]}" "$G/images/$IMG2/file" | md5sum | cut -d' ' -f1)" "$MD5"

# ------------------------------------------------------------------ cleanup
check "glance: delete images" eq "$(code -X DELETE "${GH[@]}" "$G/images/$IMG")$(code -X DELETE "${GH[@]}" "$G/images/$IMG2")" 204204
check "swift: delete 5-segment SLO with its segments" eq "$(code -X DELETE "${AH[@]}" "$SWIFT_URL/$C/disk-slo.raw?multipart-manifest=delete")" 200
for o in "$C/big.raw" "${C}_segments/big/seg" "$C/disk.raw"; do code -X DELETE "${AH[@]}" "$SWIFT_URL/$o" > /dev/null; done
check "swift: delete containers" eq "$(code -X DELETE "${AH[@]}" "$SWIFT_URL/${C}_segments")$(code -X DELETE "${AH[@]}" "$SWIFT_URL/$C")" 204204

echo "total $(secs $T0)s"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
