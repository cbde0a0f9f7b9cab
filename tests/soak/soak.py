#!/usr/bin/env python3
"""Soak: jobs of every pagination style run continuously while a chaos loop breaks things.

Started by scripts/soak, which builds, starts a private PostgreSQL and exports PG* / DATABASE_URL and
SOAK_PG_DIR. This script starts the sample API, writer_server and collector_server (fixed loopback ports so
restarted services come back where their peers expect them), then for --minutes:
  * keeps --jobs jobs in flight (page, offset, cursor, link, next_url, none), each into its own table, with
    API faults injected through the sample API's query parameters (503s, 429 + Retry-After, truncated bodies
    and connections; some indexed jobs have pages that always fail and must end PARTIAL listing exactly them);
  * every few seconds one chaos action: kill -9 of the writer or the collector (restarted), an immediate
    PostgreSQL restart, an ACCESS EXCLUSIVE lock on a job's table for a while, SIGSTOP/SIGCONT of the writer,
    or a cancel of a running job;
  * samples both services' RSS.
Then it stops the chaos, waits for every job to reach a final state and checks:
  * SUCCEEDED: the table holds exactly the API's records (jsonb compared both ways, duplicates counted);
  * PARTIAL: failed pages == the injected always-failing pages, and the table holds exactly the rest;
  * CANCELLED: no duplicate and nothing that the API did not serve;
  * FAILED or still running: a failure of the soak.
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
        self.collector_port = free_port()
        self.jobs = []  # dicts: id, rota, style, total, page_size, always_fail, state, ...
        self.rss = {"writer": [], "collector": []}
        self.chaos_counts = {}
        self.start_failures = 0
        self.stop_flag = threading.Event()
        self.counter = 0

    # ---------------------------------------------------------------- services
    def collector_flags(self):
        flags = []
        helptext = subprocess.run([os.path.join(self.bin, "collector_server"), "--help"],
                                  capture_output=True, text=True).stdout
        if "allow-private-networks" in helptext or "allow_private_networks" in helptext:
            flags.append("--allow_private_networks")  # The sample API listens on loopback.
        return flags

    def start_services(self):
        self.api = Service("sample_api", [os.path.join(self.bin, "sample_api"),
                                          "--listen=127.0.0.1:%d" % self.api_port, "--threads=64"], self.work)
        self.writer = Service("writer", [os.path.join(self.bin, "writer_server"),
                                         "--listen=127.0.0.1:%d" % self.writer_port], self.work)
        self.collector = Service("collector", [os.path.join(self.bin, "collector_server"),
                                               "--listen=127.0.0.1:%d" % self.collector_port,
                                               "--writer=127.0.0.1:%d" % self.writer_port]
                                 + self.collector_flags(), self.work)
        for s in (self.api, self.writer, self.collector):
            s.start()
        self.wait_healthy()

    def wait_healthy(self, seconds=60):
        probe = os.path.join(self.bin, "etl_health_probe")
        deadline = time.time() + seconds
        for port in (self.writer_port, self.collector_port):
            while subprocess.run([probe, "--addr=127.0.0.1:%d" % port], capture_output=True).returncode != 0:
                if time.time() > deadline:
                    raise RuntimeError("service on port %d not healthy" % port)
                time.sleep(0.2)

    # ---------------------------------------------------------------- jobs
    def etlctl(self, *argv, timeout=60):
        try:
            return subprocess.run([os.path.join(self.bin, "etlctl"),
                                   "--collector=127.0.0.1:%d" % self.collector_port] + list(argv),
                                  capture_output=True, text=True, timeout=timeout)
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
        if style != "none":
            picks = sorted(self.rng.sample(range(1, pages + 1), min(3, pages)))
            params += ["fail_pages=%d" % picks[0], "fail_times=2", "fail_status=503"]
            if len(picks) > 1:
                params += ["rate_limit_pages=%d" % picks[1], "rate_limit_times=1", "retry_after=1"]
            if len(picks) > 2:
                params += ["truncate_pages=%d" % picks[2], "truncate_times=1",
                           "truncate_mode=%s" % self.rng.choice(["json", "conn"])]
            if style in ("page", "offset") and pages > 4 and self.rng.random() < 0.4:
                always_fail = [self.rng.choice([p for p in range(1, pages + 1) if p not in picks])]
                params += ["always_fail_pages=%d" % always_fail[0], "always_fail_status=500"]
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
                    argv=argv, id=None, cancelled=False, state=None)

    def start_job(self):
        job = self.new_job_spec()
        r = self.etlctl(*job["argv"])
        if r.returncode == 0:
            job["id"] = r.stdout.strip() or None
        else:
            self.start_failures += 1
            job["start_error"] = (r.stderr or r.stdout).strip()[:200]
        self.jobs.append(job)
        log("start", job["rota"], job["id"] or ("(start failed: %s)" % job.get("start_error")))

    def job_record(self, job_id):
        r = self.etlctl("status", job_id, "--json", timeout=30)
        if r.returncode not in (0, 1, 2):
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

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
        return True

    def running(self):
        return [j for j in self.jobs if j["id"] and j["state"] not in FINAL]

    # ---------------------------------------------------------------- chaos
    def chaos_once(self):
        action = self.rng.choice(["kill_writer", "kill_collector", "restart_pg", "lock_table", "stop_writer",
                                  "cancel", "kill_writer", "kill_collector"])
        self.chaos_counts[action] = self.chaos_counts.get(action, 0) + 1
        log("chaos:", action)
        if action == "kill_writer":
            self.writer.kill9()
            time.sleep(self.rng.uniform(0, 2))
            self.writer.start()
        elif action == "kill_collector":
            self.collector.kill9()
            time.sleep(self.rng.uniform(0, 2))
            self.collector.start()
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
            cands = [j for j in self.running()]
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
        for name, svc in (("writer", self.writer), ("collector", self.collector)):
            pid = svc.pid()
            if pid:
                v = rss_mib(pid)
                if v is not None:
                    self.rss[name].append((time.time(), v))

    # ---------------------------------------------------------------- checks
    def expected_records(self, job):
        """Every record the API serves for this collection, by page index (1-based)."""
        url = "http://127.0.0.1:%d/v1/clientes/soak/%s/none?total=%d" % (self.api_port, job["rota"], job["total"])
        with urllib.request.urlopen(url, timeout=60) as resp:
            records = json.loads(resp.read())["data"]
        return records

    def check_job(self, job):
        table = "dados_raw_cliente_soak_" + job["rota"]
        state = job["state"]
        rec = job.get("record", {})
        records = self.expected_records(job)
        missing_pages = []
        if state == "PARTIAL":
            missing_pages = sorted(int(p.get("page_number", 0)) for p in rec.get("failed_pages", []))
        # Expected rows: every record, less those of pages listed as failed (page_number is 0-based).
        ps = job["page_size"] or len(records)
        expected = [r for i, r in enumerate(records) if (i // ps) not in missing_pages] if ps else records
        exp_file = os.path.join(self.work, "expected_%s.copy" % job["rota"])
        with open(exp_file, "w") as f:
            for r in expected:
                f.write(json.dumps(r, ensure_ascii=False).replace("\\", "\\\\") + "\n")
        psql("DROP TABLE IF EXISTS soak_expected; CREATE TABLE soak_expected (payload jsonb)")
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                            "\\copy soak_expected (payload) FROM '%s'" % exp_file], capture_output=True, text=True)
        if r.returncode != 0:
            return "could not load expected records: " + r.stderr.strip()
        exists = psql("SELECT to_regclass('%s') IS NOT NULL" % table) == "t"
        rows = int(psql("SELECT count(*) FROM %s" % table)) if exists else 0
        dups = int(psql("SELECT count(*) - count(DISTINCT payload) FROM %s" % table)) if exists else 0
        extra = int(psql("SELECT count(*) FROM (SELECT payload FROM %s EXCEPT ALL SELECT payload FROM soak_expected) x"
                         % table)) if exists else 0
        lacking = int(psql("SELECT count(*) FROM (SELECT payload FROM soak_expected EXCEPT ALL SELECT payload FROM %s) x"
                           % table)) if exists else len(expected)
        if state == "SUCCEEDED":
            if rows != len(records) or extra or lacking or dups:
                return "SUCCEEDED but rows=%d expected=%d extra=%d lacking=%d dups=%d" % (
                    rows, len(records), extra, lacking, dups)
        elif state == "PARTIAL":
            want = sorted(p - 1 for p in job["always_fail"])
            if missing_pages != want:
                return "PARTIAL lists pages %s, expected %s" % (missing_pages, want)
            if extra or lacking or dups:
                return "PARTIAL table wrong: extra=%d lacking=%d dups=%d" % (extra, lacking, dups)
        elif state == "CANCELLED":
            if dups or extra:
                return "CANCELLED table has dups=%d extra=%d" % (dups, extra)
        else:
            return "ended %s: %s" % (state, rec.get("error", ""))
        if state == "SUCCEEDED" and job["always_fail"]:
            return "SUCCEEDED although page %s always fails" % job["always_fail"]
        if job.get("start_failed_but_registered") and state not in ("CANCELLED", "FAILED") and rows:
            return "the client was told StartJob failed, but the job ran (%s)" % state
        job["rows"] = rows
        return None

    # ---------------------------------------------------------------- main loop
    def run(self):
        self.start_services()
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
                self.writer.ensure_running()
                self.collector.ensure_running()
                next_chaos = time.time() + self.rng.uniform(3, self.args.chaos_interval)
            time.sleep(0.5)
        log("chaos over; waiting for every job to end")
        self.writer.ensure_running()
        self.collector.ensure_running()
        deadline = time.time() + self.args.settle_seconds
        while time.time() < deadline:
            self.sample_rss()
            if self.refresh_states() and not [j for j in self.jobs if j["id"] and j["state"] not in FINAL]:
                break
            time.sleep(1)
        failures = []
        states = {}
        for job in self.jobs:
            if job["id"] is None:
                continue
            states[job["state"]] = states.get(job["state"], 0) + 1
            err = self.check_job(job)
            if err:
                failures.append("%s (%s, %s): %s" % (job["id"], job["rota"], job["style"], err))
        rss_report, rss_ok = self.rss_report()
        rows = sum(j.get("rows", 0) for j in self.jobs)
        print()
        print("soak: %.1f minutes, seed %d" % (self.args.minutes, self.args.seed))
        print("jobs: %d started (%d start RPCs failed), final states %s" % (
            len([j for j in self.jobs if j["id"]]), self.start_failures, json.dumps(states, sort_keys=True)))
        print("rows checked: %d" % rows)
        print("chaos actions: %s" % json.dumps(self.chaos_counts, sort_keys=True))
        print("restarts: writer %d, collector %d" % (self.writer.starts - 1, self.collector.starts - 1))
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
        for name, samples in self.rss.items():
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
        for s in (getattr(self, "collector", None), getattr(self, "writer", None), getattr(self, "api", None)):
            if s:
                s.signal(signal.SIGCONT)
                s.stop()


FINAL = ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--jobs", type=int, default=4, help="jobs in flight")
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
