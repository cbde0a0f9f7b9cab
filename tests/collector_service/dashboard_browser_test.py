#!/usr/bin/python3
"""The collector's dashboard in a real browser (Debian's chromium, headless, driven over the Chrome
DevTools Protocol with python3-websocket).

Starts the sample API, writer_server (against the PostgreSQL of scripts/test) and collector_server
with the dashboard on, then:
  1. starts a job of 30 slow pages with etlctl, opens the dashboard, sees the job in the table, opens
     its page and watches the progress bar grow until it shows SUCCEEDED at 100 %;
  2. starts a second, slow job, enters the API token in the page and cancels the job with the page's
     button; the page then shows CANCELLED;
  3. restarts the collector and sees the open page reconnect by itself;
  4. saves screenshots (job list, job page, a job half-way) into the artifact directory;
  5. reads the collector's --log-format=json log: every line one object with time, level and
     component; job 1's lines carry its job id and etlctl's request id; the API token never appears.

Usage: dashboard_browser_test.py BIN_DIR ARTIFACT_DIR
Exit 0 = pass, 1 = fail, 77 = skipped (no PostgreSQL configured, or chromium cannot start here).
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77
CHROMIUM = os.environ.get("ETL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def log(*args):
    print("[dashboard-browser]", *args, flush=True)


def skip(why):
    log("SKIPPED:", why)
    sys.exit(SKIP)


def wait_for(what, predicate, timeout, interval=0.1):
    """Polls predicate() until it returns a truthy value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Procs:
    def __init__(self, workdir):
        self.workdir = workdir
        self.children = []

    def start(self, name, argv, env=None, port_file=True):
        logf = open(os.path.join(self.workdir, name + ".log"), "wb")
        pf = os.path.join(self.workdir, name + ".port")
        if port_file:
            argv = argv + ["--port_file=" + pf]
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env or os.environ.copy())
        self.children.append((name, p))
        if not port_file:
            return p, 0

        def port():
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}:\n" + self.tail(name))
            try:
                with open(pf) as f:
                    text = f.read().strip()
                return int(text) if text else 0
            except (FileNotFoundError, ValueError):
                return 0

        return p, wait_for(f"{name} port", port, 30)

    def tail(self, name, n=30):
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        for _, p in reversed(self.children):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.children):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Cdp:
    """A minimal DevTools client for one page target."""

    def __init__(self, ws_url):
        import websocket  # Debian python3-websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        log("screenshot:", path)


def start_chromium(workdir):
    if not os.access(CHROMIUM, os.X_OK):
        skip(f"{CHROMIUM} is not installed (scripts/setup installs Debian's chromium)")
    profile = os.path.join(workdir, "chromium-profile")
    argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
            "--user-data-dir=" + profile, "--window-size=1400,1000", "about:blank"]
    logf = open(os.path.join(workdir, "chromium.log"), "wb")
    proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
    active = os.path.join(profile, "DevToolsActivePort")

    def port():
        if proc.poll() is not None:
            return -1
        try:
            with open(active) as f:
                first = f.readline().strip()
            return int(first) if first else 0
        except (FileNotFoundError, ValueError):
            return 0

    try:
        p = wait_for("chromium's DevTools port", port, 60)
    except AssertionError:
        p = -1
    if p <= 0:
        proc.kill()
        with open(os.path.join(workdir, "chromium.log"), errors="replace") as f:
            out = f.read()[-2000:]
        skip(f"chromium cannot start here:\n{out}")
    return proc, p


def page_ws_url(devtools_port):
    def find():
        with urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=5) as r:
            for t in json.load(r):
                if t.get("type") == "page":
                    return t["webSocketDebuggerUrl"]
        return None

    return wait_for("a page target", find, 30)


def etlctl(bin_dir, collector, args):
    out = subprocess.run([os.path.join(bin_dir, "etlctl")] + args + ["--collector=" + collector],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"etlctl {' '.join(args)} failed ({out.returncode}): {out.stdout}{out.stderr}")
    return out.stdout.strip()


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    bin_dir, artifacts = sys.argv[1], sys.argv[2]
    os.makedirs(artifacts, exist_ok=True)
    if not os.environ.get("DATABASE_URL") and not os.environ.get("PGHOST"):
        skip("no PostgreSQL configured (run through scripts/test, which starts one)")
    workdir = tempfile.mkdtemp(prefix="etl-dashboard-browser-")
    procs = Procs(workdir)
    chromium = None
    ok = False
    try:
        chromium, devtools_port = start_chromium(workdir)
        token_file = os.path.join(workdir, "api.token")
        with open(token_file, "w") as f:
            f.write("dashboard-test-token\n")
        os.chmod(token_file, 0o600)

        _, api_port = procs.start("sample_api", [os.path.join(bin_dir, "sample_api"), "--listen=127.0.0.1:0"])
        _, writer_port = procs.start("writer", [os.path.join(bin_dir, "writer_server"), "--listen=127.0.0.1:0"])
        http_port_file = os.path.join(workdir, "http.port")

        def start_collector(name, http_listen, grpc_listen="127.0.0.1:0"):
            # --http_port_file is written before --port_file, so it exists once start() returns.
            proc, port = procs.start(name, [
                os.path.join(bin_dir, "collector_server"), "--listen=" + grpc_listen,
                f"--writer=127.0.0.1:{writer_port}", "--http_listen=" + http_listen,
                "--http_port_file=" + http_port_file, "--http_auth_token_file=" + token_file,
                "--log_format=json", "--allow-private-networks"])
            with open(http_port_file) as f:
                return proc, port, int(f.read().strip())

        collector_proc, collector_port, http_port = start_collector("collector", "127.0.0.1:0")
        collector = f"127.0.0.1:{collector_port}"
        base = f"http://127.0.0.1:{http_port}"
        suffix = str(os.getpid())
        cliente = "77" + suffix

        def job_args(rota, total, page_size, slow_ms, concurrency):
            url = f"http://127.0.0.1:{api_port}/v1/clientes/{cliente}/{rota}/page"
            return ["run", "--detach", f"--request-id=req-{rota}-{suffix}", f"--cliente={cliente}", f"--rota={rota}", f"--url={url}",
                    "--pagination=page", f"--page-size={page_size}", "--records-path=/data",
                    "--total-pages-path=/total_pages", "--total-count-path=/total", "--id-path=/id",
                    f"--param=total={total}", f"--param=slow_ms={slow_ms}", f"--fetch-concurrency={concurrency}"]

        def job_id_from(out):
            ids = re.findall(r"\b[0-9a-f]{32}\b", out)
            if not ids:
                raise AssertionError("no job id in etlctl output: " + out)
            return ids[0]

        cdp = Cdp(page_ws_url(devtools_port))
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)

        # 1. A job of 30 pages of 100 records, 250 ms per page, 2 at a time: ~4 s of visible progress.
        job1 = job_id_from(etlctl(bin_dir, collector, job_args("pedidos", 3000, 100, 250, 2)))
        log("job 1:", job1)
        cdp.call("Page.navigate", url=base + "/")
        wait_for("job 1 in the jobs table",
                 lambda: cdp.eval(f"!!document.querySelector('tr[data-job-id=\"{job1}\"]')"), 30)
        wait_for("the writer panel", lambda: cdp.eval("document.getElementById('w-serving').textContent") == "serving", 30)
        cdp.call("Page.navigate", url=f"{base}/#/jobs/{job1}")
        seen = []
        running_shot = os.path.join(artifacts, "dashboard-job-running.png")
        if os.path.exists(running_shot):
            os.unlink(running_shot)

        def progress_done():
            v = cdp.eval("(() => { const b = document.getElementById('j-progress');"
                         " return b ? [Number(b.dataset.pct), document.getElementById('j-state').textContent] : null; })()")
            if v and (not seen or seen[-1] != v):
                seen.append(v)
                if 25 <= v[0] <= 80 and not os.path.exists(running_shot):
                    cdp.screenshot(running_shot)
            return v and v[1] == "SUCCEEDED"

        wait_for("job 1 to show SUCCEEDED", progress_done, 120, interval=0.05)
        pcts = [p for p, _ in seen]
        log("progress seen:", seen)
        assert seen[-1][0] == 100, f"SUCCEEDED at {seen[-1][0]} %"
        moving = sorted(set(p for p in pcts if 0 < p < 100))
        assert moving, f"the progress bar never showed a value between 0 and 100 %: {seen}"
        assert pcts == sorted(pcts), f"the progress bar went backwards: {pcts}"
        wait_for("job 1's page map", lambda: cdp.eval(
            "document.querySelectorAll('#page-map .pm-committed').length > 0"), 15)
        assert cdp.eval("document.getElementById('j-spec').textContent.includes('pedidos')")
        cdp.screenshot(os.path.join(artifacts, "dashboard-job.png"))

        # 2. A slow job (2 s per page, 1 at a time), cancelled from the page with the API token.
        job2 = job_id_from(etlctl(bin_dir, collector, job_args("lento", 100000, 100, 2000, 1)))
        log("job 2:", job2)
        cdp.call("Page.navigate", url=f"{base}/#/jobs/{job2}")
        wait_for("job 2's page", lambda: cdp.eval("document.getElementById('j-id').textContent") == job2, 30)
        assert cdp.eval("document.getElementById('cancel-btn').disabled"), "cancel enabled before a token"
        cdp.eval("document.getElementById('token').value = 'dashboard-test-token';"
                 "document.getElementById('token-form').requestSubmit(); true")
        wait_for("the cancel button to be enabled",
                 lambda: cdp.eval("!document.getElementById('cancel-btn').disabled"), 15)
        cdp.eval("document.getElementById('cancel-btn').click(); true")
        wait_for("job 2 to show CANCELLED",
                 lambda: cdp.eval("document.getElementById('j-state').textContent") == "CANCELLED", 60)
        status = etlctl(bin_dir, collector, ["status", job2])
        assert "CANCELLED" in status, status
        log("job 2 cancelled from the page; etlctl status agrees")

        # 3. The collector restarts (same addresses): the open page says it is reconnecting, then
        #    carries on by itself.
        cdp.call("Page.navigate", url=base + "/")
        wait_for("the list to load", lambda: cdp.eval(f"!!document.querySelector('tr[data-job-id=\"{job1}\"]')"), 30)
        collector_proc.send_signal(signal.SIGTERM)
        collector_proc.wait(timeout=60)
        wait_for("the page to notice the collector is gone",
                 lambda: cdp.eval("document.getElementById('conn').textContent").startswith("reconnecting"), 30)
        os.unlink(http_port_file)
        start_collector("collector2", f"127.0.0.1:{http_port}", f"127.0.0.1:{collector_port}")
        wait_for("the page to reconnect",
                 lambda: cdp.eval("document.getElementById('conn').textContent") == "live", 30)
        log("the page reconnected after a collector restart")

        # 4. The job list with both jobs, for the README.
        cdp.call("Page.navigate", url=base + "/")
        wait_for("both jobs listed", lambda: cdp.eval(
            f"!!document.querySelector('tr[data-job-id=\"{job1}\"][data-state=\"SUCCEEDED\"]') && "
            f"!!document.querySelector('tr[data-job-id=\"{job2}\"][data-state=\"CANCELLED\"]')"), 30)
        cdp.screenshot(os.path.join(artifacts, "dashboard-jobs.png"))

        # 5. The collector's JSON log: one object per line with time, level and component; job 1's
        #    lines carry its job id and the request id etlctl sent; the API token never appears.
        with open(os.path.join(workdir, "collector.log"), errors="replace") as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        entries = [json.loads(l) for l in lines]
        for e in entries:
            assert {"time", "level", "component", "msg"} <= e.keys(), e
        job1_lines = [e for e in entries if e.get("job_id") == job1]
        assert job1_lines and all(e.get("request_id") == f"req-pedidos-{suffix}" for e in job1_lines), job1_lines
        assert any("SUCCEEDED" in e["msg"] for e in job1_lines), job1_lines
        assert not any("dashboard-test-token" in l for l in lines), "the API token was logged"
        log(f"collector log: {len(entries)} JSON lines, {len(job1_lines)} for job 1")
        ok = True
    except Exception as e:  # noqa: BLE001 - any failure ends the test with the services' logs
        log("FAILED:", type(e).__name__, e)
        for name, _ in procs.children:
            log(f"--- {name} log tail ---\n" + procs.tail(name))
    finally:
        procs.stop()
        if chromium is not None and chromium.poll() is None:
            chromium.kill()
            chromium.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
