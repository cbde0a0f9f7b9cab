#!/usr/bin/env python3
"""Replicas under chaos: 3 collectors and 2 writers behind nginx, jobs shared through leases.

Started by ctest (scripts/test exports PG* for its private PostgreSQL). The layout is the one a mesh gives:
every tier sits behind Debian's nginx as an L7 gRPC proxy (grpc_pass), the way a sidecar does:

    etlctl --> nginx :C --> collector_server x3 --> nginx :W --> writer_server x2 --> PostgreSQL
                                 |
                                 +--> sample_api (request log: who fetched which page when)

12 jobs of the styles page, offset, cursor, link and next_url are started round-robin through the collectors'
proxy, each by its own `etlctl run` that then follows the job (WatchJob through the proxy, reconnecting when
the replica behind the stream dies). While they run, at seeded random moments: kill -9 of a collector that
owns jobs (restarted under a new replica id), kill -9 of a writer (restarted on its port), and SIGSTOP of a
collector that owns jobs for longer than its lease, then SIGCONT. Then it asserts:
  * every job ends SUCCEEDED, and every `etlctl run` (WatchJob through the proxy) saw it end;
  * every table is exact: the API's ids, each once, and the same content hash (md5 over the records as jsonb
    ordered by id) as the API's collection loaded into a scratch table;
  * one owner at a time: in the API's request log (X-Etl-Replica = the collector's replica id), a job's
    requests form runs of one replica each; the runs are at most the job's lease claims (etl_jobs.lease_epoch),
    and the only requests of an old owner after a new one started are those of the SIGSTOPped collector in
    the moments after its SIGCONT (its in-flight page, before it notices the lost lease; the writer fences
    them and the exact tables show none was committed);
  * every job is visible and watchable through the proxy: ListJobs lists all, GetJob and WatchJob of each
    answer SUCCEEDED whichever replica nginx picks.
The seed is printed; --seed replays the same chaos schedule. Exit 77 = skipped (no nginx, no PostgreSQL, or a
collector without leases).
    replica_chaos_test.py BIN_DIR [--seed N] [--keep]
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

STYLES = ["page", "offset", "cursor", "link", "next_url"]
FINAL = ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")


def log(*args):
    print("%8.2f" % (time.monotonic() - T0), *args, flush=True)


T0 = time.monotonic()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def psql(sql):
    r = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError("psql: %s: %s" % (sql[:120], r.stderr.strip()))
    return r.stdout.strip()


def wait_for(what, predicate, seconds, interval=0.05):
    """Polls predicate() until it returns something true; raises after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timeout after %.0fs waiting for %s" % (seconds, what))
        time.sleep(interval)


def read_port(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class Proc:
    """One child process (its output appended to work/<name>.log)."""

    def __init__(self, name, argv, work):
        self.name, self.argv, self.work = name, argv, work
        self.proc = None
        self.lock = threading.Lock()

    def start(self, argv=None):
        with self.lock:
            if argv is not None:
                self.argv = argv
            with open(os.path.join(self.work, self.name + ".log"), "ab") as out:
                self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)

    def alive(self):
        with self.lock:
            return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(sig)

    def peak_rss_mib(self):
        """VmHWM (peak resident set) of the running process in MiB, or 0."""
        with self.lock:
            pid = self.proc.pid if self.proc is not None and self.proc.poll() is None else None
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except (OSError, TypeError, ValueError):
            pass
        return 0.0

    def kill9(self):
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def stop(self, timeout=20):
        with self.lock:
            p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGCONT)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class ChaosTest:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.work = tempfile.mkdtemp(prefix="etl-replica-chaos.")
        self.rng = random.Random(args.seed)
        self.cliente = "rc%d_%d" % (os.getpid(), args.seed % 100000)
        self.procs = []
        self.events = []  # (monotonic ns, what, detail): the chaos as it happened
        self.stops = []  # (replica id, SIGSTOP ns, SIGCONT ns)
        self.failures = []
        self.lease_seconds = args.lease_seconds
        self.peak = {"collector": 0.0, "writer": 0.0}

    def path(self, name):
        return os.path.join(self.work, name)

    def b(self, name):
        return os.path.join(self.bin, name)

    def fail(self, msg):
        log("FAIL:", msg)
        self.failures.append(msg)

    # ------------------------------------------------------------------ services
    def start_api(self):
        self.api = Proc("sample_api", [self.b("sample_api"), "--listen=127.0.0.1:0",
                                       "--port_file=" + self.path("api.port"), "--threads=64",
                                       "--request_log=" + self.path("requests.log")], self.work)
        self.api.start()
        self.procs.append(self.api)
        self.api_port = wait_for("the sample API's port", lambda: read_port(self.path("api.port")), 30)

    def writer_argv(self, i, port):
        return [self.b("writer_server"), "--listen=127.0.0.1:%d" % port,
                "--port_file=" + self.path("w%d.port" % i)]

    def start_writers(self):
        self.writers = []
        for i in (1, 2):
            w = Proc("writer%d" % i, self.writer_argv(i, 0), self.work)
            w.start()
            self.procs.append(w)
            self.writers.append(w)
        self.writer_ports = [wait_for("writer %d's port" % i, lambda i=i: read_port(self.path("w%d.port" % i)), 30)
                             for i in (1, 2)]
        for w, port in zip(self.writers, self.writer_ports):
            w.port = port
            # A restart binds the same port again (the proxy's upstream list stays valid, like a pod
            # coming back at its address).
            w.argv = self.writer_argv(self.writers.index(w) + 1, port)

    def collector_argv(self, i, port, gen):
        replica = "c%d.%d" % (i, gen)
        argv = [self.b("collector_server"), "--listen=127.0.0.1:%d" % port,
                "--port_file=" + self.path("c%d.port" % i),
                "--writer=127.0.0.1:%d" % self.writer_proxy_port, "--allow_private_networks",
                # Small streams: each job's pages go over many Write streams, spread over both writers.
                "--max_stream_bytes=65536"]
        if self.leases:
            argv += ["--replica_id=" + replica, "--lease_seconds=%g" % self.lease_seconds,
                     "--lease_renew_seconds=%g" % self.args.renew_seconds]
        else:
            argv.append("--resume=false")  # --force without leases: each collector runs its own jobs.
        if self.send_replica_flag:
            argv.append(self.send_replica_flag)
        return argv, replica

    def start_collectors(self):
        self.collectors = []
        for i in (1, 2, 3):
            argv, replica = self.collector_argv(i, 0, 1)
            c = Proc("collector%d" % i, argv, self.work)
            c.index, c.gen, c.replica = i, 1, replica
            c.start()
            self.procs.append(c)
            self.collectors.append(c)
        for c in self.collectors:
            c.port = wait_for("collector %d's port" % c.index, lambda c=c: read_port(self.path("c%d.port" % c.index)),
                              30)

    def write_nginx_conf(self):
        os.makedirs(self.path("nginx"), exist_ok=True)
        ups_w = "".join("    server 127.0.0.1:%d;\n" % p for p in self.writer_ports)
        ups_c = "".join("    server 127.0.0.1:%d;\n" % c.port for c in self.collectors) if hasattr(
            self, "collectors") else "    server 127.0.0.1:1;\n"
        n = self.path("nginx")
        conf = """daemon off;
worker_processes 1;
pid %(n)s/nginx.pid;
error_log %(n)s/error.log warn;
events { worker_connections 1024; }
http {
  log_format calls '$msec $server_port $request_uri $upstream_addr $status $grpc_status';
  map $sent_http_grpc_status $grpc_status { default $sent_http_grpc_status; '' '-'; }
  access_log %(n)s/access.log calls;
  client_body_temp_path %(n)s/body;
  proxy_temp_path %(n)s/proxy;
  fastcgi_temp_path %(n)s/fastcgi;
  uwsgi_temp_path %(n)s/uwsgi;
  scgi_temp_path %(n)s/scgi;
  upstream writers {
%(ups_w)s  }
  upstream collectors {
%(ups_c)s  }
  server {
    listen 127.0.0.1:%(wport)d http2;
    client_max_body_size 0;
    location / {
      grpc_pass grpc://writers;
      grpc_connect_timeout 2s;
      grpc_read_timeout 300s;
      grpc_send_timeout 300s;
    }
  }
  server {
    listen 127.0.0.1:%(cport)d http2;
    client_max_body_size 0;
    location / {
      grpc_pass grpc://collectors;
      grpc_connect_timeout 2s;
      grpc_read_timeout 300s;
      grpc_send_timeout 300s;
    }
  }
}
""" % dict(n=n, ups_w=ups_w, ups_c=ups_c, wport=self.writer_proxy_port, cport=self.collector_proxy_port)
        with open(self.path("nginx.conf"), "w") as f:
            f.write(conf)

    def start_nginx(self):
        # nginx takes its ports from the config: free ports found just before; a port taken meanwhile makes
        # nginx exit at once, and the start is retried on fresh ports.
        for _ in range(5):
            self.writer_proxy_port, self.collector_proxy_port = free_port(), free_port()
            self.write_nginx_conf()
            self.nginx = Proc("nginx", ["nginx", "-p", self.path("nginx"), "-c", self.path("nginx.conf"),
                                        "-e", self.path("nginx/error.log")], self.work)
            self.nginx.start()
            try:
                wait_for("nginx to proxy the writers' health", lambda: not self.nginx.alive() or self.probe(
                    self.writer_proxy_port), 20)
            except RuntimeError:
                pass
            if self.nginx.alive() and self.probe(self.writer_proxy_port):
                self.procs.append(self.nginx)
                return
            self.nginx.stop()
        raise RuntimeError("nginx did not start (see %s)" % self.path("nginx/error.log"))

    def reload_nginx(self):
        """Points the collectors' upstream at the collectors' (now known) ports."""
        self.write_nginx_conf()
        r = subprocess.run(["nginx", "-p", self.path("nginx"), "-c", self.path("nginx.conf"), "-e",
                            self.path("nginx/error.log"), "-s", "reload"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nginx reload: " + r.stderr)
        wait_for("nginx to proxy the collectors", lambda: self.probe(self.collector_proxy_port, "etl.v1.CollectorService")
                 or self.probe(self.collector_proxy_port), 20)

    def probe(self, port, service=None):
        argv = [self.b("etl_health_probe"), "--quiet", "127.0.0.1:%d" % port]
        if service:
            argv.append("--service=" + service)
        return subprocess.run(argv, capture_output=True).returncode == 0

    # ------------------------------------------------------------------ clients
    def etlctl(self, *argv, timeout=30):
        # Unary calls get 10 s: a replica that hangs fails the check quickly instead of stalling it.
        try:
            return subprocess.run([self.b("etlctl"), "--collector=127.0.0.1:%d" % self.collector_proxy_port,
                                   "--rpc_timeout=10"] + list(argv), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(argv, 124, e.stdout or "", "etlctl timed out after %ds" % timeout)

    def job_specs(self):
        jobs = []
        for n in range(self.args.jobs):
            style = STYLES[n % len(STYLES)]
            rota = "%s_%d" % (style, n + 1)
            page_size = self.rng.choice([25, 40, 50])
            pages = self.rng.randint(self.args.min_pages, self.args.max_pages)
            total = page_size * pages - self.rng.randint(0, page_size - 1)
            url = "http://127.0.0.1:%d/v1/clientes/%s/%s/%s" % (self.api_port, self.cliente, rota, style)
            argv = ["run", "--cliente=" + self.cliente, "--rota=" + rota, "--url=" + url, "--pagination=" + style,
                    "--records-path=/data", "--id-path=/id", "--write-mode=append", "--page-size=%d" % page_size,
                    # One page at a time, each taking slow_ms: the job lasts long enough to meet the chaos,
                    # and its request log shows one owner's pages in order.
                    "--fetch-concurrency=1", "--backoff-scale=0.05", "--max-attempts=6",
                    "--param=total=%d" % total, "--param=slow_ms=%d" % self.args.slow_ms,
                    # One transient 503 per job: retried by its owner.
                    "--param=fail_pages=%d" % self.rng.randint(1, pages), "--param=fail_times=1"]
            if style == "page":
                argv.append("--total-pages-path=/total_pages")
            elif style == "offset":
                argv.append("--total-count-path=/total")
            elif style == "cursor":
                argv.append("--cursor-path=/next_cursor")
            elif style == "next_url":
                argv.append("--next-url-path=/next")
            jobs.append(dict(n=n + 1, style=style, rota=rota, total=total, page_size=page_size, pages=pages,
                             argv=argv, id=None, runner=None))
        return jobs

    def start_jobs(self):
        """Starts every job with its own `etlctl run` (StartJob, then WatchJob until it ends)."""
        for job in self.jobs:
            out = open(self.path("run_%s.log" % job["rota"]), "wb")
            job["runner"] = subprocess.Popen(
                [self.b("etlctl"), "--collector=127.0.0.1:%d" % self.collector_proxy_port] + job["argv"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            job["runner_out"] = out
        # Each job's id, from the ledger (the runner prints it as it starts).
        def ids():
            rows = psql("SELECT rota, job_id FROM etl_jobs WHERE cliente_id = '%s'" % self.cliente)
            got = dict(line.split("|") for line in rows.splitlines() if line)
            return got if len(got) == len(self.jobs) else None
        got = wait_for("every job registered", ids, 60, 0.2)
        for job in self.jobs:
            job["id"] = got[job["rota"]]

    def ledger(self):
        cols = "owner, lease_epoch" if self.leases else "'', 0"
        rows = psql("SELECT job_id, state, %s FROM etl_jobs WHERE cliente_id = '%s'" % (cols, self.cliente))
        out = {}
        for line in rows.splitlines():
            if line:
                job_id, state, owner, epoch = line.split("|")
                out[job_id] = dict(state=state, owner=owner, epoch=int(epoch))
        return out

    # ------------------------------------------------------------------ chaos
    def owners_of_running_jobs(self):
        """Replica id -> running job count, from the ledger's leases."""
        owners = {}
        for rec in self.ledger().values():
            if rec["state"] not in FINAL and rec["owner"]:
                owners[rec["owner"]] = owners.get(rec["owner"], 0) + 1
        return owners

    def pick_owner(self, exclude=()):
        """A live collector (not stopped) that holds the lease of a running job, or None."""
        owners = self.owners_of_running_jobs()
        cands = [c for c in self.collectors if owners.get(c.replica) and c.alive() and c not in exclude]
        return self.rng.choice(sorted(cands, key=lambda c: c.index)) if cands else None

    def note_peak(self, proc):
        role = "collector" if proc.name.startswith("collector") else "writer"
        self.peak[role] = max(self.peak[role], proc.peak_rss_mib())

    def event(self, what, detail):
        self.events.append((time.monotonic_ns(), what, detail))
        log("chaos:", what, detail)
        with open(self.path("chaos.log"), "a") as f:
            f.write("%d %s %s\n" % (time.monotonic_ns(), what.replace(" ", "_"), detail))

    def chaos_kill_collector(self, at):
        self.sleep_until(at)
        victim = wait_for("a collector owning a running job", lambda: self.pick_owner(exclude=self.stopped), 30, 0.1)
        self.note_peak(victim)
        victim.kill9()
        self.event("kill -9", victim.replica)
        self.sleep_until(time.monotonic() + self.rng.uniform(0.2, 1.5))
        victim.gen += 1
        victim.argv, victim.replica = self.collector_argv(victim.index, victim.port, victim.gen)
        victim.start()
        self.event("restart", victim.replica)

    def chaos_kill_writer(self, at):
        self.sleep_until(at)
        victim = self.rng.choice(self.writers)
        self.note_peak(victim)
        victim.kill9()
        self.event("kill -9", victim.name)
        self.sleep_until(time.monotonic() + self.rng.uniform(0.2, 1.5))
        victim.start()
        self.event("restart", victim.name)

    def chaos_stop_collector(self, at):
        self.sleep_until(at)
        victim = wait_for("a collector owning a running job", self.pick_owner, 30, 0.1)
        self.stopped.append(victim)
        replica = victim.replica
        victim.send(signal.SIGSTOP)
        t_stop = time.monotonic_ns()
        self.event("SIGSTOP", replica)
        # Paused longer than its lease: the other collectors claim its jobs meanwhile.
        self.sleep_until(time.monotonic() + self.lease_seconds + self.rng.uniform(1.5, 3))
        # The time before the signal: the woken collector may fetch at once (its in-flight answer is
        # already in its socket buffer).
        t_cont = time.monotonic_ns()
        victim.send(signal.SIGCONT)
        self.stops.append((replica, t_stop, t_cont))
        self.event("SIGCONT", replica)
        self.stopped.remove(victim)

    @staticmethod
    def sleep_until(t):
        # Chaos timing (a random moment), not synchronisation.
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)

    def run_chaos(self):
        t0 = time.monotonic()
        self.stopped = []
        plan = [(self.chaos_kill_collector, t0 + self.rng.uniform(2, 8)),
                (self.chaos_kill_writer, t0 + self.rng.uniform(2, 10)),
                (self.chaos_stop_collector, t0 + self.rng.uniform(3, 9))]
        errors = []

        def run(fn, at):
            try:
                fn(at)
            except Exception as e:  # noqa: BLE001 - reported as a failure of the run
                errors.append("%s: %s" % (fn.__name__, e))

        threads = [threading.Thread(target=run, args=p) for p in plan]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in errors:
            self.fail("chaos " + e)

    # ------------------------------------------------------------------ checks
    def wait_jobs(self):
        deadline = time.monotonic() + self.args.job_timeout
        for job in self.jobs:
            left = max(1, deadline - time.monotonic())
            try:
                job["runner"].wait(timeout=left)
            except subprocess.TimeoutExpired:
                job["runner"].kill()
                job["runner"].wait()
                self.fail("job %s (%s): `etlctl run` did not end within %ds" % (job["rota"], job["id"],
                                                                                self.args.job_timeout))
            job["runner_out"].close()
            job["runner_rc"] = job["runner"].returncode

    def check_states(self):
        ledger = self.ledger()
        for job in self.jobs:
            rec = ledger.get(job["id"], {})
            job["state"], job["epoch"] = rec.get("state"), rec.get("epoch", 0)
            if job["state"] != "SUCCEEDED":
                self.fail("job %s (%s) ended %s" % (job["rota"], job["id"], job["state"]))
            if job["runner_rc"] != 0:
                with open(self.path("run_%s.log" % job["rota"]), errors="replace") as f:
                    tail = f.read()[-600:]
                self.fail("job %s: `etlctl run` (WatchJob through the proxy) exited %d:\n%s" % (
                    job["rota"], job["runner_rc"], tail))

    def check_tables(self):
        scratch = "replica_chaos_expected_%d" % os.getpid()
        for job in self.jobs:
            url = "http://127.0.0.1:%d/v1/clientes/%s/%s/none?total=%d" % (self.api_port, self.cliente,
                                                                          job["rota"], job["total"])
            # Named, so the ownership check can leave the harness's own requests out.
            req = urllib.request.Request(url, headers={"X-Etl-Replica": "harness"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                body = resp.read().decode("utf-8")
            # The API's body as it is (numbers keep their text, e.g. 2818.70): PostgreSQL splits it.
            exp_file = self.path("expected.copy")
            with open(exp_file, "w") as f:
                f.write(body.replace("\\", "\\\\").replace("\n", "\\n") + "\n")
            psql("DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s_doc; CREATE UNLOGGED TABLE %s_doc (doc jsonb)"
                 % (scratch, scratch, scratch))
            r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                "\\copy %s_doc (doc) FROM '%s'" % (scratch, exp_file)], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("loading the expected records: " + r.stderr)
            psql("CREATE UNLOGGED TABLE %s AS SELECT jsonb_array_elements(doc->'data') AS payload FROM %s_doc"
                 % (scratch, scratch))
            q = ("SELECT count(*), count(DISTINCT payload->>'id'), "
                 "coalesce(md5(string_agg(payload::text, E'\\n' ORDER BY (payload->>'id')::bigint, payload::text)), '')"
                 " FROM %s")
            table = "dados_raw_cliente_%s_%s" % (self.cliente, job["rota"])
            got = psql(q % table)
            want = psql(q % scratch)
            job["rows"] = int(got.split("|")[0])
            if got != want or int(want.split("|")[0]) != job["total"]:
                self.fail("table %s not exact: rows|distinct ids|md5 = %s, the API's %s (%d records)" % (
                    table, got, want, job["total"]))
        psql("DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s_doc" % (scratch, scratch))

    def request_log(self):
        """rota -> [(ns, replica, target)] for this run's jobs."""
        prefix = "/v1/clientes/%s/" % self.cliente
        by_rota = {}
        with open(self.path("requests.log")) as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 3)
                if len(parts) != 4 or not parts[3].startswith(prefix) or parts[1] == "harness":
                    continue
                rota = parts[3][len(prefix):].split("/", 1)[0]
                by_rota.setdefault(rota, []).append((int(parts[0]), parts[1], parts[3]))
        return by_rota

    def check_ownership(self):
        """One owner at a time: a job's requests form runs of one replica each, no more runs than lease
        claims; the only requests of an old owner after a new one began are the SIGSTOPped collector's just
        after its SIGCONT."""
        tolerance_ns = int((self.args.renew_seconds + 3) * 1e9)
        by_rota = self.request_log()
        self.stale = 0
        self.handovers = 0
        for job in self.jobs:
            reqs = sorted(by_rota.get(job["rota"], []))
            if not reqs:
                self.fail("job %s: no request in the API's log" % job["rota"])
                continue
            anonymous = [r for r in reqs if r[1] == "-"]
            if anonymous:
                self.fail("job %s: %d requests without X-Etl-Replica" % (job["rota"], len(anonymous)))
                continue
            kept = []
            for t, replica, target in reqs:
                # A request of a collector that just woke from SIGSTOP after another replica fetched this
                # job while it slept: its lease was gone (the writer fences it); it is not an owner.
                woke = [(s, c) for (rep, s, c) in self.stops if rep == replica and c <= t <= c + tolerance_ns]
                if woke and any(r2 != replica and s <= t2 <= t for (s, _) in woke for (t2, r2, _) in reqs):
                    self.stale += 1
                    continue
                kept.append((t, replica, target))
            runs = []
            for t, replica, _ in kept:
                if not runs or runs[-1][0] != replica:
                    runs.append([replica, t, t])
                else:
                    runs[-1][2] = t
            job["owners"] = [r[0] for r in runs]
            self.handovers += len(runs) - 1
            if len(runs) > max(1, job["epoch"]):
                self.fail("job %s: %d runs of owners %s in the API's log but %d lease claims (lease_epoch): two "
                          "owners at once" % (job["rota"], len(runs), brief(job["owners"]), job["epoch"]))

    def check_visible(self):
        r = self.etlctl("list", "--json", "--limit=1000")
        try:
            listed = {j["job_id"]: j for j in json.loads(r.stdout).get("jobs", [])}
        except ValueError:
            self.fail("ListJobs through the proxy: %s %s" % (r.stdout[:200], r.stderr[:200]))
            listed = {}
        deadline = time.monotonic() + 120
        for job in self.jobs:
            if time.monotonic() > deadline:
                self.fail("GetJob/WatchJob checks through the proxy did not finish within 120 s")
                return
            if listed.get(job["id"], {}).get("state") != "SUCCEEDED":
                self.fail("ListJobs through the proxy: job %s is %s" % (job["id"], listed.get(job["id"], {}).get(
                    "state", "missing")))
            # Several times each: nginx spreads the calls over the three collectors.
            for _ in range(3):
                g = self.etlctl("status", job["id"], "--json")
                try:
                    state = json.loads(g.stdout).get("state")
                except ValueError:
                    state = "unparsable: %s %s" % (g.stdout[:100], g.stderr[:200])
                if state != "SUCCEEDED":
                    self.fail("GetJob %s through the proxy: %s" % (job["id"], state))
                    break
            w = self.etlctl("watch", job["id"], timeout=20)
            if w.returncode != 0:
                self.fail("WatchJob %s through the proxy exited %d: %s" % (job["id"], w.returncode, w.stderr[-300:]))

    def check_proxy_log(self):
        """Every tier's calls went through nginx, the writers' over both writers."""
        writes, writer_addrs, collector_addrs = 0, set(), set()
        with open(self.path("nginx/access.log")) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 4:
                    continue
                if parts[2].startswith("/etl.v1.WriterService/Write"):
                    writes += 1
                    writer_addrs.add(parts[3])
                elif parts[2].startswith("/etl.v1.CollectorService/"):
                    collector_addrs.update(a.strip(",") for a in parts[3:-2] if ":" in a)
        self.proxy_summary = "%d Write streams over %d writer addresses, client calls over %d collector addresses" % (
            writes, len(writer_addrs), len(collector_addrs))
        if writes < len(self.jobs) or len(writer_addrs) < 2:
            self.fail("Write streams through nginx: " + self.proxy_summary)

    # ------------------------------------------------------------------ run
    def run(self):
        log("seed %d (replay: --seed=%d), work dir %s, cliente %s" % (self.args.seed, self.args.seed, self.work,
                                                                     self.cliente))
        helptext = subprocess.run([self.b("collector_server"), "--help"], capture_output=True, text=True).stdout
        self.leases = "lease_seconds" in helptext or "lease-seconds" in helptext
        if not self.leases and not self.args.force:
            print("collector_server has no job leases (--lease_seconds): skipped")
            return 77
        self.send_replica_flag = None
        for flag in ("send_replica_header", "send-replica-header"):
            if flag in helptext:
                self.send_replica_flag = "--send_replica_header"
        self.jobs = None
        self.start_api()
        self.start_writers()
        self.start_nginx()
        self.start_collectors()
        self.reload_nginx()
        for c in self.collectors:
            wait_for("collector %d healthy" % c.index, lambda c=c: self.probe(c.port), 30)
        log("up: API :%d, writers %s behind nginx :%d, collectors %s behind nginx :%d" % (
            self.api_port, self.writer_ports, self.writer_proxy_port, [c.port for c in self.collectors],
            self.collector_proxy_port))
        self.jobs = self.job_specs()
        t_start = time.monotonic()
        self.start_jobs()
        log("%d jobs started round-robin through the proxy" % len(self.jobs))
        if not self.args.no_chaos:
            self.run_chaos()
        self.wait_jobs()
        log("every `etlctl run` ended after %.1fs" % (time.monotonic() - t_start))
        self.check_states()
        self.check_tables()
        self.check_ownership()
        self.check_visible()
        self.check_proxy_log()
        for p in self.collectors + self.writers:
            self.note_peak(p)
        rows = sum(j.get("rows", 0) for j in self.jobs)
        log("peak RSS: collector %.0f MiB, writer %.0f MiB" % (self.peak["collector"], self.peak["writer"]))
        log("%d jobs, %d rows checked; %s" % (len(self.jobs), rows, self.proxy_summary))
        log("owner handovers seen in the API's log: %d; requests of a woken old owner (fenced): %d" % (
            self.handovers, self.stale))
        for job in self.jobs:
            log("  %-12s %-9s epoch %d owners %s" % (job["rota"], job.get("state"), job.get("epoch", 0),
                                                     brief(job.get("owners", []))))
        if self.failures:
            print("FAILED (seed %d): %d failure(s); logs in %s" % (self.args.seed, len(self.failures), self.work))
            return 1
        print("PASS (seed %d)" % self.args.seed)
        return 0

    def stop(self):
        for job in self.jobs or []:
            if job.get("runner") and job["runner"].poll() is None:
                job["runner"].kill()
                job["runner"].wait()
        for p in reversed(self.procs):
            p.stop()


def brief(items, keep=6):
    items = list(items)
    return str(items) if len(items) <= keep else "[%s, ... (%d)]" % (", ".join(map(str, items[:keep])), len(items))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin", help="directory of the built binaries")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("ETL_CHAOS_SEED", "0")) or
                    random.SystemRandom().randrange(1, 1 << 31))
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--min-pages", type=int, default=50)
    ap.add_argument("--max-pages", type=int, default=80)
    ap.add_argument("--slow-ms", type=int, default=250, help="each API page takes this long")
    ap.add_argument("--lease-seconds", type=float, default=4)
    ap.add_argument("--renew-seconds", type=float, default=1)
    ap.add_argument("--job-timeout", type=int, default=150, help="seconds every job has to end")
    ap.add_argument("--no-chaos", action="store_true", help="no kill, no SIGSTOP (to debug the harness)")
    ap.add_argument("--force", action="store_true", help="run even when the collector has no leases")
    ap.add_argument("--keep", action="store_true", help="keep the logs of a passing run")
    args = ap.parse_args()
    if shutil.which("nginx") is None:
        print("nginx not installed (scripts/setup installs it): skipped")
        sys.exit(77)
    if not os.environ.get("PGPORT"):
        print("no PostgreSQL configured: skipped")
        sys.exit(77)
    # A database of its own: its collectors claim every claimable job of their ledger, so they must not
    # see the jobs of tests running at the same time (nor those tests see these).
    own_db = "etl_chaos_%d_%d" % (os.getpid(), random.randrange(1 << 30))
    server_db = os.environ.get("PGDATABASE", "postgres")
    psql("CREATE DATABASE %s" % own_db)
    os.environ["PGDATABASE"] = own_db
    os.environ.pop("DATABASE_URL", None)  # The writers then use the PG* environment.
    t = ChaosTest(args)
    rc = 1
    try:
        rc = t.run()
    except Exception as e:  # noqa: BLE001 - any harness error fails the run with its message
        log("FAIL: %s: %s" % (type(e).__name__, e))
        rc = 1
    finally:
        t.stop()
    if rc == 1:
        for name in ("collector1", "collector2", "collector3", "writer1", "writer2"):
            p = os.path.join(t.work, name + ".log")
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    lines = f.readlines()
                print("---- last lines of %s.log" % name)
                print("".join(lines[-15:]), end="")
    if rc == 0 and not args.keep:
        shutil.rmtree(t.work, ignore_errors=True)
    os.environ["PGDATABASE"] = server_db
    subprocess.run(["psql", "-X", "-q", "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % own_db],
                   capture_output=True)
    print("wall time %.1fs" % (time.monotonic() - T0))
    sys.exit(rc)


if __name__ == "__main__":
    main()
