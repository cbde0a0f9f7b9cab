#!/usr/bin/env python3
"""The benchmark suite behind scripts/bench (see there for usage).

Every case runs against the same private PostgreSQL (started by scripts/bench) and the same records:
the sample API's orders, rendered once as static JSON pages that nginx serves from loopback, and the
very same records as a COPY file for `psql \\copy`. Each repetition gets a fresh database, fresh
writer/collector processes (so peak RSS is per case) and a CHECKPOINT before it starts.

Measured per repetition: wall time of the load (rows/s), CPU seconds of each process tree from
/proc (utime+stime, children included), peak RSS (VmHWM) of both services, and how busy the whole
machine's CPU was over the load (/proc/stat: all but idle and iowait). Reported: medians.
Every process started here is stopped here (finally blocks; SIGTERM/SIGINT end the run cleanly).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class Stopped(Exception):
    pass


def on_signal(signum, _frame):
    raise Stopped(f"signal {signum}")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ------------------------------------------------------------------------------------------------
# /proc accounting

def proc_children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def proc_cpu(pid):
    """utime+stime+cutime+cstime of one process, in seconds (0 when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / CLK_TCK
    except OSError:
        return 0.0


def machine_jiffies():
    """(busy, total) CPU jiffies of the whole machine from /proc/stat: busy is everything but idle
    and iowait, so busy / total over a run is how much of all cores the run kept working."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal, sum(v)


def busy_share(a, b):
    return (b[0] - a[0]) / max(1, b[1] - a[1])


def tree_cpu(pid):
    """CPU seconds of a process and all its live descendants; children that exited are in the
    parent's cutime/cstime once reaped, so deltas of this are exact for long-lived roots."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += proc_cpu(p)
        todo += proc_children(p)
    return total


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class WaitSampler:
    """Samples what the COPY backends of one database wait on (pg_stat_activity, every ~50 ms)
    while a load runs: "CPU" (running or runnable), a lock, I/O, or the client. With --pg-waits."""

    def __init__(self, env, db):
        self.counts = {}
        self.samples = 0
        self._stop = threading.Event()
        self._p = subprocess.Popen(["psql", "-X", "-At", "-d", "postgres"], env=env, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
        self._q = ("SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
                   f"WHERE datname = '{db}' AND state = 'active' AND query ILIKE 'copy%' "
                   "AND pid <> pg_backend_pid();\nSELECT 'end';\n")
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                self._p.stdin.write(self._q)
                self._p.stdin.flush()
                for line in self._p.stdout:
                    line = line.strip()
                    if line == "end":
                        break
                    if line:
                        self.counts[line] = self.counts.get(line, 0) + 1
                self.samples += 1
                self._stop.wait(0.05)
        except (OSError, ValueError):
            pass

    def stop(self):
        self._stop.set()
        self._t.join(10)
        self._p.kill()
        self._p.wait()
        total = sum(self.counts.values())
        return {"samples": self.samples, "copy_backends_avg": total / max(1, self.samples),
                "share": {k: v / max(1, total) for k, v in self.counts.items()}}


class Proc:
    """A child process with its log file, in a process group of its own; stop() ends the group
    (SIGTERM, then SIGKILL), so a --service-wrapper that forks (time, perf stat) leaves nothing
    behind."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.logf = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
        self.pid = self.p.pid
        self.rusage = None

    def _reap(self, flags):
        pid, status, ru = os.wait4(self.pid, flags)
        if pid == self.pid:
            self.rusage = ru
            self.p.returncode = os.waitstatus_to_exitcode(status)
            self.logf.close()
            return True
        return False

    def wait(self, timeout=None):
        """Exit code; raises TimeoutError when still running after `timeout` s."""
        deadline = None if timeout is None else time.time() + timeout
        while self.p.returncode is None and not self._reap(os.WNOHANG):
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout} s")
            time.sleep(0.02)
        return self.p.returncode

    def cpu_of_exited(self):
        return self.rusage.ru_utime + self.rusage.ru_stime if self.rusage else 0.0

    def running(self):
        return self.p.returncode is None and not self._reap(os.WNOHANG)

    def stop(self, grace=20):
        if not self.running():
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.wait(grace)
        except TimeoutError:
            os.killpg(self.pid, signal.SIGKILL)
            self.wait(10)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # Whatever the wrapper left in the group.
        except ProcessLookupError:
            pass


def wait_file(path, timeout=30, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                return f.read().strip()
        if proc is not None and not proc.running():
            raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
        time.sleep(0.05)
    raise TimeoutError(f"no {path} after {timeout} s")


# ------------------------------------------------------------------------------------------------
# The suite

class Suite:
    def __init__(self, args):
        self.a = args
        self.bin = os.path.join(args.build, "bin")
        self.work = args.work
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.procs = []  # Everything started and not yet stopped.
        self.postmaster = None if args.prepare_only else int(
            open(os.path.join(args.pg_dir, "data", "postmaster.pid")).readline())
        self.nginx = None
        self.api_port = None
        self.stall_port = None
        self.results = []  # One dict per case.
        self.db_seq = 0
        self.base_env = dict(os.environ)

    # ---- processes --------------------------------------------------------------------------
    def start(self, name, argv, env=None):
        p = Proc(name, argv, self.logs, env)
        self.procs.append(p)
        return p

    def stop(self, p):
        p.stop(grace=300 if self.a.service_wrapper else 20)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            try:
                p.stop(grace=5)
            except Exception as e:  # Keep stopping the others.
                log("stop", p.name, e)
        self.procs.clear()

    def psql(self, sql, db="postgres", env=None):
        e = dict(self.base_env if env is None else env)
        e["PGDATABASE"] = db
        r = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           env=e, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql[:60]}: {r.stderr.strip()}")
        return r.stdout.strip()

    # ---- data -------------------------------------------------------------------------------
    def render(self, records, page_size):
        name = f"r{records}_p{page_size}"
        d = os.path.join(self.a.data_dir, "pages", name)
        if not os.path.isdir(d):
            tmp = d + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            os.chmod(tmp, 0o755)
            log(f"rendering {records} records in pages of {page_size}")
            subprocess.run([os.path.join(self.bin, "bench_render_pages"), f"--dir={tmp}",
                            f"--records={records}", f"--page_size={page_size}"], check=True)
            os.rename(tmp, d)  # Complete sets only.
        return name

    def copy_files(self, records):
        whole = os.path.join(self.a.data_dir, f"rows_{records}.copy")
        halves = [whole + ".a", whole + ".b"]
        if not os.path.exists(halves[1]):
            log(f"dumping {records} records as COPY text")
            with open(whole, "wb") as f:
                subprocess.run([os.path.join(self.bin, "bench_dump_records"), f"--records={records}",
                                "--page_size=1000"], stdout=f, check=True)
            half = (records + 1) // 2
            with open(whole, "rb") as f, open(halves[0], "wb") as a, open(halves[1] + ".tmp", "wb") as b:
                for i, line in enumerate(f):
                    (a if i < half else b).write(line)
            os.rename(halves[1] + ".tmp", halves[1])  # Marks the set complete.
        return whole, halves

    def start_nginx(self):
        root = os.path.join(self.a.data_dir, "pages")
        os.makedirs(root, exist_ok=True)
        d = root
        while d != "/":  # nginx's workers (www-data when run as root) must reach the pages.
            if os.stat(d).st_mode & 0o005 != 0o005:
                raise SystemExit(f"{d} is not readable by others; use --data-dir elsewhere")
            d = os.path.dirname(d)
        tmp = os.path.join(self.work, "nginx_tmp")
        os.makedirs(tmp, exist_ok=True)
        os.chmod(self.work, 0o755)
        self.api_port, self.stall_port = free_port(), free_port()
        conf = os.path.join(self.work, "nginx.conf")
        user = "user www-data;" if os.getuid() == 0 else ""
        with open(conf, "w") as f:
            f.write(f"""{user}
daemon off;
worker_processes 2;
pid {self.work}/nginx.pid;
error_log {self.logs}/nginx_error.log warn;
events {{ worker_connections 1024; }}
http {{
  default_type application/json;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 120;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  # /SET/?page=N serves SET/N.json.
  server {{
    listen 127.0.0.1:{self.api_port};
    root {root};
    location ~ ^/(?<set>[a-z0-9_]+)/$ {{ try_files /$set/$arg_page.json =404; }}
  }}
  # The same on a port whose access log times every request (the stall case's fetch rate).
  server {{
    listen 127.0.0.1:{self.stall_port};
    root {root};
    access_log {self.logs}/stall_access.log;
    location ~ ^/(?<set>[a-z0-9_]+)/$ {{ try_files /$set/$arg_page.json =404; }}
  }}
}}
""")
        self.nginx = self.start("nginx", ["nginx", "-c", conf, "-e", f"{self.logs}/nginx_error.log"])
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.api_port), timeout=1).close()
                return
            except OSError:
                if not self.nginx.running():
                    break
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start; see {self.logs}/nginx_error.log")

    # ---- one repetition's environment --------------------------------------------------------
    def fresh_db(self):
        self.db_seq += 1
        db = f"bench{self.db_seq}"
        self.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {db}")
        self.psql("CHECKPOINT")
        env = dict(self.base_env)
        env["PGDATABASE"] = db
        env["DATABASE_URL"] = (f"postgresql://{env.get('PGUSER', 'postgres')}@{env['PGHOST']}:"
                               f"{env['PGPORT']}/{db}")
        return db, env

    def drop_db(self, db):
        self.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

    def start_services(self, env, writer_flags=(), collector_flags=()):
        wport = os.path.join(self.work, "writer.port")
        cport = os.path.join(self.work, "collector.port")
        for f in (wport, cport):
            if os.path.exists(f):
                os.remove(f)
        wrap = lambda name: [x.replace("{name}", name) for x in self.a.service_wrapper.split()]
        slow = 300 if self.a.service_wrapper else 30
        # A variant may name another writer binary (before/after comparisons in the same run).
        writer_bin = os.path.join(self.bin, "writer_server")
        for f in [f for f in writer_flags if f.startswith("--writer-bin=")]:
            writer_bin = f.split("=", 1)[1]
        writer_flags = [f for f in writer_flags if not f.startswith("--writer-bin=")]
        w = self.start("writer", [*wrap("writer"), writer_bin,
                                  "--listen=127.0.0.1:0", f"--port_file={wport}",
                                  *self.a.writer_flags.split(), *writer_flags], env)
        wp = wait_file(wport, timeout=slow, proc=w)
        c = self.start("collector", [*wrap("collector"), os.path.join(self.bin, "collector_server"),
                                     "--listen=127.0.0.1:0", f"--port_file={cport}",
                                     f"--writer=127.0.0.1:{wp}", "--allow-private-networks",
                                     *self.a.collector_flags.split(),
                                     *collector_flags], env)
        cp = wait_file(cport, timeout=slow, proc=c)
        return w, c, f"127.0.0.1:{cp}"

    def job_argv(self, collector, rota, pages, page_size, port=None, extra=()):
        return [os.path.join(self.bin, "etlctl"), f"--collector={collector}", "--plain", "run",
                "--cliente=bench", f"--rota={rota}",
                f"--url=http://127.0.0.1:{port or self.api_port}/{pages}/", "--pagination=page",
                f"--page-size={page_size}", "--records-path=/data", "--total-pages-path=/total_pages",
                *extra]

    # ---- measurement helpers -----------------------------------------------------------------
    def cpu_snapshot(self, named):
        snap = {k: tree_cpu(pid) for k, pid in named.items()}
        snap["postgres"] = tree_cpu(self.postmaster)
        if self.nginx:
            snap["nginx"] = tree_cpu(self.nginx.pid)
        return snap

    @staticmethod
    def cpu_delta(a, b):
        return {k: max(0.0, b[k] - a.get(k, 0.0)) for k in b}

    def record(self, case, records, reps_data, extra=None):
        rates = [r["rate"] for r in reps_data]
        cpu = {}
        for k in reps_data[0]["cpu"]:
            cpu[k] = statistics.median(r["cpu"][k] for r in reps_data) / (records / 1e6)
        rss = {}
        for k in ("writer", "collector"):
            vals = [r["rss"].get(k) for r in reps_data if r["rss"].get(k)]
            if vals:
                rss[k] = max(vals)
        busy = [r["busy"] for r in reps_data if "busy" in r]
        res = {"case": case, "records": records, "rate": statistics.median(rates), "rates": rates,
               "cpu_per_1m": cpu, "peak_rss_mib": rss,
               "machine_busy": statistics.median(busy) if busy else None,
               "pg_waits": next((r["waits"] for r in reps_data if r.get("waits")), None)}
        if extra:
            res.update(extra)
        self.results.append(res)
        log(f"{case} @ {records}: {res['rate']:.0f} rows/s (runs {[round(x) for x in rates]}) "
            f"cpu/1M {({k: round(v, 1) for k, v in cpu.items()})} rss {rss}")
        return res

    # ---- cases ------------------------------------------------------------------------------
    def case_copy(self, records, sessions):
        whole, halves = self.copy_files(records)
        files = [whole] if sessions == 1 else halves
        reps = []
        for _ in range(self.a.reps):
            db, env = self.fresh_db()
            # The writer's own DDL (writer_service/pg_schema.cc RawTableDdl), cached id sequence
            # included: the same table for both.
            self.psql("CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1000) PRIMARY KEY,"
                      " payload jsonb NOT NULL, natural_key text,"
                      " job_id text NOT NULL, page_number bigint NOT NULL,"
                      " collected_at timestamptz NOT NULL DEFAULT now())", db)
            before = self.cpu_snapshot({})
            jif = machine_jiffies()
            waits = WaitSampler(env, db) if self.a.pg_waits else None
            t0 = time.time()
            ps = [self.start(f"psql{i}", ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                          f"\\copy t (payload, job_id, page_number) FROM '{f}'"], env)
                  for i, f in enumerate(files)]
            for p in ps:
                if p.wait(3600) != 0:
                    raise RuntimeError(f"\\copy failed; see {p.log_path}")
                self.procs.remove(p)
            dt = time.time() - t0
            busy = busy_share(jif, machine_jiffies())
            waits = waits.stop() if waits else None
            cpu = self.cpu_delta(before, self.cpu_snapshot({}))
            cpu["client"] = sum(p.cpu_of_exited() for p in ps)
            n = int(self.psql("SELECT count(*) FROM t", db))
            if n != records:
                raise RuntimeError(f"\\copy loaded {n} of {records}")
            reps.append({"rate": records / dt, "cpu": cpu, "rss": {}, "busy": busy, "waits": waits})
            self.drop_db(db)
        return self.record(f"copy_{sessions}", records, reps)

    def case_seed(self, records):
        pages = self.render(records, 1000)
        reps = []
        for _ in range(self.a.reps):
            db, env = self.fresh_db()
            before = self.cpu_snapshot({})
            jif = machine_jiffies()
            t0 = time.time()
            p = self.start("seed", [os.path.join(self.bin, "bench_writer"), "--mode=seed",
                                    f"--url=http://127.0.0.1:{self.api_port}/{pages}/", "--table=t"], env)
            if p.wait(7200) != 0:
                raise RuntimeError(f"seed failed; see {p.log_path}")
            self.procs.remove(p)
            dt = time.time() - t0
            busy = busy_share(jif, machine_jiffies())
            cpu = self.cpu_delta(before, self.cpu_snapshot({}))
            cpu["client"] = p.cpu_of_exited()
            n = int(self.psql("SELECT count(*) FROM t", db))
            if n != records:
                raise RuntimeError(f"seed loaded {n} of {records}")
            reps.append({"rate": records / dt, "cpu": cpu, "rss": {}, "busy": busy})
            self.drop_db(db)
        return self.record("seed", records, reps)

    def run_pipeline(self, case, records, page_size, jobs=1, writer_flags=(), collector_flags=(),
                     job_flags=(), reps=None, during=None):
        """`jobs` concurrent jobs of records/jobs each (tables rota j0..), timed together."""
        per_job = records // jobs
        pages = self.render(per_job, page_size)
        out = []
        for _ in range(reps or self.a.reps):
            db, env = self.fresh_db()
            w, c, addr = self.start_services(env, writer_flags, collector_flags)
            try:
                before = self.cpu_snapshot({"writer": w.pid, "collector": c.pid})
                jif = machine_jiffies()
                waits = WaitSampler(env, db) if self.a.pg_waits else None
                t0 = time.time()
                runs = [self.start(f"etlctl{j}", self.job_argv(addr, f"j{j}", pages, page_size,
                                                               extra=job_flags), env)
                        for j in range(jobs)]
                extra = during(w, c, db, env) if during else None
                for r in runs:
                    if r.wait(7200) != 0:
                        with open(r.log_path, errors="replace") as f:
                            tail = "".join(f.readlines()[-5:])
                        raise RuntimeError(f"{case}: job failed; see {r.log_path}; it ends:\n{tail}")
                    self.procs.remove(r)
                dt = time.time() - t0
                busy = busy_share(jif, machine_jiffies())
                waits = waits.stop() if waits else None
                cpu = self.cpu_delta(before, self.cpu_snapshot({"writer": w.pid, "collector": c.pid}))
                cpu["client"] = sum(r.cpu_of_exited() for r in runs)
                rss = {"writer": status_kib(w.pid, "VmHWM") / 1024,
                       "collector": status_kib(c.pid, "VmHWM") / 1024}
            finally:
                self.stop(c)
                self.stop(w)
            for j in range(jobs):
                t = f"dados_raw_cliente_bench_j{j}"
                n, d = self.psql(f"SELECT count(*), count(DISTINCT payload->>'id') FROM {t}", db).split("|")
                if int(n) != per_job or int(d) != per_job:
                    raise RuntimeError(f"{case}: {t} holds {n} rows, {d} distinct; expected {per_job}")
            out.append({"rate": per_job * jobs / dt, "cpu": cpu, "rss": rss, "extra": extra,
                        "busy": busy, "waits": waits})
            self.drop_db(db)
        return out

    def case_pipeline(self, case, records, page_size, **kw):
        reps = self.run_pipeline(case, records, page_size, **kw)
        return self.record(case, records, reps, {"page_size": page_size})

    def case_variants(self, records, page_size, variants, jobs=1):
        """Writer variants side by side: repetitions interleaved (v1, v2, ..., v1, v2, ...) so that a
        change of the machine's load hits every variant alike."""
        reps = {name: [] for name, _ in variants}
        for _ in range(self.a.reps):
            for name, flags in variants:
                job_flags = []
                if "--write-mode=merge" in flags:
                    flags = [f for f in flags if f != "--write-mode=merge"]
                    job_flags = ["--write-mode=merge", "--id-path=/id"]
                reps[name] += self.run_pipeline(name, records, page_size, jobs=jobs,
                                                writer_flags=flags, job_flags=job_flags, reps=1)
        for name, _ in variants:
            self.record(name, records, reps[name], {"page_size": page_size})

    def write_mode_known(self):
        r = subprocess.run([os.path.join(self.bin, "etlctl"), "--help"], capture_output=True,
                           text=True)
        return "write-mode" in (r.stdout + r.stderr) or "write_mode" in (r.stdout + r.stderr)

    def case_stall(self, records):
        """A job whose table is locked for 10 s once a fifth of it is committed: the fetch rate at the
        API must drop to 0 (backpressure) and both services' RSS stay flat."""
        pages = self.render(records, 1000)
        access = os.path.join(self.logs, "stall_access.log")
        samples = []

        def during(w, c, db, env):
            table = "dados_raw_cliente_bench_j0"
            deadline = time.time() + 600
            while time.time() < deadline:
                try:
                    if int(self.psql(f"SELECT count(*) FROM {table}", db)) >= records // 5:
                        break
                except RuntimeError:
                    pass  # Table not created yet.
                time.sleep(0.2)
            locker = self.start("locker", ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                           f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; "
                                           "SELECT pg_sleep(10); COMMIT;"], env)
            t_lock = time.time()
            while locker.running():
                samples.append((time.time() - t_lock, line_count(access),
                                status_kib(c.pid, "VmRSS") / 1024, status_kib(w.pid, "VmRSS") / 1024))
                time.sleep(0.5)
            locker.wait(5)
            self.procs.remove(locker)
            return samples

        def line_count(path):
            try:
                with open(path, "rb") as f:
                    return sum(1 for _ in f)
            except OSError:
                return 0

        orig = self.api_port
        self.api_port = self.stall_port
        try:
            reps = self.run_pipeline("stall", records, 1000, reps=1, during=during)
        finally:
            self.api_port = orig
        s = reps[0]["extra"]
        # Requests in the last 5 s of the lock (the writer's queue fills within the first seconds).
        late = [x for x in s if x[0] >= 5]
        fetched_late = late[-1][1] - late[0][1] if len(late) >= 2 else None
        span = late[-1][0] - late[0][0] if len(late) >= 2 else 0
        res = self.record("stall", records, reps, {
            "page_size": 1000,
            "stall_pages_fetched_last_5s": fetched_late, "stall_window_s": round(span, 1),
            "stall_pages_fetched_at_lock": s[0][1] if s else None,
            "stall_total_pages": (records + 999) // 1000,
            "stall_collector_rss_mib": [round(min(x[2] for x in s)), round(max(x[2] for x in s))],
            "stall_writer_rss_mib": [round(min(x[3] for x in s)), round(max(x[3] for x in s))],
            "stall_samples": s})
        return res

    # ---- report -----------------------------------------------------------------------------
    def report(self):
        lines = []
        find = {(r["case"], r["records"]): r for r in self.results}
        procs = ["collector", "writer", "postgres", "nginx", "client"]
        lines.append("| case | records | page | rows/s (median) | runs | " +
                     " | ".join(f"CPU s/1M {p}" for p in procs) +
                     " | machine CPU busy | peak RSS collector / writer MiB |")
        lines.append("|" + "---|" * (7 + len(procs)))
        for r in self.results:
            rss = r["peak_rss_mib"]
            lines.append(
                f"| {r['case']} | {r['records']:,} | {r.get('page_size', '')} | {r['rate']:,.0f} | "
                f"{' / '.join(f'{x / 1000:.0f}k' for x in r['rates'])} | " +
                " | ".join(f"{r['cpu_per_1m'].get(p, 0):.1f}" for p in procs) + " | " +
                (f"{100 * r['machine_busy']:.0f}%" if r.get("machine_busy") is not None else "") +
                " | " + (f"{rss.get('collector', 0):.0f} / {rss.get('writer', 0):.0f}" if rss else "") + " |")
        lines.append("")
        for r in self.results:
            w = r.get("pg_waits")
            if not w:
                continue
            top = sorted(w["share"].items(), key=lambda kv: -kv[1])[:6]
            lines.append(f"- {r['case']} @ {r['records']:,}: COPY backends active on average "
                         f"{w['copy_backends_avg']:.2f}; their time: " +
                         ", ".join(f"{k} {100 * v:.0f}%" for k, v in top) +
                         f" ({w['samples']} samples)")
        n = self.a.records[0]

        def ratio(a, b, target):
            ra, rb = find.get((a, n)), find.get((b, n))
            if ra and rb:
                v = ra["rate"] / rb["rate"]
                mark = "" if target is None else (" (met)" if v >= target else f" (MISSED: target {target})")
                lines.append(f"- {a} / {b} = {v:.2f}{mark}")

        ratio("default_p1000", "copy_1", 1.3)
        ratio("default_p1000", "copy_2", 0.9)
        ratio("tuned", "copy_1", 1.3)
        ratio("default_p1000", "seed", 4.0)
        ratio("merge", "default_p1000", 0.6)
        ratio("jobs8", "copy_2", 0.9)
        j8 = find.get(("jobs8", n))
        if j8:
            rss = j8["peak_rss_mib"]
            ok = all(v <= 64 for v in rss.values())
            lines.append(f"- jobs8 peak RSS collector {rss.get('collector', 0):.0f} MiB, writer "
                         f"{rss.get('writer', 0):.0f} MiB ({'met' if ok else 'MISSED'}: target <= 64 MiB each)")
        st = find.get(("stall", n)) or next((r for r in self.results if r["case"] == "stall"), None)
        if st:
            lines.append(f"- stall: table locked after {st['stall_pages_fetched_at_lock']} of "
                         f"{st['stall_total_pages']} pages were fetched; "
                         f"{st['stall_pages_fetched_last_5s']} pages fetched in the last "
                         f"{st['stall_window_s']} s of a 10 s table lock; RSS during the lock collector "
                         f"{st['stall_collector_rss_mib']} MiB, writer {st['stall_writer_rss_mib']} MiB")
        for r in self.results:
            if r["case"].startswith("default") and r["records"] != n:
                base = find.get((r["case"], n))
                if base:
                    lines.append(f"- {r['case']} at {r['records']:,}: peak RSS {r['peak_rss_mib']} vs "
                                 f"{base['peak_rss_mib']} at {n:,} (flat = same)")
        return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--pg-dir", required=True)
    ap.add_argument("--quick", action="store_true", help="200k records, 1 repetition, pages of 1,000")
    ap.add_argument("--records", default="1000000,5000000",
                    help="comma list; every case runs at the first, --big-cases at the others")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cases", default="copy_1,copy_2,default,tuned,seed,merge,jobs8,stall")
    ap.add_argument("--big-cases", default="copy_1,default")
    ap.add_argument("--page-sizes", default="100,1000,10000", help="for the default case")
    ap.add_argument("--writer-flags", default="", help="extra writer_server flags for every case")
    ap.add_argument("--collector-flags", default="", help="extra collector_server flags for every case")
    ap.add_argument("--tuned-writer-flags", default="")
    ap.add_argument("--tuned-collector-flags", default="")
    ap.add_argument("--tuned-job-flags", default="--fetch-concurrency=8")
    ap.add_argument("--variants", default="",
                    help="case 'variants': 'NAME=WRITER FLAGS;NAME=...' run interleaved with pages "
                         "of 1,000; a flag --writer-bin=PATH runs another writer binary, "
                         "--write-mode=merge the job in merge mode; NAME ending in _jobs8 runs 8 "
                         "concurrent jobs")
    ap.add_argument("--service-wrapper", default="",
                    help="command prefix for both services, {name} = writer|collector, e.g. "
                         "'valgrind --tool=callgrind --callgrind-out-file=/tmp/{name}.cg'")
    ap.add_argument("--data-dir", default="",
                    help="rendered pages and COPY files, kept between runs (default BUILD/bench-data)")
    ap.add_argument("--pg-waits", action="store_true",
                    help="sample what the COPY backends wait on (pg_stat_activity) and report it")
    ap.add_argument("--prepare-only", action="store_true", help="render the data and stop")
    ap.add_argument("--out", default="", help="also write the report (markdown) and raw JSON here")
    a = ap.parse_args()
    if a.quick:
        a.records, a.reps, a.page_sizes = "200000", 1, "1000"
    a.records = [int(x) for x in a.records.split(",") if x]
    a.data_dir = os.path.abspath(a.data_dir or os.path.join(a.build, "bench-data"))
    os.makedirs(a.data_dir, exist_ok=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    s = Suite(a)
    started = time.time()
    try:
        if not a.prepare_only:
            s.start_nginx()
        for i, n in enumerate(a.records):
            cases = a.cases.split(",") if i == 0 else [c for c in a.big_cases.split(",")
                                                        if c in a.cases.split(",")]
            page_sizes = [int(x) for x in a.page_sizes.split(",")] if i == 0 else [1000]
            if a.prepare_only:
                if "copy_1" in cases or "copy_2" in cases:
                    s.copy_files(n)
                for ps in page_sizes if "default" in cases else []:
                    s.render(n, ps)
                if set(cases) & {"tuned", "seed", "merge", "stall"}:
                    s.render(n, 1000)
                if "jobs8" in cases:
                    s.render(n // 8, 1000)
                continue
            for case in cases:
                if case in ("copy_1", "copy_2"):
                    s.case_copy(n, int(case[-1]))
                elif case == "default":
                    for ps in page_sizes:
                        s.case_pipeline(f"default_p{ps}", n, ps)
                elif case == "tuned":
                    s.case_pipeline("tuned", n, 1000, writer_flags=a.tuned_writer_flags.split(),
                                    collector_flags=a.tuned_collector_flags.split(),
                                    job_flags=a.tuned_job_flags.split())
                elif case == "seed":
                    s.case_seed(n)
                elif case == "merge":
                    if not s.write_mode_known():
                        log("merge: SKIPPED (etlctl has no --write-mode yet)")
                        s.results.append({"case": "merge (skipped: no --write-mode)", "records": n,
                                          "rate": 0, "rates": [], "cpu_per_1m": {}, "peak_rss_mib": {}})
                        continue
                    s.case_pipeline("merge", n, 1000, job_flags=["--write-mode=merge", "--id-path=/id"])
                elif case == "jobs8":
                    s.case_pipeline("jobs8", n, 1000, jobs=8)
                elif case == "stall":
                    s.case_stall(n)
                elif case == "variants":
                    vs = [v.split("=", 1) for v in a.variants.split(";") if v.strip()]
                    vs = [(name.strip(), flags.split()) for name, flags in vs]
                    for jobs in (1, 8):
                        group = [v for v in vs if v[0].endswith("_jobs8") == (jobs == 8)]
                        if group:
                            s.case_variants(n, 1000, group, jobs=jobs)
                else:
                    raise SystemExit(f"unknown case {case}")
    finally:
        s.stop_all()
    if a.prepare_only:
        return
    rep = s.report()
    header = (f"scripts/bench {' '.join(sys.argv[1:])}\nrecords {a.records}, {a.reps} repetition(s), "
              f"{time.time() - started:.0f} s, load average at end {os.getloadavg()[0]:.1f}\n")
    print("\n" + header + "\n" + rep)
    if a.out:
        with open(a.out, "w") as f:
            f.write(header + "\n" + rep + "\n")
        with open(a.out + ".json", "w") as f:
            json.dump(s.results, f, indent=1)


if __name__ == "__main__":
    main()
