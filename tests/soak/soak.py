#!/usr/bin/env python3
"""Soak: jobs of every pagination style run continuously while a chaos loop breaks things.

Started by scripts/soak, which builds, starts a private PostgreSQL and exports PG* / DATABASE_URL and
SOAK_PG_DIR. This script starts the sample API, writer_server and collector_server (fixed loopback ports so
restarted services come back where their peers expect them), then for --minutes:
  * keeps --jobs jobs in flight (page, offset, cursor, link, next_url, none), each into its own table, with
    API faults injected through the sample API's query parameters (503s, 429 + Retry-After, truncated bodies
    and connections; some indexed jobs have pages that always fail and must end PARTIAL listing exactly them)
    and, for a share of the jobs (--hostile), one hostile answer: page sizes capped below the requested size
    (the job must still load everything), records with invalid UTF-8 or that are not objects (dead letters,
    the rest loaded), or a cursor / next URL that points back at its own page (the job must not succeed);
  * every few seconds one chaos action: kill -9 of the writer or a collector (restarted), an immediate
    PostgreSQL restart, an ACCESS EXCLUSIVE lock on a job's table for a while, SIGSTOP/SIGCONT of the writer,
    SIGSTOP of a collector for longer than its lease (with --collectors > 1), or a cancel of a running job;
  * samples the services' RSS.
Every job is checked as soon as it reaches a final state (and the rest after the chaos stops):
  * SUCCEEDED: the table holds exactly the API's records (jsonb compared both ways, duplicates counted), less
    the records refused on purpose, which are in etl_dead_letters exactly once each;
  * PARTIAL: failed pages == the injected always-failing pages, and the table holds exactly the rest;
  * CANCELLED: no duplicate and nothing that the API did not serve;
  * a job whose API loops: FAILED or PARTIAL with an error, and nothing wrong in its table;
  * any other FAILED job, or one still running: a failure of the soak.
and that RSS stayed flat (last third vs first third). Exit 0 only when every check passed.
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

STYLES = ["page", "offset", "cursor", "link", "next_url", "none"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def psql(sql, check=True):
    r = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("psql: %s: %s" % (sql[:80], r.stderr.strip()))
    return r.stdout.strip()


def psql_retry(sql, seconds=120):
    deadline = time.time() + seconds
    while True:
        try:
            return psql(sql)
        except RuntimeError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


class Service:
    """One restartable child process on a fixed port."""

    def __init__(self, name, argv, logdir, env=None):
        self.name, self.argv, self.env = name, argv, env
        self.log = open(os.path.join(logdir, name + ".log"), "ab")
        self.proc = None
        self.starts = 0
        self.lock = threading.Lock()

    def start(self):
        with self.lock:
            self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
            self.starts += 1

    def pid(self):
        with self.lock:
            return self.proc.pid if self.proc and self.proc.poll() is None else None

    def kill9(self):
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def signal(self, sig):
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(sig)

    def ensure_running(self):
        with self.lock:
            dead = self.proc is None or self.proc.poll() is not None
        if dead:
            self.start()

    def stop(self):
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


def brief(items, keep=8):
    """A list for a message: the first few items and how many there are."""
    items = list(items)
    if len(items) <= keep:
        return str(items)
    return "[%s, ... (%d in all)]" % (", ".join(map(str, items[:keep])), len(items))


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class Soak:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(os.path.join(args.build, "bin"))
        self.work = tempfile.mkdtemp(prefix="etl-soak-")
        self.rng = random.Random(args.seed)
        self.api_port = free_port()
        self.writer_port = free_port()
        self.collector_ports = [free_port() for _ in range(max(1, args.collectors))]
        self.jobs = []  # dicts: id, rota, style, total, page_size, always_fail, state, ...
        self.rss = {}
        self.chaos_counts = {}
        self.start_failures = 0
        self.counter = 0
        self.lock = threading.Lock()  # guards job["verdict"] / job["checking"] between the loop and checker
        self.check_queue = []
        self.check_wake = threading.Condition(self.lock)
        self.checker_stop = False

    # ---------------------------------------------------------------- services
    def collector_flags(self):
        flags = []
        helptext = subprocess.run([os.path.join(self.bin, "collector_server"), "--help"],
                                  capture_output=True, text=True).stdout
        if "allow-private-networks" in helptext or "allow_private_networks" in helptext:
            flags.append("--allow_private_networks")  # The sample API listens on loopback.
        if len(self.collector_ports) > 1 and "lease" in helptext:
            flags += ["--lease-seconds=%d" % self.args.lease_seconds,
                      "--lease-renew-seconds=%g" % max(1, self.args.lease_seconds / 5)]
        return flags

    def start_services(self):
        self.api = Service("sample_api", [os.path.join(self.bin, "sample_api"),
                                          "--listen=127.0.0.1:%d" % self.api_port, "--threads=64"], self.work)
        self.writer = Service("writer", [os.path.join(self.bin, "writer_server"),
                                         "--listen=127.0.0.1:%d" % self.writer_port], self.work)
        flags = self.collector_flags()
        self.collectors = [
            Service("collector%d" % (i + 1) if len(self.collector_ports) > 1 else "collector",
                    [os.path.join(self.bin, "collector_server"), "--listen=127.0.0.1:%d" % port,
                     "--writer=127.0.0.1:%d" % self.writer_port] + flags, self.work)
            for i, port in enumerate(self.collector_ports)]
        for s in [self.api, self.writer] + self.collectors:
            s.start()
        self.wait_healthy()

    def services(self):
        return [self.writer] + self.collectors

    def wait_healthy(self, seconds=60):
        probe = os.path.join(self.bin, "etl_health_probe")
        deadline = time.time() + seconds
        for port in [self.writer_port] + self.collector_ports:
            while subprocess.run([probe, "--addr=127.0.0.1:%d" % port], capture_output=True).returncode != 0:
                if time.time() > deadline:
                    raise RuntimeError("service on port %d not healthy" % port)
                time.sleep(0.2)

    # ---------------------------------------------------------------- jobs
    def etlctl(self, *argv, timeout=60, port=None):
        if port is None:
            port = self.rng.choice(self.collector_ports)
        try:
            return subprocess.run([os.path.join(self.bin, "etlctl"), "--collector=127.0.0.1:%d" % port]
                                  + list(argv), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", "etlctl timed out after %ds" % timeout)

    def new_job_spec(self):
        self.counter += 1
        style = STYLES[self.counter % len(STYLES)]
        rota = "soak_%s_%d" % (style, self.counter)
        total = self.rng.choice([20000, 50000, 100000])
        page_size = self.rng.choice([100, 250, 1000])
        if style == "none":
            page_size = 0
            total = 20000  # One body with every record: stay under the collector's 8 MiB response limit.
        pages = max(1, (total + page_size - 1) // page_size) if page_size else 1
        params = ["total=%d" % total, "fault_seed=%d" % self.counter]
        always_fail = []
        hostile = None
        if self.rng.random() < self.args.hostile:
            kinds = ["bad_utf8", "non_object"]
            if style in ("page", "offset", "cursor") and page_size >= 100:
                kinds.append("cap")
            if style in ("cursor", "next_url", "link") and pages > 4:
                kinds.append("loop")
            hostile = self.rng.choice(kinds)
        if style != "none":
            picks = sorted(self.rng.sample(range(1, pages + 1), min(3, pages)))
            params += ["fail_pages=%d" % picks[0], "fail_times=2", "fail_status=503"]
            if len(picks) > 1:
                params += ["rate_limit_pages=%d" % picks[1], "rate_limit_times=1", "retry_after=1"]
            if len(picks) > 2:
                params += ["truncate_pages=%d" % picks[2], "truncate_times=1",
                           "truncate_mode=%s" % self.rng.choice(["json", "conn"])]
            if (style in ("page", "offset") and pages > 4 and hostile != "cap"
                    and self.rng.random() < 0.4):
                always_fail = [self.rng.choice([p for p in range(1, pages + 1) if p not in picks])]
                params += ["always_fail_pages=%d" % always_fail[0], "always_fail_status=500"]
        refused_ids = []
        if hostile in ("bad_utf8", "non_object"):
            ps = page_size or total
            while len(refused_ids) < self.rng.choice([1, 2]):
                i = self.rng.randint(1, total)
                if (i - 1) // ps + 1 not in always_fail and i not in refused_ids:
                    refused_ids.append(i)
            params.append("%s_ids=%s" % (hostile, ",".join(map(str, sorted(refused_ids)))))
        elif hostile == "cap":
            params.append("cap_page_size=%d" % (page_size // self.rng.choice([2, 3, 4, 10])))
        elif hostile == "loop":
            params.append("loop_pages=%d" % self.rng.randint(2, pages - 2))
        url = "http://127.0.0.1:%d/v1/clientes/soak/%s/%s" % (self.api_port, rota, style)
        argv = ["run", "--detach", "--cliente=soak", "--rota=" + rota, "--url=" + url,
                "--pagination=" + style, "--records-path=/data", "--id-path=/id",
                # Append (not the default merge with --id-path): a duplicate must stay visible.
                "--write-mode=append", "--backoff-scale=0.05", "--max-attempts=4"]
        if page_size:
            argv.append("--page-size=%d" % page_size)
        if style == "page":
            argv.append("--total-pages-path=/total_pages")
        elif style == "offset":
            argv.append("--total-count-path=/total")
        elif style == "cursor":
            argv.append("--cursor-path=/next_cursor")
        elif style == "next_url":
            argv.append("--next-url-path=/next")
        for p in params:
            argv.append("--param=" + p)
        return dict(rota=rota, style=style, total=total, page_size=page_size, always_fail=always_fail,
                    hostile=hostile, refused_ids=refused_ids, argv=argv, id=None, cancelled=False,
                    state=None)

    def start_job(self):
        job = self.new_job_spec()
        r = self.etlctl(*job["argv"])
        if r.returncode == 0:
            job["id"] = r.stdout.strip() or None
        else:
            self.start_failures += 1
            job["start_error"] = (r.stderr or r.stdout).strip()[:200]
        with self.lock:
            self.jobs.append(job)
        log("start", job["rota"], job["hostile"] or "", job["id"] or ("(start failed: %s)" % job.get("start_error")))

    def list_jobs(self):
        r = self.etlctl("list", "--json", "--limit=1000", timeout=30)
        try:
            data = json.loads(r.stdout)
        except ValueError:
            return None
        return data.get("jobs", [])

    def refresh_states(self):
        listed = self.list_jobs()
        if listed is None:
            return False
        by_table = {}
        for j in listed:
            by_table.setdefault(j.get("table_name", ""), []).append(j)
        with self.lock:
            for job in self.jobs:
                table = "dados_raw_cliente_soak_" + job["rota"]
                found = by_table.get(table, [])
                if job["id"] is None and found:
                    # The client was told the start failed but a job exists: it must not run.
                    job["id"] = found[0]["job_id"]
                    job["start_failed_but_registered"] = True
                for j in found:
                    if j["job_id"] == job["id"]:
                        job["state"] = j.get("state")
                        job["record"] = j
                if job["id"] and job["state"] in FINAL and "verdict" not in job and not job.get("queued"):
                    job["queued"] = True
                    self.check_queue.append(job)
                    self.check_wake.notify()
        return True

    def running(self):
        with self.lock:
            return [j for j in self.jobs if j["id"] and j["state"] not in FINAL]

    # ---------------------------------------------------------------- chaos
    def chaos_once(self):
        actions = ["kill_writer", "kill_collector", "restart_pg", "lock_table", "stop_writer", "cancel",
                   "kill_writer", "kill_collector"]
        if len(self.collectors) > 1:
            actions.append("stop_collector")
        action = self.rng.choice(actions)
        self.chaos_counts[action] = self.chaos_counts.get(action, 0) + 1
        log("chaos:", action)
        if action == "kill_writer":
            self.writer.kill9()
            time.sleep(self.rng.uniform(0, 2))
            self.writer.start()
        elif action == "kill_collector":
            victim = self.rng.choice(self.collectors)
            victim.kill9()
            time.sleep(self.rng.uniform(0, 2))
            victim.start()
        elif action == "stop_collector":
            # Paused past its lease: another collector takes its jobs over; when it wakes up, the writer
            # must refuse whatever it still sends under its old epoch.
            victim = self.rng.choice(self.collectors)
            victim.signal(signal.SIGSTOP)
            time.sleep(self.args.lease_seconds + self.rng.uniform(2, 6))
            victim.signal(signal.SIGCONT)
        elif action == "restart_pg":
            pg_bin = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
            pg_dir = os.environ["SOAK_PG_DIR"]
            # -l: the restarted server must not inherit our pipes (pg_ctl would never see EOF).
            cmd = [os.path.join(pg_bin, "pg_ctl"), "-D", os.path.join(pg_dir, "data"), "-l",
                   os.path.join(pg_dir, "server.log"), "-m", "immediate", "-w", "-t", "60", "restart"]
            if os.getuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--"] + cmd
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=120)
        elif action == "lock_table":
            cands = self.running()
            if cands:
                table = "dados_raw_cliente_soak_" + self.rng.choice(cands)["rota"]
                secs = self.rng.uniform(2, 10)
                subprocess.Popen(["psql", "-X", "-q", "-c",
                                  "BEGIN; LOCK TABLE IF EXISTS %s IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(%.1f); "
                                  "COMMIT;" % (table, secs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif action == "stop_writer":
            self.writer.signal(signal.SIGSTOP)
            time.sleep(self.rng.uniform(1, 6))
            self.writer.signal(signal.SIGCONT)
        elif action == "cancel":
            cands = self.running()
            if cands:
                job = self.rng.choice(cands)
                r = self.etlctl("cancel", job["id"], timeout=60)
                if r.returncode in (0, 1):
                    job["cancelled"] = True

    def sample_rss(self):
        for svc in self.services():
            pid = svc.pid()
            if pid:
                v = rss_mib(pid)
                if v is not None:
                    self.rss.setdefault(svc.name, []).append((time.time(), v))

    # ---------------------------------------------------------------- checks
    def expected_records(self, job):
        """Every record the API serves for this collection, in order (page i = records[i*ps:(i+1)*ps])."""
        url = "http://127.0.0.1:%d/v1/clientes/soak/%s/none?total=%d" % (self.api_port, job["rota"], job["total"])
        with urllib.request.urlopen(url, timeout=60) as resp:
            records = json.loads(resp.read())["data"]
        return records

    def check_job(self, job):
        """None when the job's final state and table are right, else what is wrong. Raises RuntimeError when
        the check itself could not run (PostgreSQL restarting): the caller tries again later."""
        table = "dados_raw_cliente_soak_" + job["rota"]
        scratch = "soak_expected_%d" % threading.get_ident()
        state = job["state"]
        rec = job.get("record", {})
        records = self.expected_records(job)
        missing_pages = []
        if state == "PARTIAL":
            missing_pages = sorted(int(p.get("page_number", 0)) for p in rec.get("failed_pages", []))
        refused = set(job["refused_ids"])
        # Expected rows: every record, less those of pages listed as failed (page_number is 0-based) and
        # those refused on purpose (dead letters).
        ps = job["page_size"] or len(records) or 1
        expected = [r for i, r in enumerate(records)
                    if (i // ps) not in missing_pages and r.get("id") not in refused]
        exp_file = os.path.join(self.work, "expected_%s.copy" % job["rota"])
        with open(exp_file, "w") as f:
            for r in expected:
                f.write(json.dumps(r, ensure_ascii=False).replace("\\", "\\\\") + "\n")
        try:
            psql("DROP TABLE IF EXISTS %s; CREATE UNLOGGED TABLE %s (payload jsonb)" % (scratch, scratch))
            r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                "\\copy %s (payload) FROM '%s'" % (scratch, exp_file)], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise RuntimeError("could not load expected records: " + r.stderr.strip())
            exists = psql("SELECT to_regclass('%s') IS NOT NULL" % table) == "t"
            counts = psql("""
                SELECT (SELECT count(*) FROM %(t)s),
                       (SELECT count(*) - count(DISTINCT payload) FROM %(t)s),
                       (SELECT count(*) FROM (SELECT payload FROM %(t)s EXCEPT ALL SELECT payload FROM %(s)s) x),
                       (SELECT count(*) FROM (SELECT payload FROM %(s)s EXCEPT ALL SELECT payload FROM %(t)s) x)
                """ % {"t": table, "s": scratch}) if exists else "0|0|0|%d" % len(expected)
            rows, dups, extra, lacking = (int(v) for v in counts.split("|"))
            dead = int(psql("SELECT count(*) FROM etl_dead_letters WHERE job_id = '%s'" % job["id"]))
        finally:
            psql("DROP TABLE IF EXISTS %s" % scratch, check=False)
            os.unlink(exp_file)
        job["rows"] = rows
        if job["hostile"] == "loop":
            if state == "SUCCEEDED":
                return "SUCCEEDED although its API points back at a page it already served"
            if state in ("FAILED", "PARTIAL") and not rec.get("error"):
                return "%s without an error message" % state
            if dups or extra:
                return "%s table has dups=%d extra=%d" % (state, dups, extra)
            return None
        if state == "SUCCEEDED":
            if rows != len(expected) or extra or lacking or dups:
                return "SUCCEEDED but rows=%d expected=%d extra=%d lacking=%d dups=%d" % (
                    rows, len(expected), extra, lacking, dups)
        elif state == "PARTIAL":
            want = sorted(p - 1 for p in job["always_fail"])
            if missing_pages != want:
                return "PARTIAL lists pages %s, expected %s" % (brief(missing_pages), want)
            if extra or lacking or dups:
                return "PARTIAL table wrong: extra=%d lacking=%d dups=%d" % (extra, lacking, dups)
        elif state == "CANCELLED":
            if dups or extra:
                return "CANCELLED table has dups=%d extra=%d" % (dups, extra)
            if dead > len(refused):
                return "CANCELLED with %d dead letters, at most %d expected" % (dead, len(refused))
            return None
        else:
            return "ended %s: %s" % (state, rec.get("error", ""))
        if dead != len(refused):
            return "%d dead letters, expected exactly %d (ids %s)" % (dead, len(refused), sorted(refused))
        if state == "SUCCEEDED" and job["always_fail"]:
            return "SUCCEEDED although page %s always fails" % job["always_fail"]
        if job.get("start_failed_but_registered") and state not in ("CANCELLED", "FAILED") and rows:
            return "the client was told StartJob failed, but the job ran (%s)" % state
        return None

    def checker(self):
        """Checks jobs as they end, so the check does not wait for the end of the soak."""
        while True:
            with self.lock:
                while not self.check_queue and not self.checker_stop:
                    self.check_wake.wait()
                if not self.check_queue:
                    return
                job = self.check_queue.pop(0)
            try:
                verdict = self.check_job(job)
            except (RuntimeError, OSError, ValueError) as e:
                # PostgreSQL or the API restarting under the chaos: try again later.
                job["check_errors"] = job.get("check_errors", 0) + 1
                with self.lock:
                    if job["check_errors"] < 20:
                        self.check_queue.append(job)
                    else:
                        job["verdict"] = "could not be checked: %s" % e
                time.sleep(1)
                continue
            with self.lock:
                job["verdict"] = verdict
            if verdict:
                log("FAIL", job["id"], job["rota"], verdict)

    # ---------------------------------------------------------------- main loop
    def run(self):
        self.start_services()
        checkers = [threading.Thread(target=self.checker, daemon=True) for _ in range(2)]
        for t in checkers:
            t.start()
        end = time.time() + self.args.minutes * 60
        next_chaos = time.time() + self.rng.uniform(3, 8)
        next_rss = time.time()
        while time.time() < end:
            if time.time() >= next_rss:
                self.sample_rss()
                next_rss = time.time() + 2
            self.refresh_states()
            if len(self.running()) < self.args.jobs:
                self.start_job()
            if time.time() >= next_chaos:
                self.chaos_once()
                for s in self.services():
                    s.ensure_running()
                next_chaos = time.time() + self.rng.uniform(3, self.args.chaos_interval)
            time.sleep(0.5)
        log("chaos over; waiting for every job to end")
        for s in self.services():
            s.signal(signal.SIGCONT)
            s.ensure_running()
        deadline = time.time() + self.args.settle_seconds
        while time.time() < deadline:
            self.sample_rss()
            if self.refresh_states() and not self.running():
                break
            time.sleep(1)
        with self.lock:
            self.checker_stop = True
            self.check_wake.notify_all()
        log("waiting for the last checks")
        for t in checkers:
            t.join()
        failures = []
        states = {}
        hostile = {}
        for job in self.jobs:
            if job["id"] is None:
                continue
            states[job["state"]] = states.get(job["state"], 0) + 1
            if job["hostile"]:
                key = "%s:%s" % (job["hostile"], job["state"])
                hostile[key] = hostile.get(key, 0) + 1
            if job["state"] not in FINAL:
                failures.append("%s (%s): still %s after the settle time" % (job["id"], job["rota"], job["state"]))
            elif job.get("verdict"):
                failures.append("%s (%s, %s): %s" % (job["id"], job["rota"], job["style"], job["verdict"]))
        rss_report, rss_ok = self.rss_report()
        rows = sum(j.get("rows", 0) for j in self.jobs)
        print()
        print("soak: %.1f minutes, seed %d, %d collector(s)" % (self.args.minutes, self.args.seed,
                                                             len(self.collectors)))
        print("jobs: %d started (%d start RPCs failed), final states %s" % (
            len([j for j in self.jobs if j["id"]]), self.start_failures, json.dumps(states, sort_keys=True)))
        print("hostile APIs: %s" % json.dumps(hostile, sort_keys=True))
        print("rows checked: %d" % rows)
        print("chaos actions: %s" % json.dumps(self.chaos_counts, sort_keys=True))
        print("restarts: %s" % ", ".join("%s %d" % (s.name, s.starts - 1) for s in self.services()))
        print(rss_report)
        for f in failures:
            print("FAIL:", f)
        if not rss_ok:
            print("FAIL: RSS not flat")
        ok = not failures and rss_ok
        print("soak: %s (logs in %s)" % ("PASSED" if ok else "FAILED", self.work))
        self.passed = ok
        return 0 if ok else 1

    def rss_report(self):
        lines, ok = [], True
        for name, samples in sorted(self.rss.items()):
            if len(samples) < 6:
                lines.append("rss %s: too few samples" % name)
                continue
            third = len(samples) // 3
            first = max(v for _, v in samples[:third])
            last = max(v for _, v in samples[-third:])
            peak = max(v for _, v in samples)
            lines.append("rss %s: peak %.0f MiB, first third max %.0f MiB, last third max %.0f MiB (%d samples)"
                         % (name, peak, first, last, len(samples)))
            if last > first * 1.5 + 32:
                ok = False
        return "\n".join(lines), ok

    def stop(self):
        for s in getattr(self, "collectors", []) + [getattr(self, "writer", None), getattr(self, "api", None)]:
            if s:
                s.signal(signal.SIGCONT)
                s.stop()


FINAL = ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--jobs", type=int, default=4, help="jobs in flight")
    ap.add_argument("--collectors", type=int, default=1, help="collector replicas sharing the jobs")
    ap.add_argument("--lease-seconds", type=float, default=10,
                    help="collectors' lease (with --collectors > 1); SIGSTOPs last longer than this")
    ap.add_argument("--hostile", type=float, default=0.3, help="share of jobs whose API answers one hostile way")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--chaos-interval", type=float, default=12, help="max seconds between chaos actions")
    ap.add_argument("--settle-seconds", type=float, default=600, help="how long jobs may take to end after the chaos")
    ap.add_argument("--build", default="build")
    ap.add_argument("--keep-logs", action="store_true", help="keep the services' logs of a passing run")
    args = ap.parse_args()
    soak = Soak(args)
    try:
        rc = soak.run()
    finally:
        soak.stop()
    if getattr(soak, "passed", False) and not args.keep_logs:
        shutil.rmtree(soak.work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
