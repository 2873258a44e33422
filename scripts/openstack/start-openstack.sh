#!/bin/bash
# start-openstack.sh [STATE_DIR]
#
# Installs (Debian 12 packages), configures and starts on 127.0.0.1 a
# single-node OpenStack for integration tests:
#   - Keystone v3   (uwsgi, sqlite)                 :5000   (OPENSTACK_AUTH=keystone, the default)
#   - Swift         (proxy + account/container/object servers, 1 replica on a
#                    plain directory, mount_check=false) :8080
#   - Glance v2     (eventlet glance-api, sqlite, file or swift store) :9292
#   - memcached     (Swift token/info cache)        :11211
# With OPENSTACK_AUTH=tempauth no Keystone is run: Swift uses tempauth
# (test:tester / testing) and Glance runs without authentication.
#
# Idempotent: installs only missing packages, rewrites the configs under
# STATE_DIR (default /var/tmp/snf-openstack), starts only the services that are not
# already running, waits until each answers, prints endpoints and credentials.
# Data (rings, object files, sqlite databases, images) survives a restart.
# Stop with stop-openstack.sh [STATE_DIR] (kills only the PIDs recorded here).
#
# Environment knobs (all optional):
#   OPENSTACK_AUTH=keystone|tempauth      OPENSTACK_GLANCE_STORE=file|swift
#   OPENSTACK_SKIP_INSTALL=1              OPENSTACK_START_TIMEOUT=120 (seconds per service)
#   OPENSTACK_PORT_KEYSTONE=5000  OPENSTACK_PORT_SWIFT=8080  OPENSTACK_PORT_GLANCE=9292
#   OPENSTACK_PORT_MEMCACHED=11211  OPENSTACK_PORT_OBJECT=6200 (container +1, account +2)
#   OPENSTACK_ADMIN_PASSWORD=admin-secret OPENSTACK_SERVICE_PASSWORD=service-secret
#   OPENSTACK_SWIFT_MAX_FILE_SIZE=8388608 (largest plain object; larger ones must be
#       Static Large Objects: kept small so that the SLO tests stay small)
#
# Adapted for snf-image-creator from the recipe in shared/openstack (state directory
# /var/tmp/snf-openstack; the Swift proxy runs with its own swift.conf so that
# the object size limit can be lowered without touching /etc/swift/swift.conf).
set -euo pipefail

STATE=${1:-${OPENSTACK_STATE_DIR:-/var/tmp/snf-openstack}}
AUTH=${OPENSTACK_AUTH:-keystone}
GLANCE_STORE=${OPENSTACK_GLANCE_STORE:-file}
HOST=127.0.0.1
P_KEYSTONE=${OPENSTACK_PORT_KEYSTONE:-5000}
P_SWIFT=${OPENSTACK_PORT_SWIFT:-8080}
P_GLANCE=${OPENSTACK_PORT_GLANCE:-9292}
P_MEMCACHED=${OPENSTACK_PORT_MEMCACHED:-11211}
P_OBJECT=${OPENSTACK_PORT_OBJECT:-6200}
P_CONTAINER=$((P_OBJECT + 1))
P_ACCOUNT=$((P_OBJECT + 2))
ADMIN_PW=${OPENSTACK_ADMIN_PASSWORD:-admin-secret}
SERVICE_PW=${OPENSTACK_SERVICE_PASSWORD:-service-secret}
TIMEOUT=${OPENSTACK_START_TIMEOUT:-120}
SWIFT_MAX_FILE_SIZE=${OPENSTACK_SWIFT_MAX_FILE_SIZE:-8388608}
REGION=RegionOne
# test user: tempauth account "test", user "tester", key "testing";
# keystone project "test", user "tester", password "testing" (role member)
TEST_USER=tester TEST_PW=testing TEST_PROJECT=test

case $AUTH in keystone|tempauth) ;; *) echo "OPENSTACK_AUTH must be keystone or tempauth" >&2; exit 2;; esac
case $GLANCE_STORE in file|swift) ;; *) echo "OPENSTACK_GLANCE_STORE must be file or swift" >&2; exit 2;; esac

# The Debian services are Python programs with /usr/bin/python3 shebangs; make
# sure a developer's Python environment does not leak into them.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PY=/usr/bin/python3

T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[%3d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

PKGS="swift swift-proxy swift-account swift-container swift-object memcached
      glance-api keystone python3-keystonemiddleware curl"

install_packages() {
    local missing=() p
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}) and not root"
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' init scripts from starting daemons on 0.0.0.0
    # (keystone's postinst runs 'invoke-rc.d keystone start').
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local rc=0
    local aptopts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=900
                   -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if ! apt-get install "${aptopts[@]}" "${missing[@]}"; then
        apt-get update -q -o DPkg::Lock::Timeout=900 || true
        apt-get install "${aptopts[@]}" "${missing[@]}" || rc=$?
    fi
    [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    return $rc
}

[ "${OPENSTACK_SKIP_INSTALL:-0}" = 1 ] || install_packages
log "packages ready"

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
RUN=$STATE/run LOGS=$STATE/log ETC=$STATE/etc
mkdir -p "$RUN" "$LOGS" "$ETC"
if [ -f "$STATE/auth-mode" ] && [ "$(cat "$STATE/auth-mode")" != "$AUTH" ]; then
    for f in "$RUN"/*.pid; do
        [ -e "$f" ] || continue
        kill -0 "$(cat "$f")" 2>/dev/null && die "$STATE runs in mode $(cat "$STATE/auth-mode"); stop it first"
    done
fi
echo "$AUTH" > "$STATE/auth-mode"
RUN_USER=$(id -un)

# ---------------------------------------------------------------- helpers
# is_running NAME: the PID recorded for NAME is alive and still runs our config
is_running() {
    local f=$RUN/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$STATE/" || return 1
}

# spawn NAME CMD...: start CMD detached, output to $LOGS/NAME.log, PID to $RUN/NAME.pid
# (setsid in a non-job-control shell does not fork, so $! is the daemon's PID;
# every command line contains "$STATE/" so that is_running/stop can check it)
spawn() {
    local name=$1; shift
    if is_running "$name"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
    setsid "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/$name.pid"
    STARTED+=("$name")
}
STARTED=()

# wait_http NAME URL: until URL answers (any HTTP status < 500)
wait_http() {
    local name=$1 url=$2 end=$(( $(date +%s) + TIMEOUT )) code
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)
        if [ -n "$code" ] && [ "$code" != 000 ] && [ "$code" -lt 500 ]; then
            log "$name answers ($url -> $code)"; return 0
        fi
        if ! is_running "$name"; then
            tail -n 40 "$LOGS/$name.log" >&2 || true
            die "$name died (log: $LOGS/$name.log)"
        fi
        [ "$(date +%s)" -lt "$end" ] || { tail -n 40 "$LOGS/$name.log" >&2; die "$name did not answer $url in ${TIMEOUT}s"; }
        sleep 0.3
    done
}

wait_tcp() {
    local name=$1 port=$2 end=$(( $(date +%s) + TIMEOUT ))
    until (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; do
        is_running "$name" || { tail -n 20 "$LOGS/$name.log" >&2; die "$name died"; }
        [ "$(date +%s)" -lt "$end" ] || die "$name did not listen on $port"
        sleep 0.2
    done
    log "$name listens on $HOST:$port"
}

# sqlite_wal FILE: switch an sqlite database to WAL journaling (persistent).
# Keystone on sqlite in the default rollback-journal mode fails writes with
# "database is locked" (one request holds a read transaction on a second
# connection); with WAL readers never block the writer.
sqlite_wal() {
    $PY -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL').fetchone()[0])" "$1"
}

port_free_or_ours() {  # fail early if someone else already owns a port we need
    local name=$1 port=$2
    is_running "$name" && return 0
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
        die "port $port (for $name) is already in use by another process"
    fi
}

# ---------------------------------------------------------------- memcached
start_memcached() {
    port_free_or_ours memcached "$P_MEMCACHED"
    local u=()
    [ "$(id -u)" = 0 ] && u=(-u "$(id -un memcache 2>/dev/null || echo nobody)")
    # "-P" makes the command line carry $STATE (for is_running); memcached
    # writes its pid there too
    spawn memcached memcached -l "$HOST" -p "$P_MEMCACHED" -U 0 -m 64 -c 1024 "${u[@]}" \
        -P "$RUN/memcached.daemon-pid"
}

# ---------------------------------------------------------------- keystone
K=$ETC/keystone KDATA=$STATE/keystone
write_keystone_conf() {
    mkdir -p "$K" "$KDATA"
    cat > "$K/keystone.conf" <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$KDATA/keystone.sqlite
[token]
provider = fernet
expiration = 86400
[fernet_tokens]
key_repository = $KDATA/fernet-keys
[fernet_receipts]
key_repository = $KDATA/fernet-keys
[credential]
key_repository = $KDATA/credential-keys
[identity]
# bcrypt cost 4 instead of 12: password checks take ms instead of ~0.3 s
password_hash_rounds = 4
[cache]
# in-process cache (one uwsgi worker): token validation 1 s -> ms
enabled = true
backend = dogpile.cache.memory
[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
EOF
}

# keystone first start: schema + keys (before the server starts) ...
init_keystone_db() {
    [ -f "$KDATA/.db-ready" ] && return 0
    keystone-manage --config-file "$K/keystone.conf" db_sync
    sqlite_wal "$KDATA/keystone.sqlite"
    # what 'keystone-manage fernet_setup' and 'credential_setup' write (keys
    # 0 = staged and 1 = primary, urlsafe base64 of 32 random bytes), without
    # two more 3-6 s keystone-manage runs
    local d k
    for d in fernet-keys credential-keys; do
        mkdir -p -m 700 "$KDATA/$d"
        for k in 0 1; do
            head -c 32 /dev/urandom | base64 | tr '+/' '-_' > "$KDATA/$d/$k"
            chmod 600 "$KDATA/$d/$k"
        done
    done
    touch "$KDATA/.db-ready"
}

# ... then admin user/project/role + identity endpoint (while the server loads)
bootstrap_keystone() {
    [ -f "$KDATA/.bootstrapped" ] && return 0
    keystone-manage --config-file "$K/keystone.conf" bootstrap --bootstrap-password "$ADMIN_PW" \
        --bootstrap-username admin --bootstrap-project-name admin \
        --bootstrap-role-name admin --bootstrap-service-name keystone \
        --bootstrap-region-id "$REGION" \
        --bootstrap-admin-url "http://$HOST:$P_KEYSTONE/v3" \
        --bootstrap-public-url "http://$HOST:$P_KEYSTONE/v3" \
        --bootstrap-internal-url "http://$HOST:$P_KEYSTONE/v3"
    touch "$KDATA/.bootstrapped"
}

# One uwsgi worker with one thread: keystone + sqlite is not thread-safe
# ("SQLite objects created in a thread can only be used in that same thread").
# uwsgi's --http-socket closes every connection after the response but says
# HTTP/1.1 without "Connection: close", so keep-alive clients (python-requests,
# i.e. keystoneauth/openstacksdk) sometimes reuse a dead socket and get
# "Connection reset by peer": add the header.
start_keystone() {
    port_free_or_ours keystone "$P_KEYSTONE"
    spawn keystone env OS_KEYSTONE_CONFIG_FILES="$K/keystone.conf" \
        uwsgi --plugin python3 --http-socket "$HOST:$P_KEYSTONE" \
        --wsgi-file /usr/bin/keystone-wsgi-public --chdir "$KDATA" \
        --master --lazy-apps --processes 1 --threads 1 --die-on-term \
        --need-app --buffer-size 65535 --disable-logging \
        --add-header "Connection: close"
}

# users, projects, roles, services and endpoints (REST calls, idempotent)
setup_keystone_catalog() {
    [ -f "$KDATA/.catalog-done" ] && return 0
    KS_URL="http://$HOST:$P_KEYSTONE/v3" ADMIN_PW="$ADMIN_PW" SERVICE_PW="$SERVICE_PW" \
    TEST_USER=$TEST_USER TEST_PW=$TEST_PW TEST_PROJECT=$TEST_PROJECT REGION=$REGION \
    SWIFT_URL="http://$HOST:$P_SWIFT/v1/AUTH_%(project_id)s" GLANCE_URL="http://$HOST:$P_GLANCE" \
    $PY - <<'EOF'
import json, os, urllib.request, urllib.error
E = os.environ
BASE = E["KS_URL"]

def call(method, path, body=None, token=None, ok=(200, 201, 204)):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.headers, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        raise SystemExit("%s %s -> %s %s" % (method, path, e.code, e.read()[:300]))

hdrs, _ = call("POST", "/auth/tokens", {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": E["ADMIN_PW"]}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
T = hdrs["X-Subject-Token"]

def find(kind, **q):
    qs = "&".join("%s=%s" % kv for kv in q.items())
    _, d = call("GET", "/%s?%s" % (kind, qs), token=T)
    return d[kind][0]["id"] if d[kind] else None

def ensure(kind, one, attrs, **q):
    i = find(kind, **q)
    if i:
        return i
    _, d = call("POST", "/" + kind, {one: attrs}, token=T)
    return d[one]["id"]

role = {r: find("roles", name=r) for r in ("admin", "member", "reader")}
if not role["member"]:
    role["member"] = ensure("roles", "role", {"name": "member"}, name="member")
service_p = ensure("projects", "project", {"name": "service", "domain_id": "default"}, name="service")
test_p = ensure("projects", "project", {"name": E["TEST_PROJECT"], "domain_id": "default"}, name=E["TEST_PROJECT"])

def user(name, pw, project, r):
    u = ensure("users", "user", {"name": name, "password": pw, "domain_id": "default",
                                 "default_project_id": project}, name=name)
    call("PUT", "/projects/%s/users/%s/roles/%s" % (project, u, role[r]), token=T)
    return u

user(E["TEST_USER"], E["TEST_PW"], test_p, "member")
# a second ordinary user in another project (to check image visibility)
test2_p = ensure("projects", "project", {"name": E["TEST_PROJECT"] + "2", "domain_id": "default"},
                 name=E["TEST_PROJECT"] + "2")
user(E["TEST_USER"] + "2", E["TEST_PW"] + "2", test2_p, "member")
user("swift", E["SERVICE_PW"], service_p, "admin")
user("glance", E["SERVICE_PW"], service_p, "admin")

for stype, name, url in (("object-store", "swift", E["SWIFT_URL"]),
                         ("image", "glance", E["GLANCE_URL"])):
    s = ensure("services", "service", {"type": stype, "name": name}, type=stype)
    for iface in ("public", "internal", "admin"):
        if not find("endpoints", service_id=s, interface=iface):
            call("POST", "/endpoints", {"endpoint": {"service_id": s, "interface": iface,
                                                     "url": url, "region_id": E["REGION"]}}, token=T)
print("keystone catalog ready")
EOF
    touch "$KDATA/.catalog-done"
}

# ---------------------------------------------------------------- swift
S=$ETC/swift SDATA=$STATE/swift
write_swift_conf() {
    mkdir -p "$S" "$SDATA/node/d1"
    [ -r /etc/swift/swift.conf ] && grep -q '^swift_hash_path_suffix *= *[^ ]' /etc/swift/swift.conf \
        || die "/etc/swift/swift.conf (from the swift package) is missing or has no swift_hash_path_suffix"
    # Swift keeps object metadata in user xattrs
    $PY -c "import os,sys; os.setxattr(sys.argv[1], 'user.swift.test', b'1')" "$SDATA/node/d1" \
        || die "the file system of $SDATA does not support user xattrs (needed by swift-object-server)"
    # Swift reads its constraints (max_file_size ...) from /etc/swift/swift.conf,
    # whatever swift_dir says. The proxy is started through a wrapper that points
    # swift at a copy under the state dir with our limit (same hash prefix/suffix
    # and policies), so the system file is never modified.
    $PY - "$S/swift.conf" "$SWIFT_MAX_FILE_SIZE" <<'PYEOF' || die "writing $S/swift.conf failed"
import configparser, sys
c = configparser.RawConfigParser()
c.read("/etc/swift/swift.conf")
if not c.has_section("swift-constraints"):
    c.add_section("swift-constraints")
c.set("swift-constraints", "max_file_size", sys.argv[2])
with open(sys.argv[1], "w") as f:
    c.write(f)
PYEOF
    cat > "$S/swift-proxy-wrapper.py" <<'PYEOF'
# swift-proxy-server, reading its constraints from the swift.conf given first
import sys
from swift.common import utils
utils.SWIFT_CONF_FILE = sys.argv.pop(1)
from swift.common import constraints
constraints.reload_constraints()
from swift.common.wsgi import run_wsgi
conf_file, options = utils.parse_options()
sys.exit(run_wsgi(conf_file, "proxy-server", **options))
PYEOF
    local svc port
    for svc in account container object; do
        case $svc in account) port=$P_ACCOUNT;; container) port=$P_CONTAINER;; object) port=$P_OBJECT;; esac
        cat > "$S/$svc-server.conf" <<EOF
[DEFAULT]
bind_ip = $HOST
bind_port = $port
workers = 0
user = $RUN_USER
swift_dir = $S
devices = $SDATA/node
mount_check = false
disable_fallocate = true
log_name = $svc-server
log_level = INFO

[pipeline:main]
pipeline = healthcheck $svc-server

[app:$svc-server]
use = egg:swift#$svc

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
    done
    # one-replica rings with one device each (the RingBuilder API in one python
    # process instead of 9 swift-ring-builder runs: 1 s instead of 8 s)
    [ -f "$S/object.ring.gz" ] || $PY - "$S" "$HOST" "$P_ACCOUNT" "$P_CONTAINER" "$P_OBJECT" <<'PYEOF' || die "ring creation failed"
import os, sys
from swift.common.ring import RingBuilder
d, host = sys.argv[1], sys.argv[2]
for name, port in zip(("account", "container", "object"), map(int, sys.argv[3:6])):
    b = RingBuilder(8, 1, 1)          # part_power 8, 1 replica, min_part_hours 1
    b.add_dev({"region": 1, "zone": 1, "ip": host, "port": port, "device": "d1", "weight": 1})
    b.rebalance()
    b.save(os.path.join(d, name + ".builder"))
    b.get_ring().save(os.path.join(d, name + ".ring.gz"))
PYEOF

    local auth_pipeline auth_filters
    if [ "$AUTH" = keystone ]; then
        auth_pipeline="authtoken keystoneauth"
        auth_filters="[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = http://$HOST:$P_KEYSTONE
auth_url = http://$HOST:$P_KEYSTONE
memcached_servers = $HOST:$P_MEMCACHED
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = service
username = swift
password = $SERVICE_PW
delay_auth_decision = True

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
reseller_admin_role = ResellerAdmin"
    else
        auth_pipeline="tempauth"
        auth_filters="[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = admin .admin .reseller_admin
user_${TEST_PROJECT}_${TEST_USER} = $TEST_PW .admin
user_test2_tester2 = testing2 .admin
user_test_tester3 = testing3"
    fi
    cat > "$S/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = $HOST
bind_port = $P_SWIFT
workers = 0
user = $RUN_USER
swift_dir = $S
log_name = proxy-server
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl ratelimit $auth_pipeline copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

$auth_filters

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
use = egg:swift#memcache
memcache_servers = $HOST:$P_MEMCACHED
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:ratelimit]
use = egg:swift#ratelimit
[filter:copy]
use = egg:swift#copy
[filter:container-quotas]
use = egg:swift#container_quotas
[filter:account-quotas]
use = egg:swift#account_quotas
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
[filter:symlink]
use = egg:swift#symlink
EOF
}

start_swift() {
    local svc port
    for svc in account container object; do
        case $svc in account) port=$P_ACCOUNT;; container) port=$P_CONTAINER;; object) port=$P_OBJECT;; esac
        port_free_or_ours swift-$svc "$port"
        # -v: log to stdout (there is no syslog daemon here)
        spawn swift-$svc swift-$svc-server "$S/$svc-server.conf" -v
    done
    port_free_or_ours swift-proxy "$P_SWIFT"
    spawn swift-proxy $PY "$S/swift-proxy-wrapper.py" "$S/swift.conf" "$S/proxy-server.conf" -v
}

# ---------------------------------------------------------------- glance
G=$ETC/glance GDATA=$STATE/glance
write_glance_conf() {
    mkdir -p "$G" "$GDATA/images" "$GDATA/lock" "$GDATA/staging"
    cp /etc/glance/glance-api-paste.ini "$G/glance-api-paste.ini"
    local flavor="" authtoken="" stores="file,http" default_store=file
    if [ "$AUTH" = keystone ]; then
        flavor=keystone
        authtoken="[keystone_authtoken]
www_authenticate_uri = http://$HOST:$P_KEYSTONE
auth_url = http://$HOST:$P_KEYSTONE
memcached_servers = $HOST:$P_MEMCACHED
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = service
username = glance
password = $SERVICE_PW"
    fi
    if [ "$GLANCE_STORE" = swift ]; then
        stores="file,http,swift" default_store=swift
    fi
    # Without Keystone every request gets an admin context but no roles, and
    # "publicize_image" is "role:admin": open it so visibility=public works
    if [ "$AUTH" = keystone ]; then
        echo "{}" > "$G/policy.yaml"
    else
        printf '"publicize_image": ""\n"communitize_image": ""\n' > "$G/policy.yaml"
    fi
    if [ "$AUTH" = keystone ]; then
        cat > "$G/glance-swift.conf" <<EOF
[ref1]
auth_version = 3
auth_address = http://$HOST:$P_KEYSTONE/v3
user = service:glance
key = $SERVICE_PW
user_domain_id = default
project_domain_id = default
EOF
    else
        cat > "$G/glance-swift.conf" <<EOF
[ref1]
auth_version = 1
auth_address = http://$HOST:$P_SWIFT/auth/v1.0
user = $TEST_PROJECT:$TEST_USER
key = $TEST_PW
EOF
    fi
    cat > "$G/glance-api.conf" <<EOF
[DEFAULT]
bind_host = $HOST
bind_port = $P_GLANCE
workers = 0
use_stderr = true
show_image_direct_url = true
show_multiple_locations = true
image_size_cap = 1099511627776
node_staging_uri = file://$GDATA/staging

[database]
connection = sqlite:///$GDATA/glance.sqlite

[paste_deploy]
config_file = $G/glance-api-paste.ini
flavor = $flavor

[glance_store]
stores = $stores
default_store = $default_store
filesystem_store_datadir = $GDATA/images/
swift_store_config_file = $G/glance-swift.conf
default_swift_reference = ref1
swift_store_container = glance
swift_store_create_container_on_put = true
swift_store_region = $REGION
swift_store_large_object_size = 100
swift_store_large_object_chunk_size = 20

[oslo_policy]
policy_file = $G/policy.yaml

[oslo_concurrency]
lock_path = $GDATA/lock

# http(s) image locations and web-download imports are filtered like SSRF
# targets (Debian 2:25.1.0-2+deb12u5, LP #2161330): loopback and ports other
# than 80/443 are refused unless allowed here; allow our Swift proxy (these
# bounded list options need the [brackets])
[import_filtering_opts]
allowed_hosts = [$HOST]
allowed_ports = [80,443,$P_SWIFT]

$authtoken
EOF
}

init_glance() {
    [ -f "$GDATA/.initialised" ] && return 0
    glance-manage --config-file "$G/glance-api.conf" db_sync
    sqlite_wal "$GDATA/glance.sqlite"
    touch "$GDATA/.initialised"
}

start_glance() {
    port_free_or_ours glance "$P_GLANCE"
    spawn glance glance-api --config-file "$G/glance-api.conf"
}

# ---------------------------------------------------------------- main
write_swift_conf
write_glance_conf
[ "$AUTH" = keystone ] && write_keystone_conf
log "configs written under $ETC"

start_memcached
start_swift
# one-time database initialisation, overlapped (python start-up dominates)
( init_glance > "$LOGS/glance-init.log" 2>&1 ) & glance_init=$!
if [ "$AUTH" = keystone ]; then
    init_keystone_db > "$LOGS/keystone-init.log" 2>&1 \
        || { tail -n 30 "$LOGS/keystone-init.log" >&2; die "keystone db_sync failed"; }
    start_keystone
    bootstrap_keystone >> "$LOGS/keystone-init.log" 2>&1 \
        || { tail -n 30 "$LOGS/keystone-init.log" >&2; die "keystone bootstrap failed"; }
    log "keystone database ready"
fi
wait $glance_init || { tail -n 30 "$LOGS/glance-init.log" >&2; die "glance db_sync failed"; }
log "glance database ready"
start_glance

wait_tcp memcached "$P_MEMCACHED"
wait_http swift-account   "http://$HOST:$P_ACCOUNT/healthcheck"
wait_http swift-container "http://$HOST:$P_CONTAINER/healthcheck"
wait_http swift-object    "http://$HOST:$P_OBJECT/healthcheck"
wait_http swift-proxy     "http://$HOST:$P_SWIFT/healthcheck"
if [ "$AUTH" = keystone ]; then
    wait_http keystone "http://$HOST:$P_KEYSTONE/v3"
    setup_keystone_catalog
    log "keystone users/catalog ready"
fi
wait_http glance "http://$HOST:$P_GLANCE/healthcheck"

# ---------------------------------------------------------------- summary
if [ "$AUTH" = keystone ]; then
    cat > "$STATE/openrc" <<EOF
# user $TEST_USER (role member) in project $TEST_PROJECT
export OS_AUTH_URL=http://$HOST:$P_KEYSTONE/v3
export OS_IDENTITY_API_VERSION=3
export OS_AUTH_TYPE=password
export OS_USERNAME=$TEST_USER
export OS_PASSWORD=$TEST_PW
export OS_PROJECT_NAME=$TEST_PROJECT
export OS_USER_DOMAIN_ID=default
export OS_PROJECT_DOMAIN_ID=default
export OS_REGION_NAME=$REGION
export OS_INTERFACE=public
EOF
    sed -e "s/^export OS_USERNAME=.*/export OS_USERNAME=admin/" \
        -e "s/^export OS_PASSWORD=.*/export OS_PASSWORD=$ADMIN_PW/" \
        -e "s/^export OS_PROJECT_NAME=.*/export OS_PROJECT_NAME=admin/" \
        -e "s/^# user .*/# user admin (role admin) in project admin/" "$STATE/openrc" > "$STATE/openrc-admin"
else
    cat > "$STATE/openrc" <<EOF
# Swift tempauth (v1): GET \$ST_AUTH with X-Auth-User/X-Auth-Key
export ST_AUTH=http://$HOST:$P_SWIFT/auth/v1.0
export ST_USER=$TEST_PROJECT:$TEST_USER
export ST_KEY=$TEST_PW
# Glance runs without authentication (any or no X-Auth-Token is accepted, requests are admin)
export OS_IMAGE_URL=http://$HOST:$P_GLANCE
EOF
fi

log "started: ${STARTED[*]:-(all were already running)}"
cat <<EOF

OpenStack on $HOST (state: $STATE, auth: $AUTH, glance store: $GLANCE_STORE)
EOF
if [ "$AUTH" = keystone ]; then
cat <<EOF
  Keystone v3 : http://$HOST:$P_KEYSTONE/v3   region $REGION, domain "default"
                admin  / $ADMIN_PW   (project admin, role admin)
                $TEST_USER / $TEST_PW        (project $TEST_PROJECT, role member)
                ${TEST_USER}2 / ${TEST_PW}2      (project ${TEST_PROJECT}2, role member)
  Swift       : http://$HOST:$P_SWIFT/v1/AUTH_<project id>  (catalog type object-store)
  Glance v2   : http://$HOST:$P_GLANCE                     (catalog type image)
  client env  : . $STATE/openrc   (admin: . $STATE/openrc-admin)
EOF
else
cat <<EOF
  Swift       : http://$HOST:$P_SWIFT  tempauth v1: GET /auth/v1.0  X-Auth-User: $TEST_PROJECT:$TEST_USER  X-Auth-Key: $TEST_PW
                storage URL http://$HOST:$P_SWIFT/v1/AUTH_$TEST_PROJECT
  Glance v2   : http://$HOST:$P_GLANCE  (no authentication; every request is admin)
  client env  : . $STATE/openrc
EOF
fi
echo "  logs        : $LOGS   stop: stop-openstack.sh $STATE"
