"""The relay benchmark (`scripts/bench relay`, issue 12): N concurrent SMTP clients send M messages of S bytes to
three targets in one run and the figures are printed next to the goals. No asserts on speed.

Targets, all in front of the same throwaway Postfix + Dovecot (`scripts/mta`) whose XOAUTH2 logins Dovecot checks
by introspection at the Authlib peer (`tests/peers/oauth_server.py`), as `postfix_relays` in tests/relay.rs:
  direct      Postfix submission itself: STARTTLS, AUTH PLAIN with the MTA's Basic user;
  relay       `smtp-operator relay` (the release binary) for an SmtpRelay whose SmtpSettings send with OAuth2
              client credentials (XOAUTH2) to that submission port; clients use AUTH PLAIN, no TLS;
  emailproxy  email-oauth2-proxy (PyPI `emailproxy`) configured for the same upstream and the same OAuth2
              client; clients log in with the account's address (AUTH PLAIN, no TLS).

The clients are the Rust load generator `benches/relay_load.rs` (a bench target, release build, not part of the
operator binary; one process per target for the warm-up and one for the measured messages, the password on its
stdin, the latencies and failures back as JSON on its stdout). Every client opens a NEW connection per message
(EHLO, [STARTTLS with a full handshake, EHLO,] AUTH PLAIN, MAIL, RCPT, DATA, QUIT) as Alertmanager does; latency
is from connect to the final reply to DATA. Every reply is checked; a run with failures says so. This script
sets up and cleans up the targets and computes the figures: throughput, latency percentiles, and per message the
CPU of the proxy, of the load generator (its rusage as a child), of Postfix + Dovecot and of Authlib. Between
targets it waits until Postfix delivered every accepted message into the Maildir, so no target pays for
another's queue.

    python benches/relay.py --binary target/release/smtp-operator --proxy-python VENV/bin/python
                            --load target/release/deps/relay_load-HASH
                            [--clients 20] [--messages 2000] [--proxy-messages 100] [--size 10240] [--warmup 2]

Needs KUBECONFIG (the control plane of scripts/control-plane) and kubectl on PATH. Everything it starts
(processes, the namespace, temporary files) is removed on exit, also on Ctrl-C or SIGTERM.
"""

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER = "alerts@example.test"
APP_USER = "app"
APP_PASSWORD = secrets.token_urlsafe(18)
PROXY_PASSWORD = secrets.token_urlsafe(18)  # emailproxy encrypts its cached token with the client's password
CC_SECRET = secrets.token_urlsafe(18)
DOVECOT_SECRET = secrets.token_urlsafe(18)


def say(*a):
    print("bench relay:", *a, file=sys.stderr, flush=True)


class Cleanup:
    """Undo actions, run in reverse order exactly once (also after Ctrl-C or SIGTERM)."""

    def __init__(self):
        self.actions = []

    def add(self, what, fn):
        self.actions.append((what, fn))

    def run(self):
        while self.actions:
            what, fn = self.actions.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up the rest
                say(f"cleanup of {what} failed: {e}")


def stop_process(p, grace=30):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def first_line(p, what, wait):
    """The first stdout line of `p` (a JSON ready line); the rest is drained so the child never blocks."""
    box = []

    def read():
        box.append(p.stdout.readline())
        for _ in p.stdout:
            pass

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + wait
    while not box and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    if not box or not box[0].strip():
        raise SystemExit(f"{what} did not get ready within {wait} s")
    v = json.loads(box[0])
    if v.get("ready") is not True:
        raise SystemExit(f"{what}: {v}")
    return v


def start_oauth(work, python, cleanup):
    clients = {"clients": [
        {"client_id": "relay-app", "client_secret": CC_SECRET, "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "user": USER, "scope": "smtp.send"},
        {"client_id": "dovecot", "client_secret": DOVECOT_SECRET, "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": [], "introspect": True},
    ]}
    path = os.path.join(work, "clients.json")
    with open(path, "w") as f:
        json.dump(clients, f)
    p = subprocess.Popen(
        [python, os.path.join(ROOT, "tests/peers/oauth_server.py"), "--state", os.path.join(work, "oauth"),
         "--clients", path],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(os.path.join(work, "oauth.log"), "w"),
        text=True, start_new_session=True)
    cleanup.add("the Authlib server", lambda: stop_process(p, 5))
    return {**first_line(p, "oauth_server.py", 60), "pid": p.pid}


def start_mta(work, oauth, cleanup):
    d = os.path.join(work, "mta")
    os.makedirs(d)
    cleanup.add("Postfix and Dovecot", lambda: subprocess.run(
        [os.path.join(ROOT, "scripts/mta"), "stop", "--dir", d], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, check=False))
    out = subprocess.run(
        [os.path.join(ROOT, "scripts/mta"), "start", "--dir", d, "--introspection-url", oauth["introspection_url"],
         "--introspection-client", "dovecot", "--introspection-secret", DOVECOT_SECRET, "--oauth-ca", oauth["ca"]],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def kubectl(*args, stdin=None):
    return subprocess.run(["kubectl", *args], input=stdin, stdout=subprocess.PIPE, text=True, check=True).stdout


def kube_objects(ns, oauth, mta, bundle):
    """The CA ConfigMap, the client-secret Secret bound to 127.0.0.1, the SmtpSettings (OAuth2 client
    credentials at Postfix's submission port), the SmtpRelay and its credentials Secret (as tests/relay.rs)."""
    secret = lambda name, data, ann=None: {  # noqa: E731
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "annotations": ann or {}},
        "stringData": data}
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "peer-ca"}, "data": {"ca.crt": bundle}},
        secret("oauth", {"client-secret": CC_SECRET}, {"smtp-operator.io/allowed-servers": "127.0.0.1"}),
        {"apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpSettings", "metadata": {"name": "office"},
         "spec": {"server": "127.0.0.1", "port": mta["submission_port"], "from": USER,
                  "tls": {"mode": "StartTLS", "caBundle": {"configMapKeyRef": {"name": "peer-ca", "key": "ca.crt"}}},
                  "auth": {"type": "OAuth2", "oauth2": {
                      "username": USER, "grant": "ClientCredentials", "tokenUrl": oauth["token_url"],
                      "clientId": "relay-app", "clientSecretRef": {"name": "oauth", "key": "client-secret"},
                      "scopes": ["smtp.send"]}}}},
        secret("mail-relay-credentials", {"username": APP_USER, "password": APP_PASSWORD,
                                          "host": f"mail.{ns}.svc", "port": "587"}),
        # the per-address rate limit (default 120/min) would refuse a benchmark from one loopback address
        {"apiVersion": "smtp-operator.io/v1alpha1", "kind": "SmtpRelay", "metadata": {"name": "mail"},
         "spec": {"settingsRef": {"name": "office"}, "limits": {"messagesPerMinute": 100000}}},
    ]}


def setup_namespace(work, oauth, mta, bundle, cleanup):
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=smtp-operator-tests",
            "-f", os.path.join(ROOT, "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/smtpsettings.smtp-operator.io",
            "crd/smtprelays.smtp-operator.io")
    ns = f"bench-relay-{secrets.token_hex(3)}"
    kubectl("create", "namespace", ns)
    cleanup.add(f"namespace {ns}", lambda: kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found"))
    kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(kube_objects(ns, oauth, mta, bundle)))
    return ns


def log_addr(path, message, p, wait=60):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with open(path) as f:
            for line in f:
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if v.get("message") == message:
                    return v["addr"]
        if p.poll() is not None:
            raise SystemExit(f"the relay exited ({p.returncode}); log: {path}")
        time.sleep(0.1)
    raise SystemExit(f"the relay did not log {message!r} within {wait} s; log: {path}")


def start_relay(work, binary, ns, oauth, mta, cleanup):
    log = os.path.join(work, "relay.log")
    p = subprocess.Popen(
        [binary, "relay", "--namespace", ns, "--name", "mail", "--listen-addr", "127.0.0.1:0",
         "--metrics-addr", "127.0.0.1:0", "--denied-cidrs=", "--allowed-ports", str(mta["submission_port"]),
         "--allowed-token-ports", str(oauth["port"])],
        env={**os.environ, "RUST_LOG": "info"}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(log, "w"), start_new_session=True)
    cleanup.add("the relay", lambda: stop_process(p))
    addr = log_addr(log, "relay listening", p)
    metrics = log_addr(log, "serving /metrics, /healthz, /readyz", p)
    return p, addr, metrics, log


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, p, what, wait=60):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"{what} exited ({p.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {wait} s")


def start_emailproxy(work, proxy_python, oauth, mta, bundle_path, cleanup):
    port = free_port()
    config = os.path.join(work, "emailproxy.config")
    with open(config, "w") as f:
        f.write(f"""[SMTP-{port}]
local_address = 127.0.0.1
server_address = 127.0.0.1
server_port = {mta["submission_port"]}
server_starttls = True

[{USER}]
token_url = {oauth["token_url"]}
oauth2_scope = smtp.send
oauth2_flow = client_credentials
client_id = relay-app
client_secret = {CC_SECRET}
""")
    log = os.path.join(work, "emailproxy.log")
    p = subprocess.Popen(
        [proxy_python, "-m", "emailproxy", "--no-gui", "--config-file", config,
         "--cache-store", os.path.join(work, "emailproxy.cache"), "--log-file", log],
        env={**os.environ, "SSL_CERT_FILE": bundle_path}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "emailproxy.stderr"), "w"), start_new_session=True)
    cleanup.add("emailproxy", lambda: stop_process(p, 10))
    wait_port(port, p, "emailproxy")
    return p, f"127.0.0.1:{port}"


# ---- the load generator -------------------------------------------------------------------------------------


def load(args, t, count, first):
    """`count` messages (numbered from `first`) to target t from `args.clients` concurrent clients, sent by the
    Rust load generator (benches/relay_load.rs): (latencies in s, failures, seconds, its CPU seconds)."""
    cmd = [args.load, "--addr", f"{t['host']}:{t['port']}", "--user", t["user"], "--name", t["name"],
           "--clients", str(args.clients), "--count", str(count), "--first", str(first), "--size", str(args.size)]
    if t.get("ca"):
        cmd += ["--ca", t["ca"]]
    # the generator is the only child reaped meanwhile, so the children's CPU grows by its CPU alone
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, input=t["password"] + "\n", stdout=subprocess.PIPE, text=True, check=True).stdout
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    v = json.loads(out)
    return v["latencies"], v["failures"], v["seconds"], now.ru_utime + now.ru_stime - cpu.ru_utime - cpu.ru_stime


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ---- what the upstream and the processes saw ------------------------------------------------------------------


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid, children=False):
    """User + system CPU time of a process so far (with `children`: also of its children it waited for)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def write_calls(pid):
    """Write system calls of a process so far (/proc/PID/io)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw:"))


def upstream_cpu(mta, oauth):
    """CPU seconds of the upstream side so far: (every Postfix and Dovecot process of this MTA (their working
    directory is under its dir) with the children they reaped, the Authlib server (introspection))."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(mta["dir"] + "/"):
                total += cpu_seconds(pid, children=True)
        except OSError:
            continue  # gone meanwhile
    return total, cpu_seconds(oauth["pid"])


def machine_cpu():
    """(busy, total) jiffies of all CPUs so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def upstream_counts(oauth, mta):
    """Connections Postfix logged, XOAUTH2 logins Dovecot introspected, tokens Authlib issued."""
    conns = 0
    for log in mta["logs"][:1]:
        with open(log, errors="replace") as f:
            conns = sum(1 for line in f if "/submission/smtpd[" in line and ": connect from " in line)
    introspect = tokens = 0
    with open(oauth["events"]) as f:
        for line in f:
            e = json.loads(line)
            introspect += e.get("event") == "introspect" and e.get("active") is True
            tokens += e.get("event") == "token" and e.get("result") == "ok"
    return {"connections": conns, "logins": introspect, "tokens": tokens}


def delivered(mta):
    return sum(len(os.listdir(os.path.join(mta["maildir"], d))) for d in ("new", "cur")
               if os.path.isdir(os.path.join(mta["maildir"], d)))


def wait_delivered(mta, want, wait=600):
    deadline = time.monotonic() + wait
    while delivered(mta) < want and time.monotonic() < deadline:
        time.sleep(0.2)
    return delivered(mta)


def relay_sessions(metrics_addr):
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10).read().decode()
    out = {}
    for source in ("opened", "pooled"):
        m = re.search(r'^smtp_relay_upstream_sessions_total\{source="%s"\} (\S+)' % source, text, re.M)
        out[source] = int(float(m.group(1))) if m else 0
    return out


# ---- the run ----------------------------------------------------------------------------------------------------


def measure(t, args, mta, oauth, accepted):
    """Warm-up (not counted), then the measured messages; waits for Postfix to deliver everything accepted."""
    count = args.proxy_messages if t["name"] == "emailproxy" else args.messages
    warm = args.warmup * args.clients
    say(f"{t['name']}: warm-up {warm}, then {count} messages from {args.clients} clients")
    lat, fail, _, _ = load(args, t, warm, 0)
    accepted += len(lat)
    if fail:
        say(f"{t['name']}: {len(fail)} warm-up failures, first: {fail[0]}")
    wait_delivered(mta, accepted)
    before = upstream_counts(oauth, mta)
    pooled = relay_sessions(t["metrics"]) if t.get("metrics") else None
    cpu = cpu_seconds(t["pid"]) if t.get("pid") else None
    writes = write_calls(t["pid"]) if t.get("pid") else None
    machine, up = machine_cpu(), upstream_cpu(mta, oauth)
    lat, fail, secs, client = load(args, t, count, warm)
    client = client * 1000 / max(len(lat), 1)
    up = [(b - a) * 1000 / max(len(lat), 1) for a, b in zip(up, upstream_cpu(mta, oauth))]
    busy, total = (a - b for a, b in zip(machine_cpu(), machine))
    if cpu is not None:
        cpu = (cpu_seconds(t["pid"]) - cpu) * 1000 / max(len(lat), 1)
        writes = (write_calls(t["pid"]) - writes) / max(len(lat), 1)
    accepted += len(lat)
    got = wait_delivered(mta, accepted)
    after = upstream_counts(oauth, mta)
    r = {"name": t["name"], "count": count, "ok": len(lat), "failures": fail, "seconds": secs,
         "rate": len(lat) / secs if secs else 0.0, "p50": percentile(lat, 0.5) * 1000,
         "p95": percentile(lat, 0.95) * 1000, "p99": percentile(lat, 0.99) * 1000,
         "upstream": {k: after[k] - before[k] for k in after}, "delivered_all": got >= accepted,
         "rss": peak_rss_mib(t["pid"]) if t.get("pid") else None, "cpu": cpu,
         "busy": 100 * busy / max(total, 1), "client_cpu": client, "upstream_cpu": up, "writes": writes}
    if pooled is not None:
        now = relay_sessions(t["metrics"])
        r["sessions"] = {k: now[k] - pooled[k] for k in now}
    say(f"{t['name']}: {r['rate']:.1f} msg/s, p50 {r['p50']:.1f} ms, {len(fail)} failures")
    return r, accepted


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def verdict(ok):
    return "met" if ok else "MISSED"


def table(rows):
    """Prints rows (the first is the header) as right-aligned columns, the first column left-aligned."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def report(args, rs):
    d, relay, proxy = rs["direct"], rs["relay"], rs["emailproxy"]
    print()
    print(f"scripts/bench relay --clients {args.clients} --messages {args.messages} --proxy-messages "
          f"{args.proxy_messages} --size {args.size} --warmup {args.warmup}")
    print(f"({os.cpu_count()} CPUs; a new connection per message; warm-up {args.warmup * args.clients} messages per "
          f"target not counted; load average at start {args.load_before}, at end {load_average()})")
    opt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
    rows = [["target", "messages", "failed", "msg/s", "p50 ms", "p95 ms", "p99 ms"]]
    rows += [[r["name"], r["count"], len(r["failures"]), f"{r['rate']:.1f}", f"{r['p50']:.1f}", f"{r['p95']:.1f}",
              f"{r['p99']:.1f}"] for r in (d, relay, proxy)]
    table(rows)
    print("cost per message (CPU in ms per message; the proxy is the relay or emailproxy, the client the load "
          "generator):")
    rows = [["target", "proxy peak RSS", "proxy CPU", "proxy write calls", "client CPU", "Postfix+Dovecot CPU",
             "Authlib CPU", "machine busy", "upstream conns", "XOAUTH2 logins", "tokens"]]
    for r in (d, relay, proxy):
        u = r["upstream"]
        rows.append([r["name"], opt(r["rss"], "{:.1f} MiB"), opt(r["cpu"], "{:.2f}"), opt(r["writes"], "{:.0f}"),
                     f"{r['client_cpu']:.2f}", f"{r['upstream_cpu'][0]:.2f}", f"{r['upstream_cpu'][1]:.2f}",
                     f"{r['busy']:.0f}%", u["connections"], u["logins"], u["tokens"]])
    table(rows)
    if "sessions" in relay:
        s = relay["sessions"]
        print(f"relay upstream sessions (smtp_relay_upstream_sessions_total): {s['opened']} opened, "
              f"{s['pooled']} reused from the pool")
    for r in (d, relay, proxy):
        if r["failures"]:
            print(f"{r['name']}: {len(r['failures'])} of {r['count']} messages FAILED (its figures count the "
                  f"others), first: {r['failures'][0]}")
        if not r["delivered_all"]:
            print(f"{r['name']}: not every accepted message reached the Maildir in time")
    added = relay["p50"] - d["p50"]
    clean = not relay["failures"] and relay["delivered_all"]
    print("goals (issue 12):" + ("" if clean else "  (the relay had failures: no goal counts as met)"))
    table([
        ["  relay throughput >= 200 msg/s", f"{relay['rate']:.1f} msg/s", verdict(clean and relay["rate"] >= 200),
         f"(direct to Postfix: {d['rate']:.1f} msg/s)"],
        ["  relay p50 added over direct <= 5 ms", f"{added:+.1f} ms", verdict(clean and added <= 5),
         f"({relay['p50']:.1f} vs {d['p50']:.1f} ms)"],
        ["  relay peak RSS < 40 MiB", f"{relay['rss']:.1f} MiB", verdict(relay["rss"] < 40), ""],
        ["  relay ahead of emailproxy: throughput", f"{relay['rate']:.1f} vs {proxy['rate']:.1f} msg/s",
         verdict(clean and relay["rate"] > proxy["rate"]), ""],
        ["  relay ahead of emailproxy: p50", f"{relay['p50']:.1f} vs {proxy['p50']:.1f} ms",
         verdict(clean and relay["p50"] < proxy["p50"]), ""],
    ])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--proxy-python", required=True)
    ap.add_argument("--load", required=True, help="the load generator (benches/relay_load.rs, release build)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000, help="measured messages per target (direct, relay)")
    ap.add_argument("--proxy-messages", type=int, default=100,
                    help="measured messages through emailproxy (every login costs it two PBKDF2 key derivations)")
    ap.add_argument("--size", type=int, default=10240, help="message size in bytes")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up messages per client, not counted")
    args = ap.parse_args()
    args.load_before = load_average()

    cleanup = Cleanup()
    # Ctrl-C, SIGTERM and SIGHUP all end the run through KeyboardInterrupt (also when started with SIGINT
    # ignored, as a background job): subprocess.run kills the load generator, then everything started is cleaned up
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    work = tempfile.mkdtemp(prefix="bench-relay-")
    os.chmod(work, 0o755)  # Postfix's and Dovecot's unprivileged daemons traverse it (scripts/mta)
    cleanup.add("the work directory", lambda: shutil.rmtree(work, ignore_errors=True))
    try:
        python = sys.executable
        oauth = start_oauth(work, python, cleanup)
        mta = start_mta(work, oauth, cleanup)
        with open(mta["ca"]) as a, open(oauth["ca"]) as b:
            bundle = a.read() + "\n" + b.read()
        bundle_path = os.path.join(work, "ca-bundle.pem")
        with open(bundle_path, "w") as f:
            f.write(bundle)
        ns = setup_namespace(work, oauth, mta, bundle, cleanup)
        relay, relay_addr, metrics, _ = start_relay(work, args.binary, ns, oauth, mta, cleanup)
        proxy, proxy_addr = start_emailproxy(work, args.proxy_python, oauth, mta, bundle_path, cleanup)
        hostport = lambda a: (a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1]))  # noqa: E731
        targets = [
            {"name": "direct", "host": "127.0.0.1", "port": mta["submission_port"], "ca": mta["ca"],
             "user": mta["user"], "password": mta["password"]},
            {"name": "relay", "host": hostport(relay_addr)[0], "port": hostport(relay_addr)[1],
             "user": APP_USER, "password": APP_PASSWORD, "pid": relay.pid, "metrics": metrics},
            {"name": "emailproxy", "host": "127.0.0.1", "port": hostport(proxy_addr)[1],
             "user": USER, "password": PROXY_PASSWORD, "pid": proxy.pid},
        ]
        results, accepted = {}, 0
        for t in targets:
            results[t["name"]], accepted = measure(t, args, mta, oauth, accepted)
        report(args, results)
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
