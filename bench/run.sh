#!/usr/bin/env bash
# Benchmark harness (issue 9): prefront against a baseline measured in the same run, on loopback.
#
#   bench/run.sh [--secs 10] [--conns 32] [--threads 1] [--runs 1] [--only 1,1b,2,3,4,5,6,7,c]
#                [--upstream https|http] [--json FILE] [--pacs-mib 1024] [--pacs-runs 3]
#                [--outbox-secs 3] [--static] [--quiet-logs] [--jobs 2] [--keep] [--perf DIR]
#
# Builds release once (prefront, examples/bench_upstream.rs, examples/outbox_bench.rs), starts
# a fast loopback cloud (HTTPS, and the same cloud on a plain-HTTP port) and SOAP HIS (HTTP) from
# examples/bench_upstream.rs, drives load with wrk (Debian `wrk`), and prints ONE table (rate,
# p50, p99, peak RSS of prefront, ratio against the baseline of the same run, target verdict, and
# the CPU that other processes used during each measurement), plus JSON with --json. Scenarios:
#   1  HIS → cloud JSON relay (HTTP in, HTTPS out, 1 KiB body) vs nginx as a plain reverse proxy
#      to the same HTTPS upstream (Debian nginx-light, private prefix, loopback); --upstream http
#      points both proxies (and scenario 2, which shares scenario 1's prefront config) at the
#      cloud's plain-HTTP port instead
#   1b the second configuration (issue 20), always the same whatever the options: scenario 1 with
#      the plain-HTTP upstream, wrk -t2 -c64, nginx with access_log off, prefront at its default
#      log level (info, one line per call to its log file)
#   2  the same call through the SOAP endpoint (envelope in, JSON out, JSON back in <return>)
#   3  cloud → HIS, HTTPS in, SOAP out: param = "string", and param = "xml" (30 fields, 2 arrays)
#   4  durable buffering: examples/outbox_bench.rs (bench/outbox.sh), and the same end to end:
#      notify calls over HTTP with the cloud down, then the drain when it comes back
#   5  PACS streaming: bench/pacs.sh
#   6  footprint: idle RSS, RSS with 1,000 idle keep-alive connections, start-up to /readyz
#      (best of 5), binary size (and the static binary of packaging/build-static.sh if built;
#      --static builds it first)
#   7  the message trail's cost: the scenario 1 relay with [trail] on and off, interleaved runs
#      (target ≥ 0.95× off), and the trail's bytes per call
#   c  (only when asked: --only ...,c) scenarios 1-3 and nginx in instructions per call under
#      valgrind's callgrind: deterministic, so comparable on a busy machine (user space only)
# Both proxies log one line per call to a file, as they do by default (prefront `info`, nginx's
# access log); --quiet-logs turns both off (but not in 1b). The load average and the CPU other
# processes use are printed before each scenario, with a warning when the machine is not quiet:
# take figures to keep only when `uptime` shows a load average below ~0.5.
#
# Needs: cargo, wrk, nginx (nginx-light), curl, python3. Not part of CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is needed (apt-get install $tool)" >&2; exit 69; }
done
[ -x "$(command -v nginx || echo /usr/sbin/nginx)" ] || { echo "bench/run.sh: nginx is needed: apt-get install nginx-light" >&2; exit 69; }
exec python3 - "$@" <<'PY'
import argparse, datetime, http.client, json, os, re, resource, shutil, signal, socket
import statistics, subprocess, sys, time

ROOT = os.getcwd()
NCPU = os.cpu_count() or 1
CLK = os.sysconf("SC_CLK_TCK")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BIN = os.path.join(ROOT, "target/release/prefront")
UPSTREAM_BIN = os.path.join(ROOT, "target/release/examples/bench_upstream")
STATIC_BIN = os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/prefront")
QUIET_LOAD = 0.5  # 1-minute load average below which figures are worth keeping
MIB = 1024 * 1024

ap = argparse.ArgumentParser(prog="bench/run.sh", description="prefront benchmark harness (issue 9)")
ap.add_argument("--secs", type=int, default=10, help="seconds per measured load run (default 10)")
ap.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each (default 2)")
ap.add_argument("--conns", type=int, default=32, help="concurrent connections (default 32)")
ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave the cores to the proxies)")
ap.add_argument("--runs", type=int, default=1, help="runs per measurement in scenarios 1-3 (prefront and nginx "
                "alternating in 1 and 1b), the median kept (default 1)")
ap.add_argument("--only", default="1,1b,2,3,4,5,6,7", help="scenarios to run, e.g. 1,1b,6 (1b: the second "
                "configuration of scenario 1); add c for instructions per call of scenarios 1-3 under callgrind (the "
                "same on a busy machine)")
ap.add_argument("--upstream", choices=("https", "http"), default="https", help="the cloud port scenarios 1 and 2 "
                "relay to: HTTPS (default) or the same cloud over plain HTTP (scenario 1b always uses HTTP)")
ap.add_argument("--json", help="write every figure as JSON to this file")
ap.add_argument("--pacs-mib", type=int, default=1024)
ap.add_argument("--pacs-runs", type=int, default=3)
ap.add_argument("--outbox-secs", type=float, default=3)
ap.add_argument("--static", action="store_true", help="build the static binary (packaging/build-static.sh) for its size")
ap.add_argument("--quiet-logs", action="store_true", help="no per-call log line in prefront (warn) nor nginx (access_log off)")
ap.add_argument("--jobs", type=int, default=2, help="cargo build jobs (default 2)")
ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
ap.add_argument("--perf", metavar="DIR", help="after each prefront measurement, one more run of the same load "
                "under `perf record` (cpu-clock samples of prefront); flat profiles go to DIR/<scenario>.txt")
args = ap.parse_args(sys.argv[1:])
ONLY = {s.strip() for s in args.only.split(",") if s.strip()}

T0 = time.monotonic()
WORK = os.path.join(ROOT, "target", f"bench-run-{os.getpid()}")  # on the disk, not tmpfs
os.makedirs(WORK)
PROCS = []  # every process started, stopped in reverse order at exit


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, on_signal)
# 1,000 keep-alive connections need descriptors on both ends; children inherit the limit.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))


def spawn(name, cmd, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(cmd, **kw)
    p.bench_name = name
    PROCS.append(p)
    return p


def stop(p, timeout=10):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def cleanup():
    for p in reversed(list(PROCS)):
        try:
            stop(p, 5)
        except Exception as e:  # keep stopping the others
            log(f"cleanup: {p.bench_name}: {e}")
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    else:
        log(f"work directory kept: {WORK}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# Machine state

def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def cpu_jiffies():
    """(busy, total) jiffies of all cpus."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f[:8]) - idle, sum(f[:8])


def pid_jiffies(pid):
    try:
        st = open(f"/proc/{pid}/stat").read()
        f = st[st.rindex(")") + 2:].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, ValueError):
        return 0


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
                if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def busy_now(secs=1.0):
    """Cores busy over `secs` while this harness's own processes idle: what others use."""
    b0, _ = cpu_jiffies()
    time.sleep(secs)
    b1, _ = cpu_jiffies()
    return (b1 - b0) / CLK / secs


def machine_check(label):
    la = loadavg()
    busy = busy_now()
    note = f"== {label}: load average {la:.2f} (1 min), others busy now {busy:.2f} of {NCPU} cpus"
    log(note)
    if la > QUIET_LOAD or busy > 0.15 * NCPU:
        log(f"   WARNING: the machine is not quiet (load {la:.2f} > {QUIET_LOAD} or others using "
            f"{busy:.2f} cpus): figures are skewed; keep only figures taken at load < {QUIET_LOAD}"
            " (the 1-minute average also still holds this run's previous scenario)")
    return {"load_1m": la, "others_busy_cpus": round(busy, 3)}


def status_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def hwm_sum(pids):
    return sum(status_kib(p, "VmHWM") for p in pids)


# ---------------------------------------------------------------------------------------------
# Build

def build():
    log(f"== building release (-j {args.jobs}): prefront, examples bench_upstream and outbox_bench")
    t = time.monotonic()
    subprocess.run(["cargo", "build", "--release", "-j", str(args.jobs), "--bin", "prefront",
                    "--example", "bench_upstream", "--example", "outbox_bench"], check=True)
    log(f"   built in {time.monotonic() - t:.0f} s")
    if args.static and os.path.exists("packaging/build-static.sh"):
        log("== building the static binary (packaging/build-static.sh)")
        subprocess.run(["bash", "packaging/build-static.sh", "-j", str(args.jobs)], check=True,
                       stdout=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Upstreams, prefront, nginx

class Upstream:
    def __init__(self, cloud_port=0, name="upstream"):
        self.dir = os.path.join(WORK, "upstream")
        cmd = [UPSTREAM_BIN, "--dir", self.dir, "--max-secs", "3600"]
        if cloud_port:  # a cloud that comes back where a running gateway expects it
            cmd += ["--cloud-port", str(cloud_port), "--reuse-pki"]
        self.p = spawn(name, cmd, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        m = re.match(r"cloud=(\d+) his=(\d+) cloud_http=(\d+)", line or "")
        if not m:
            raise SystemExit(f"bench_upstream did not start: {line!r}")
        self.cloud, self.his, self.cloud_http = int(m[1]), int(m[2]), int(m[3])

    def cloud_port(self, scheme):
        return self.cloud if scheme == "https" else self.cloud_http

    def file(self, name):
        return os.path.join(self.dir, name)


def prefront_config(path, up, ports, cloud_base=None, buffer_name="buffer", trail=None, upstream="https",
                    level=None):
    """`upstream`: the scheme of the cloud port to relay to (unless `cloud_base`); `level`: the log
    level, by default `info` (`warn` with --quiet-logs)."""
    d = up.dir
    level = level or ("warn" if args.quiet_logs else "info")
    cloud_base = cloud_base or f"{upstream}://127.0.0.1:{up.cloud_port(upstream)}/"
    ca = f'ca = "{d}/ca.pem"\n' if cloud_base.startswith("https:") else ""
    text = f"""# written by bench/run.sh
[his_listener]
listen = "127.0.0.1:{ports['his']}"
allow = ["127.0.0.0/8"]
idle_timeout = "60s"          # the 1,000 idle keep-alive connections of scenario 6 stay open
max_connections = 2048        # … all from 127.0.0.1: above the default limits (1,024, and a
max_connections_per_peer = 2048  # quarter of it per peer), which refuse the 257th at once

[cloud_listener]
listen = "127.0.0.1:{ports['cloud']}"
allow = ["127.0.0.0/8"]
tls_cert = "{d}/server.pem"
tls_key = "{d}/server.key"

[admin]
listen = "127.0.0.1:{ports['admin']}"

[cloud]
base_url = "{cloud_base}"
{ca}
[his]
kind = "http"
url = "http://127.0.0.1:{up.his}/his/{{name}}"

[[his.route]]
name = "hospital.interface.queryMedicalInsuranceOrder"
kind = "soap"
url = "http://127.0.0.1:{up.his}/HisService/string"
namespace = "http://his.example/"
param = "string"

[[his.route]]
name = "hospital.interface.queryWaitPay"
kind = "soap"
url = "http://127.0.0.1:{up.his}/HisService/xml"
namespace = "http://his.example/"
param = "xml"
arrays = ["data", "data.detail"]

[buffer]
path = "{WORK}/{buffer_name}"

[log]
level = "{level}"
"""
    if trail is not None:
        text += f"""
[trail]
enabled = {"true" if trail else "false"}
path = "{WORK}/trail-{buffer_name}"
"""
    open(path, "w").write(text)
    return path


class Prefront:
    def __init__(self, config, ports, name="prefront", wrap=()):
        self.ports = ports
        self.logf = open(os.path.join(WORK, f"{name}.log"), "ab")
        self.t_spawn = time.monotonic()
        self.p = spawn(name, [*wrap, BIN, "run", "--config", config], stdout=self.logf, stderr=self.logf)
        self.ready_s = wait_ready(self.ports["admin"], self.p, self.t_spawn, 60.0 if wrap else 15.0)
        self.pid = self.p.pid

    def metrics(self):
        return http_get(self.ports["admin"], "/metrics")[1]

    def stop(self):
        stop(self.p)
        self.logf.close()


def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def wait_ready(admin_port, proc, t0, limit=15.0):
    """Seconds from `t0` (just before spawn) to the first 200 from /readyz."""
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise SystemExit(f"prefront exited with {proc.returncode} before it was ready (see {WORK}/*.log)")
        try:
            s = socket.create_connection(("127.0.0.1", admin_port), timeout=1)
        except OSError:
            time.sleep(0.0005)
            continue
        try:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
        finally:
            s.close()
        if head.startswith(b"HTTP/1.1 200"):
            return time.monotonic() - t0
        time.sleep(0.0005)
    raise SystemExit(f"prefront not ready within {limit} s")


def calls_by_outcome(metrics_text, route):
    out = {}
    for m in re.finditer(r'^prefront_calls_total\{([^}]*)\} (\d+)', metrics_text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
        if labels.get("route") == route:
            out[labels["outcome"]] = out.get(labels["outcome"], 0) + int(m[2])
    return out


def buffer_depth(metrics_text):
    return sum(int(float(m[1])) for m in re.finditer(r'^prefront_buffer_depth\{[^}]*\} (\S+)', metrics_text, re.M))


class Nginx:
    def __init__(self, up, wrap=(), name="nginx", upstream="https", access_log=None):
        """`wrap`: a command to run nginx under (valgrind), which then runs as one process;
        `upstream`: the scheme of the cloud port to proxy to; `access_log`: one line per call to a
        file or not (by default: not with --quiet-logs)."""
        self.dir = os.path.join(WORK, name)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.port = free_port()
        if access_log is None:
            access_log = not args.quiet_logs
        access = f"access_log {self.dir}/access.log;" if access_log else "access_log off;"
        if upstream == "https":
            out = "HTTPS out (TLS verified, kept alive)"
            ssl = f"""
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {up.dir}/ca.pem;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;"""
        else:
            out, ssl = "plain HTTP out (kept alive)", ""
        conf = f"""# written by bench/run.sh: a plain reverse proxy, HTTP in, {out}
worker_processes {1 if wrap else "auto"};
{"master_process off;" if wrap else ""}
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  {access}
  client_body_temp_path {self.dir}/tmp; proxy_temp_path {self.dir}/tmp;
  fastcgi_temp_path {self.dir}/tmp; uwsgi_temp_path {self.dir}/tmp; scgi_temp_path {self.dir}/tmp;
  upstream cloud {{ server 127.0.0.1:{up.cloud_port(upstream)}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass {upstream}://cloud;
      proxy_http_version 1.1;
      proxy_set_header Connection "";{ssl}
    }}
  }}
}}
"""
        path = os.path.join(self.dir, "nginx.conf")
        open(path, "w").write(conf)
        self.p = spawn(name, [*wrap, NGINX, "-p", self.dir, "-c", path],
                       stderr=open(os.path.join(self.dir, "stderr.log"), "wb"))
        for _ in range(1500 if wrap else 200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise SystemExit(f"nginx did not start: see {self.dir}/error.log")
        time.sleep(0.2)  # the workers

    def pids(self):
        return [self.p.pid] + children(self.p.pid)


# ---------------------------------------------------------------------------------------------
# Load

WRK_LUA = os.path.join(WORK, "post.lua")
open(WRK_LUA, "w").write(r'''
local function slurp(p) local f = assert(io.open(p, "rb")); local s = f:read("*a"); f:close(); return s end
wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = os.getenv("BENCH_CT")
local action = os.getenv("BENCH_SOAPACTION")
if action then wrk.headers["SOAPAction"] = action end
function done(summary, latency, requests)
  local f = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  f:write(string.format('{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
  f:close()
end
''')


def wrk(url, body, content_type, secs, *, conns, threads, soapaction=None, proxy_pids=(), upstream_pids=()):
    """One wrk run (`threads` threads, `conns` connections); returns its figures, the CPU the
    proxy used per request (a figure that holds up on a busy machine far better than req/s) and
    the cores other processes used meanwhile."""
    out = os.path.join(WORK, "wrk.json")
    env = dict(os.environ, BENCH_BODY=body, BENCH_CT=content_type, BENCH_OUT=out)
    if soapaction is not None:
        env["BENCH_SOAPACTION"] = soapaction
    cmd = ["wrk", "-t", str(min(threads, conns)), "-c", str(conns), "-d", f"{max(1, int(secs))}s",
           "--timeout", "5s", "-s", WRK_LUA, url]
    pids = list(proxy_pids) + list(upstream_pids)
    proxy0 = sum(pid_jiffies(p) for p in proxy_pids)
    ours0 = sum(pid_jiffies(p) for p in pids)
    b0, _ = cpu_jiffies()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    PROCS.append(p)
    p.bench_name = "wrk"
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    PROCS.remove(p)
    elapsed = time.monotonic() - t0
    b1, _ = cpu_jiffies()
    ours1 = sum(pid_jiffies(q) for q in pids)
    proxy1 = sum(pid_jiffies(q) for q in proxy_pids)
    if p.returncode != 0:
        raise SystemExit(f"wrk failed ({p.returncode}): {p.stderr.read().decode()}")
    r = json.load(open(out))
    wrk_cpu = ru.ru_utime + ru.ru_stime
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["others_cpus"] = round(max(0.0, ((b1 - b0) - (ours1 - ours0)) / CLK - wrk_cpu) / elapsed, 3)
    r["servers_cpus"] = round((ours1 - ours0) / CLK / elapsed, 3)
    r["proxy_cpus"] = round((proxy1 - proxy0) / CLK / elapsed, 3)
    r["proxy_cpu_us_per_req"] = round((proxy1 - proxy0) / CLK / max(1, r["requests"]) * 1e6, 1)
    r["wrk_cpus"] = round(wrk_cpu / elapsed, 3)
    r["errors"] = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["status_errors"] + r["timeouts"]
    return r


def load(url, body, ct, proxy_pids, upstream_pids, *, conns, threads, soapaction=None, profile=None):
    """--warmup s of unmeasured load, then one measured run of --secs s (and one more under perf
    with --perf, when `profile` names it)."""
    def run(secs):
        return wrk(url, body, ct, secs, conns=conns, threads=threads, soapaction=soapaction,
                   proxy_pids=proxy_pids, upstream_pids=upstream_pids)
    if args.warmup > 0:
        run(args.warmup)
    res = run(args.secs)
    if args.perf and profile:
        perf_profile(profile, proxy_pids, lambda: run(args.secs))
    return res


def perf_profile(name, pids, run):
    """Runs `run` while `perf record` samples `pids`; writes a flat profile to --perf DIR."""
    os.makedirs(args.perf, exist_ok=True)
    data = os.path.join(WORK, f"{name}.perf.data")
    rec = spawn("perf", ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-o", data,
                         "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    res = run()
    rec.send_signal(signal.SIGINT)
    rec.wait(30)
    PROCS.remove(rec)
    out = os.path.join(args.perf, f"{name}.txt")
    with open(out, "w") as f:
        f.write(f"# perf record -e cpu-clock -F 1999 on prefront during: {res['rps']:.0f} req/s, "
                f"{res['proxy_cpu_us_per_req']:.0f} µs CPU/req\n")
        f.flush()
        subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
                        "--percent-limit", "0.3"], stdout=f, stderr=subprocess.DEVNULL)
        f.write("\n# by shared object\n")
        f.flush()
        subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso"],
                       stdout=f, stderr=subprocess.DEVNULL)
    log(f"   profile: {out}")


def median_run(results):
    """The run with the median rate (its latencies and CPU come with it)."""
    return sorted(results, key=lambda x: x["rps"])[len(results) // 2]


def curl_post(url, body_file, ct, extra=()):
    cmd = ["curl", "-sk", "--max-time", "10", "-X", "POST", "-H", f"Content-Type: {ct}", *extra,
           "--data-binary", f"@{body_file}", url]
    return subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8", "replace")


def check_ok(outcomes, total_expected, what):
    ok = outcomes.get("ok", 0)
    bad = {k: v for k, v in outcomes.items() if k != "ok"}
    if bad or ok < total_expected:
        log(f"   WARNING: {what}: prefront counted {ok} ok calls and {bad} otherwise (wrk sent ≥ {total_expected})")
    return ok, bad


# ---------------------------------------------------------------------------------------------
# Scenarios

RESULTS = {"rows": [], "scenarios": {}}


def row(scenario, what, value, unit, p50=None, p99=None, rss_kib=None, ratio=None, ratio_of=None,
        target=None, verdict=None, res=None):
    """One line of the table; `res` is the wrk run it comes from, if any."""
    RESULTS["rows"].append(dict(scenario=scenario, what=what, value=value, unit=unit, p50_ms=p50,
                                p99_ms=p99, peak_rss_kib=rss_kib, ratio=ratio, ratio_of=ratio_of,
                                target=target, verdict=verdict,
                                cpu_us_per_req=res and res["proxy_cpu_us_per_req"],
                                others_cpus=res and res["others_cpus"]))


def verdict(ok):
    return "met" if ok else "MISSED"


def ms(us):
    return round(us / 1000.0, 3)


def relay_vs_nginx(up, sid, cfg, ports, upstream, conns, threads, nginx_log, desc):
    """Scenario 1 in one configuration: prefront (config `cfg` on `ports`) and nginx relaying the
    1 KiB JSON call to the cloud's `upstream` port ("https" or "http"), under wrk with `threads`
    threads and `conns` connections, nginx's access log on or off (`nginx_log`), `--runs` runs each
    alternating, the median kept. `desc` follows the rows' labels (the configuration)."""
    patient = up.file("patient.json")
    want_cloud = json.load(open(up.file("cloud_answer.json")))
    JSON_CT = "application/json;charset=UTF-8"
    route1 = "prefront/patient/getPatientInfo"
    url1 = f"http://127.0.0.1:{ports['his']}/{route1}"
    nginx = Nginx(up, name=f"nginx-s{sid}", upstream=upstream, access_log=nginx_log)
    pf = Prefront(cfg, ports, f"prefront-s{sid}")
    url_ng = f"http://127.0.0.1:{nginx.port}/{route1}"
    # Correctness first: both answer the cloud's JSON, unchanged.
    for name, url in (("prefront", url1), ("nginx", url_ng)):
        got = json.loads(curl_post(url, patient, JSON_CT))
        if got != want_cloud:
            raise SystemExit(f"scenario {sid}: {name} answered {got!r}, not the cloud's answer")
    runs = {"prefront": [], "nginx": []}
    idle1 = status_kib(pf.pid, "VmRSS")
    for r in range(args.runs):
        order = ["prefront", "nginx"] if r % 2 == 0 else ["nginx", "prefront"]
        for who in order:
            log(f"   run {r + 1}/{args.runs}: {who}, wrk -t{threads} -c{conns}, {args.secs:g} s")
            if who == "prefront":
                res = load(url1, patient, JSON_CT, [pf.pid], [up.p.pid], conns=conns, threads=threads,
                           profile=r == 0 and f"s{sid}-prefront")
            else:
                res = load(url_ng, patient, JSON_CT, nginx.pids(), [up.p.pid], conns=conns, threads=threads,
                           profile=r == 0 and f"s{sid}-nginx")
            log(f"     {res['rps']:.0f} req/s, p50 {ms(res['p50_us'])} ms, p99 {ms(res['p99_us'])} ms, "
                f"{res['proxy_cpu_us_per_req']:.0f} µs CPU/req, errors {res['errors']}, "
                f"others {res['others_cpus']:.2f} cpus")
            runs[who].append(res)
    med = {k: median_run(v) for k, v in runs.items()}
    total = sum(x["requests"] for x in runs["prefront"])
    outcomes = calls_by_outcome(pf.metrics(), route1)
    check_ok(outcomes, total, f"scenario {sid}")
    pf_hwm = status_kib(pf.pid, "VmHWM")
    ng_hwm = hwm_sum(nginx.pids())
    pf.stop()
    stop(nginx.p)
    n, p = med["nginx"], med["prefront"]
    ratio = p["rps"] / n["rps"]
    p99_ok = p["p99_us"] <= n["p99_us"] + 1000
    row(sid, f"nginx reverse proxy{desc} (baseline)", round(n["rps"]), "req/s", ms(n["p50_us"]), ms(n["p99_us"]),
        ng_hwm, 1.0, "nginx", res=n)
    row(sid, "prefront JSON relay" + (" (same)" if desc else ""), round(p["rps"]), "req/s", ms(p["p50_us"]),
        ms(p["p99_us"]), pf_hwm, round(ratio, 3), "nginx", "≥ 1.0× nginx; p99 ≤ nginx p99 + 1 ms",
        f"{verdict(ratio >= 1.0)}; p99 {verdict(p99_ok)}", p)
    return {"config": {"upstream": upstream, "conns": conns, "threads": threads, "nginx_access_log": nginx_log,
                       "prefront_log_level": re.search(r'^level = "(\w+)"', open(cfg).read(), re.M)[1]},
            "prefront": med["prefront"], "nginx": med["nginx"], "runs": runs,
            "prefront_idle_rss_kib": idle1, "prefront_peak_rss_kib": pf_hwm,
            "nginx_peak_rss_kib_sum": ng_hwm, "ratio": ratio, "p99_met": p99_ok,
            "outcomes": outcomes,
            "cpu_per_req_ratio": n["proxy_cpu_us_per_req"] / max(0.1, p["proxy_cpu_us_per_req"])}


def scenario_1_2_3(up):
    ports = {"his": free_port(), "cloud": free_port(), "admin": free_port()}
    cfg = prefront_config(os.path.join(WORK, "prefront.toml"), up, ports, upstream=args.upstream)
    soap, query = up.file("soap.xml"), up.file("his_query.json")
    want_cloud = json.load(open(up.file("cloud_answer.json")))
    want_his = json.load(open(up.file("his_answer.json")))
    JSON_CT = "application/json;charset=UTF-8"
    his_url = f"http://127.0.0.1:{ports['his']}"
    cloud_url = f"https://127.0.0.1:{ports['cloud']}"
    route1 = "prefront/patient/getPatientInfo"
    out = {}

    if "1" in ONLY:
        desc = "" if args.upstream == "https" else ", HTTP upstream"
        out["machine_1"] = machine_check(f"scenario 1: HIS → cloud JSON relay vs nginx{desc}")
        out["s1"] = relay_vs_nginx(up, "1", cfg, ports, upstream=args.upstream, conns=args.conns,
                                   threads=args.threads, nginx_log=not args.quiet_logs, desc=desc)
    if "1b" in ONLY:
        # The second configuration (issue 20), the same whatever the options: the cloud over plain
        # HTTP, wrk -t2 -c64, nginx's access log off, prefront at its default level (info).
        desc = ", HTTP upstream, access_log off, wrk -t2 -c64"
        out["machine_1b"] = machine_check(f"scenario 1b: HIS → cloud JSON relay vs nginx{desc}")
        ports_b = {"his": free_port(), "cloud": free_port(), "admin": free_port()}
        cfg_b = prefront_config(os.path.join(WORK, "prefront-s1b.toml"), up, ports_b, buffer_name="buffer-s1b",
                                upstream="http", level="info")
        out["s1b"] = relay_vs_nginx(up, "1b", cfg_b, ports_b, upstream="http", conns=64, threads=2,
                                    nginx_log=False, desc=desc)

    base = out.get("s1", {}).get("prefront", {}).get("rps")

    def vs_s1(rps):
        return round(rps / base, 3) if base else None

    if "2" in ONLY:
        out["machine_2"] = machine_check("scenario 2: the same call through the SOAP endpoint")
        pf = Prefront(cfg, ports, "prefront-s2")
        url2 = f"{his_url}/prefront/services/prefrontWebService"
        ct2 = "text/xml; charset=UTF-8"
        got = curl_post(url2, soap, ct2, ["-H", 'SOAPAction: ""'])
        m = re.search(r"<return>(.*)</return>", got, re.S)
        ret = m and m[1].replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
        if not ret or json.loads(ret) != want_cloud:
            raise SystemExit(f"scenario 2: the SOAP answer does not carry the cloud's answer: {got[:300]!r}")
        all2 = [load(url2, soap, ct2, [pf.pid], [up.p.pid], conns=args.conns, threads=args.threads,
                     soapaction='""', profile=r == 0 and "s2-soap")
                for r in range(args.runs)]
        res = median_run(all2)
        outcomes = calls_by_outcome(pf.metrics(), route1)
        check_ok(outcomes, sum(x["requests"] for x in all2), "scenario 2")
        hwm = status_kib(pf.pid, "VmHWM")
        pf.stop()
        r = vs_s1(res["rps"])
        row("2", "prefront SOAP endpoint", round(res["rps"]), "req/s", ms(res["p50_us"]), ms(res["p99_us"]),
            hwm, r, "scenario 1", "≥ 0.8× scenario 1", r and verdict(r >= 0.8), res)
        out["s2"] = {"prefront": res, "runs": all2, "peak_rss_kib": hwm, "ratio_vs_s1": r, "outcomes": outcomes}

    if "3" in ONLY:
        for kind, name in (("string", "hospital.interface.queryMedicalInsuranceOrder"),
                           ("xml", "hospital.interface.queryWaitPay")):
            out[f"machine_3{kind}"] = machine_check(f"scenario 3 ({kind}): cloud → HIS, HTTPS in, SOAP out")
            pf = Prefront(cfg, ports, f"prefront-s3{kind}")
            url3 = f"{cloud_url}/his/{name}"
            got = json.loads(curl_post(url3, query, JSON_CT))
            if got != want_his:
                raise SystemExit(f"scenario 3 ({kind}): answered {json.dumps(got)[:300]}, not the HIS's answer")
            all3 = [load(url3, query, JSON_CT, [pf.pid], [up.p.pid], conns=args.conns, threads=args.threads,
                         profile=r == 0 and f"s3-{kind}")
                    for r in range(args.runs)]
            res = median_run(all3)
            outcomes = calls_by_outcome(pf.metrics(), name)
            check_ok(outcomes, sum(x["requests"] for x in all3), f"scenario 3 ({kind})")
            hwm = status_kib(pf.pid, "VmHWM")
            pf.stop()
            r = vs_s1(res["rps"])
            label = "SOAP out, param = string" if kind == "string" else "SOAP out, param = xml (30 fields, 2 arrays)"
            tgt = ("≥ 0.8× scenario 1", r and verdict(r >= 0.8)) if kind == "string" else (None, None)
            row("3", label, round(res["rps"]), "req/s", ms(res["p50_us"]), ms(res["p99_us"]), hwm, r,
                "scenario 1", tgt[0], tgt[1], res)
            out[f"s3_{kind}"] = {"prefront": res, "runs": all3, "peak_rss_kib": hwm, "ratio_vs_s1": r,
                                 "outcomes": outcomes}
    return out


def scenario_4(up):
    out = {"machine": machine_check("scenario 4: durable buffering (examples/outbox_bench.rs)")}
    # Group commit scales with the callers waiting on one fsync: the store with 64, then 256.
    def outbox(callers, name):
        jf = os.path.join(WORK, f"{name}.json")
        subprocess.run(["bash", "bench/outbox.sh", "--secs", str(args.outbox_secs), "--threads", str(callers),
                        "--json", jf, "--dir", os.path.join(WORK, name)], check=True, stdout=sys.stderr)
        return json.load(open(jf))

    def enqueue_row(o, ratio_of):
        ok = o["enqueue_per_s"] >= 20000 and o["ratio_vs_raw_fsync"] >= 10
        row("4", f"durable enqueue, {o['threads']} callers (outbox_bench)", round(o["enqueue_per_s"]), "/s",
            o["enqueue_p50_ms"], o["enqueue_p99_ms"], ratio=round(o["ratio_vs_raw_fsync"], 3), ratio_of=ratio_of,
            target="≥ 20,000/s and ≥ 10× raw fsync", verdict=verdict(ok))

    o = out["outbox"] = outbox(64, "outbox")
    raw = o["raw_fsync_per_s"]
    row("4", "raw fsync, one per call (baseline)", round(raw), "/s", ratio=1.0, ratio_of="raw fsync")
    enqueue_row(o, "raw fsync")
    row("4", "drain, head + delivered (outbox_bench)", round(o["drain_per_s"]), "/s")
    enqueue_row(out.setdefault("outbox_256", outbox(256, "outbox-256")), "its own raw fsync")

    # The same end to end: notify calls over HTTP while the cloud is unreachable, each answered
    # only once on disk; then the cloud comes back on that port and the buffer drains.
    out["machine_e2e"] = machine_check("scenario 4 end to end: notify calls with the cloud down, then the drain")
    cloud_port = free_port()
    ports = {"his": free_port(), "cloud": free_port(), "admin": free_port()}
    cfg = prefront_config(os.path.join(WORK, "prefront-down.toml"), up, ports,
                          cloud_base=f"https://127.0.0.1:{cloud_port}/", buffer_name="buffer-e2e")
    pf = Prefront(cfg, ports, "prefront-s4")
    route = "prefront/sendTipMessage/payment"
    url = f"http://127.0.0.1:{ports['his']}/{route}"
    conns = max(args.conns, 64)
    res = wrk(url, up.file("patient.json"), "application/json;charset=UTF-8", args.secs,
              conns=conns, threads=args.threads, proxy_pids=[pf.pid])
    met = pf.metrics()
    outcomes = calls_by_outcome(met, route)
    queued, depth = outcomes.get("queued", 0), buffer_depth(met)
    if queued < res["requests"] or depth < queued:
        log(f"   WARNING: scenario 4 end to end: {res['requests']} sent, {outcomes} counted, depth {depth}")
    hwm = status_kib(pf.pid, "VmHWM")
    r = res["rps"] / raw if raw else None
    row("4", f"notify over HTTP, cloud down, {conns} conns (end to end)", round(res["rps"]), "/s",
        ms(res["p50_us"]), ms(res["p99_us"]), hwm, r and round(r, 3), "raw fsync",
        "≥ 20,000/s and ≥ 10× raw fsync", verdict(res["rps"] >= 20000 and (r or 0) >= 10), res)
    out["e2e"] = {"wrk": res, "outcomes": outcomes, "depth": depth, "peak_rss_kib": hwm, "ratio_vs_raw_fsync": r}
    # Bring the cloud back where prefront expects it and time the drain (bounded).
    log(f"   {depth} calls wait in the buffer; the cloud comes back")
    up2 = Upstream(cloud_port=cloud_port, name="upstream-e2e")
    t0 = time.monotonic()
    first = last_depth = None
    limit = max(60.0, 3 * args.secs)
    while time.monotonic() - t0 < limit:
        d = buffer_depth(pf.metrics())
        now = time.monotonic()
        if first is None and d < depth:
            first = (now, d)
        last_depth = d
        if d == 0:
            break
        time.sleep(0.1)
    end = time.monotonic()
    drained = depth - (last_depth or 0)
    rate = drained / (end - first[0]) if first and end > first[0] else 0.0
    log(f"   drained {drained} of {depth} in {end - (first[0] if first else t0):.1f} s after the first "
        f"delivery ({(first[0] - t0) if first else float('nan'):.1f} s for the link to come back up)")
    pf.stop()
    stop(up2.p)
    row("4", "drain over HTTPS when the cloud returns (end to end)", round(rate), "/s",
        verdict=None if last_depth == 0 else f"stopped at {limit:.0f} s, {last_depth} left")
    out["e2e_drain"] = {"queued": depth, "drained": drained, "per_s": rate,
                        "link_back_after_s": (first[0] - t0) if first else None, "left": last_depth}
    return out


def scenario_5():
    out = {"machine": machine_check("scenario 5: PACS streaming (bench/pacs.sh)")}
    jf = os.path.join(WORK, "pacs.json")
    subprocess.run(["bash", "bench/pacs.sh", "--mib", str(args.pacs_mib), "--runs", str(args.pacs_runs),
                    "--json", jf], check=True, stdout=sys.stderr)
    o = json.load(open(jf))
    out["pacs"] = o
    growth = (o["prefront_peak_rss_kib"] - o["prefront_idle_rss_kib"]) / 1024
    row("5", f"PACS direct from the loopback PACS, {o['mib']} MiB", round(o["direct_mb_s"]), "MB/s")
    row("5", "PACS through nginx (baseline)", round(o["nginx_mb_s"]), "MB/s",
        rss_kib=o["nginx_worker_peak_rss_kib"], ratio=1.0, ratio_of="nginx")
    row("5", "PACS through prefront /pacs/dcm", round(o["prefront_mb_s"]), "MB/s",
        rss_kib=o["prefront_peak_rss_kib"], ratio=round(o["prefront_vs_nginx"], 3), ratio_of="nginx",
        target="≥ 0.9× nginx; RSS growth ≤ 16 MiB",
        verdict=f"{verdict(o['prefront_vs_nginx'] >= 0.9)}; growth {growth:.1f} MiB {verdict(growth <= 16)}")
    out["rss_growth_mib"] = growth
    return out


def hold_connections(port, n, body_file):
    """Opens `n` keep-alive connections, makes one relayed call on each, and keeps them open."""
    body = open(body_file, "rb").read()
    req = (f"POST /prefront/patient/getPatientInfo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Content-Type: application/json;charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("scenario 6: a connection closed before its answer")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"scenario 6: answered {head[:40]!r}")
        m = re.search(rb"(?i)content-length: *(\d+)", head)
        want = int(m[1]) if m else 0
        while len(rest) < want:
            rest += s.recv(65536)
        socks.append(s)
    return socks


def scenario_6(up):
    out = {"machine": machine_check("scenario 6: footprint")}
    ports = {"his": free_port(), "cloud": free_port(), "admin": free_port()}
    cfg = prefront_config(os.path.join(WORK, "prefront-s6.toml"), up, ports, buffer_name="buffer-s6")
    # Start-up: spawn to the first 200 from /readyz, best of 5 (the first also creates the buffer).
    times = []
    for i in range(5):
        pf = Prefront(cfg, ports, f"prefront-s6-start{i}")
        times.append(pf.ready_s)
        if i < 4:
            pf.stop()
    best = min(times)
    log(f"   start-up to /readyz 200: {', '.join(f'{t * 1000:.1f}' for t in times)} ms")
    time.sleep(1.0)
    idle = status_kib(pf.pid, "VmRSS")
    socks = hold_connections(ports["his"], 1000, up.file("patient.json"))
    time.sleep(0.5)
    held = status_kib(pf.pid, "VmRSS")
    hwm = status_kib(pf.pid, "VmHWM")
    for s in socks:
        s.close()
    pf.stop()
    size = os.stat(BIN).st_size
    static = os.stat(STATIC_BIN).st_size if os.path.exists(STATIC_BIN) else None
    static_note = None
    if static is None:
        static_note = ("packaging/build-static.sh absent" if not os.path.exists("packaging/build-static.sh")
                       else "not built (bench/run.sh --static builds it)")
    elif os.stat(STATIC_BIN).st_mtime < os.stat(BIN).st_mtime - 3600:
        static_note = "older than the release build by over an hour"
    row("6", "idle RSS after start", round(idle / 1024, 1), "MiB", target="≤ 16 MiB", verdict=verdict(idle <= 16 * 1024))
    row("6", "RSS with 1,000 idle keep-alive connections", round(held / 1024, 1), "MiB",
        rss_kib=hwm, ratio=None, verdict=f"{(held - idle) / 1000:.1f} KiB per connection")
    row("6", "start-up to /readyz 200 (best of 5)", round(best * 1000, 1), "ms", target="≤ 100 ms",
        verdict=verdict(best <= 0.1))
    row("6", "release binary (target/release/prefront)", round(size / MIB, 1), "MiB")
    if static is not None:
        row("6", "static binary (packaging/build-static.sh)", round(static / MIB, 1), "MiB",
            target="≤ 25 MiB", verdict=verdict(static <= 25 * MIB) + (f" ({static_note})" if static_note else ""))
    else:
        row("6", "static binary", None, "MiB", target="≤ 25 MiB", verdict=static_note)
    out.update(idle_rss_kib=idle, rss_1000_conns_kib=held, peak_rss_kib=hwm, startup_ms=[t * 1000 for t in times],
               startup_best_ms=best * 1000, binary_bytes=size, static_binary_bytes=static, static_note=static_note)
    return out


def scenario_7(up):
    """The message trail's cost: the scenario 1 relay with the trail on and off, same run."""
    out = {"machine": machine_check("scenario 7: the relay with the message trail on vs off")}
    patient = up.file("patient.json")
    route1 = "prefront/patient/getPatientInfo"
    JSON_CT = "application/json;charset=UTF-8"
    pfs = {}
    for on in (True, False):
        ports = {"his": free_port(), "cloud": free_port(), "admin": free_port()}
        name = "trail-on" if on else "trail-off"
        cfg = prefront_config(os.path.join(WORK, f"prefront-s7-{name}.toml"), up, ports,
                              buffer_name=f"buffer-s7-{name}", trail=on)
        pfs[name] = (Prefront(cfg, ports, f"prefront-s7-{name}"), ports)
    runs = {k: [] for k in pfs}
    for r in range(max(args.runs, 1)):
        order = list(pfs) if r % 2 == 0 else list(reversed(list(pfs)))
        for who in order:
            pf, ports = pfs[who]
            log(f"   run {r + 1}/{max(args.runs, 1)}: {who}, {args.conns} connections, {args.secs:g} s")
            res = load(f"http://127.0.0.1:{ports['his']}/{route1}", patient, JSON_CT, [pf.pid], [up.p.pid],
                       conns=args.conns, threads=args.threads)
            log(f"     {res['rps']:.0f} req/s, p99 {ms(res['p99_us'])} ms, "
                f"{res['proxy_cpu_us_per_req']:.0f} µs CPU/req, errors {res['errors']}")
            runs[who].append(res)
    for pf, _ in pfs.values():
        pf.stop()
    med = {k: median_run(v) for k, v in runs.items()}
    off, on = med["trail-off"], med["trail-on"]
    ratio = on["rps"] / off["rps"]
    row("7", "relay, trail off (baseline)", round(off["rps"]), "req/s", ms(off["p50_us"]), ms(off["p99_us"]),
        ratio=1.0, ratio_of="trail off", res=off)
    row("7", "relay, trail on", round(on["rps"]), "req/s", ms(on["p50_us"]), ms(on["p99_us"]),
        ratio=round(ratio, 3), ratio_of="trail off", target="≥ 0.95× trail off",
        verdict=verdict(ratio >= 0.95), res=on)
    trail_dir = os.path.join(WORK, "trail-buffer-s7-trail-on")
    size = sum(os.path.getsize(os.path.join(trail_dir, f)) for f in os.listdir(trail_dir)) \
        if os.path.isdir(trail_dir) else 0
    total = sum(x["requests"] for x in runs["trail-on"])
    log(f"   trail: {size} bytes for {total} calls ({size / max(total, 1):.0f} bytes per call)")
    out.update(on=on, off=off, ratio=ratio, trail_bytes=size, trail_calls=total)
    return out


def keepalive_calls(port, path, body_file, ct, n, tls=False):
    """`n` calls one after the other on one keep-alive connection; each must answer 200."""
    import ssl
    body = open(body_file, "rb").read()
    if tls:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=120, context=ssl._create_unverified_context())
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(n):
            c.request("POST", path, body, {"Content-Type": ct, "SOAPAction": '""'})
            r = c.getresponse()
            data = r.read()
            if r.status != 200 or b"10001" not in data:
                raise SystemExit(f"callgrind: {path} answered {r.status}: {data[:200]!r}")
    finally:
        c.close()


def callgrind_ir(out_prefix, pid, run):
    """Instructions executed by `pid` (user space, all threads) while `run()` runs."""
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    run()
    before = set(f for f in os.listdir(WORK) if f.startswith(out_prefix))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(100):
        new = [f for f in os.listdir(WORK) if f.startswith(out_prefix) and f not in before]
        if new and os.path.getsize(os.path.join(WORK, new[0])) > 0:
            time.sleep(0.2)
            text = open(os.path.join(WORK, new[0])).read()
            m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if m:
                return int(m[1]), os.path.join(WORK, new[0])
        time.sleep(0.1)
    raise SystemExit("callgrind: no dump")


def scenario_callgrind(up):
    """Scenarios 1-3 counted in instructions per call under callgrind: the same on a busy machine
    as on a quiet one (user space only: the kernel's share and the cycles per instruction are not
    in it). One connection, calls one after the other, after 200 unmeasured ones."""
    if not shutil.which("valgrind"):
        log("== callgrind: valgrind is not installed (apt-get install valgrind): skipped")
        return {}
    out = {"machine": machine_check("callgrind: instructions per call (deterministic)")}
    n = 1000
    ports = {"his": free_port(), "cloud": free_port(), "admin": free_port()}
    cfg = prefront_config(os.path.join(WORK, "prefront-cg.toml"), up, ports, buffer_name="buffer-cg")
    cg = lambda prefix: ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={WORK}/{prefix}.%p"]
    pf = Prefront(cfg, ports, "prefront-cg", wrap=cg("cg-prefront"))
    j, x, q = up.file("patient.json"), up.file("soap.xml"), up.file("his_query.json")
    JSON_CT = "application/json;charset=UTF-8"
    cases = [
        ("1", "prefront JSON relay", ports["his"], "/prefront/patient/getPatientInfo", j, JSON_CT, False),
        ("2", "prefront SOAP endpoint", ports["his"], "/prefront/services/prefrontWebService", x,
         "text/xml; charset=UTF-8", False),
        ("3", "SOAP out, param = string", ports["cloud"], "/his/hospital.interface.queryMedicalInsuranceOrder", q,
         JSON_CT, True),
        ("3", "SOAP out, param = xml (30 fields, 2 arrays)", ports["cloud"], "/his/hospital.interface.queryWaitPay",
         q, JSON_CT, True),
    ]
    ir = {}
    for sc, what, port, path, body, ct, tls in cases:
        keepalive_calls(port, path, body, ct, 200, tls)
        total, dump = callgrind_ir("cg-prefront", pf.pid, lambda: keepalive_calls(port, path, body, ct, n, tls))
        ir[what] = total / n
        log(f"   {what}: {total / n:,.0f} instructions per call")
        out[what] = {"ir_per_call": total / n, "dump": os.path.basename(dump)}
    pf.stop()
    ng = Nginx(up, wrap=cg("cg-nginx"), name="nginx-cg")
    path1 = "/prefront/patient/getPatientInfo"
    keepalive_calls(ng.port, path1, j, JSON_CT, 200)
    total, _ = callgrind_ir("cg-nginx", ng.p.pid, lambda: keepalive_calls(ng.port, path1, j, JSON_CT, n))
    stop(ng.p)
    ir_ng = total / n
    log(f"   nginx reverse proxy: {ir_ng:,.0f} instructions per call")
    out["nginx"] = {"ir_per_call": ir_ng}
    s1 = ir["prefront JSON relay"]
    row("c", "callgrind: nginx reverse proxy (baseline)", round(ir_ng), "instr/call", ratio=1.0, ratio_of="nginx")
    row("c", "callgrind: prefront JSON relay", round(s1), "instr/call", ratio=round(ir_ng / s1, 3),
        ratio_of="nginx (work: nginx/prefront)")
    for what in list(ir)[1:]:
        row("c", f"callgrind: {what}", round(ir[what]), "instr/call", ratio=round(s1 / ir[what], 3),
            ratio_of="scenario 1 (work)")
    return out


# ---------------------------------------------------------------------------------------------
# Report

def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    fs = subprocess.run(["df", "--output=source,fstype", "target"], capture_output=True, text=True).stdout.split("\n")[1:2]
    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.rstrip("\n")
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "nproc": NCPU, "cpu": cpu, "kernel": os.uname().release,
        "disk_under_target": " ".join(fs[0].split()) if fs else "?",
        "commit": git("rev-parse", "--short", "HEAD"),
        "tree": "dirty: " + ", ".join(l[3:] for l in git("status", "--porcelain", "--untracked-files=no").splitlines())
                if git("status", "--porcelain", "--untracked-files=no") else "clean",
        "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].split(" Copyright")[0],
        "nginx": subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip(),
    }


def fmt(v, nd=1):
    if v is None:
        return ""
    if isinstance(v, (int,)) or (isinstance(v, float) and v >= 100):
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def table():
    head = ["#", "scenario", "rate / value", "p50 ms", "p99 ms", "peak RSS", "ratio", "target", "verdict",
            "CPU µs/req", "others' CPU"]
    lines = []
    for r in RESULTS["rows"]:
        val = "" if r["value"] is None else f"{fmt(r['value'])} {r['unit']}"
        rss = "" if not r["peak_rss_kib"] else f"{r['peak_rss_kib'] / 1024:.1f} MiB"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}× {r['ratio_of']}"
        p50 = "" if r["p50_ms"] is None else f"{r['p50_ms']:.2f}"
        p99 = "" if r["p99_ms"] is None else f"{r['p99_ms']:.2f}"
        oth = "" if r["others_cpus"] is None else f"{r['others_cpus']:.2f}"
        cpu = "" if r["cpu_us_per_req"] is None else f"{r['cpu_us_per_req']:.0f}"
        lines.append([r["scenario"], r["what"], val, p50, p99, rss, ratio, r["target"] or "", r["verdict"] or "",
                      cpu, oth])
    w = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
    right = {2, 3, 4, 5, 9, 10}
    def line(cells):
        return "  ".join(str(c).rjust(w[i]) if i in right else str(c).ljust(w[i]) for i, c in enumerate(cells)).rstrip()
    return "\n".join([line(head), line(["-" * x for x in w])] + [line(l) for l in lines])


def main():
    RESULTS["machine"] = machine()
    RESULTS["settings"] = {k: getattr(args, k) for k in ("secs", "warmup", "conns", "threads", "runs", "upstream",
                                                        "pacs_mib", "pacs_runs", "outbox_secs", "quiet_logs")}
    RESULTS["load_at_start"] = loadavg()
    build()
    up = Upstream() if ONLY & {"1", "1b", "2", "3", "4", "6", "7", "c"} else None
    if ONLY & {"1", "1b", "2", "3"}:
        RESULTS["scenarios"].update(scenario_1_2_3(up))
    if "4" in ONLY:
        RESULTS["scenarios"]["s4"] = scenario_4(up)
    if "5" in ONLY:
        RESULTS["scenarios"]["s5"] = scenario_5()
    if "6" in ONLY:
        RESULTS["scenarios"]["s6"] = scenario_6(up)
    if "7" in ONLY:
        RESULTS["scenarios"]["s7"] = scenario_7(up)
    if "c" in ONLY:
        RESULTS["scenarios"]["callgrind"] = scenario_callgrind(up)
    RESULTS["load_at_end"] = loadavg()
    RESULTS["wall_s"] = round(time.monotonic() - T0, 1)
    m = RESULTS["machine"]
    print(f"prefront benchmarks — {m['date']}, {m['nproc']} cpus ({m['cpu']}), kernel {m['kernel']}, "
          f"commit {m['commit']} ({m['tree']})")
    print(f"load: wrk -t{args.threads} -c{args.conns} {args.secs:g} s after {args.warmup:g} s warm-up; "
          f"{'no per-call logs' if args.quiet_logs else 'both proxies log one line per call to a file'}; "
          f"{args.upstream.upper()} upstream in 1-2; "
          f"{'1b: wrk -t2 -c64, HTTP upstream, nginx access_log off, prefront info; ' if '1b' in ONLY else ''}"
          f"load average {RESULTS['load_at_start']:.2f} at start, {RESULTS['load_at_end']:.2f} at end; "
          f"{RESULTS['wall_s']:.0f} s in all")
    print(table())
    print("CPU µs/req: CPU time of the proxy process(es) alone per request (holds up on a busy machine far better "
          "than req/s); others' CPU: cores used by processes outside this run during the measurement (0 = quiet)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=2, ensure_ascii=False)
            f.write("\n")
        log(f"JSON written to {args.json}")


try:
    main()
finally:
    cleanup()
PY
