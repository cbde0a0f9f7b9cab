#!/usr/bin/env python3
"""Checks deploy/: YAML syntax of docker-compose.yml and the Kubernetes manifests, and the properties the
design asks for (multi-stage non-root images, pg_isready healthcheck, gRPC health checks and
depends_on: service_healthy, grpc-* port names and gRPC probes, DATABASE_URL from a Secret) and the
hardening (seccomp RuntimeDefault, no service-account token, read-only root, no privilege escalation, all
capabilities dropped, API credentials as files from Secrets / compose secrets).
Replicas (issue: many replicas behind a mesh): 3 collectors with RollingUpdate (never Recreate) and a
PodDisruptionBudget, 2 writers with one, headless Services for client-side balancing, readiness on the
service's own health name and liveness on "" (the process), memory limits that fit the page limits given by
the containers' flags, and 2 collectors + 2 writers in compose with a host port range per replica.
Runs `docker-compose config` too when that client is installed. Usage: check_manifests.py DEPLOY_DIR"""
import glob
import os
import re
import shutil
import subprocess
import sys

import yaml

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def check_replicas_and_network(docs):
    """Replicas, client-side balancing, pinned images and the NetworkPolicy (issue: many replicas)."""
    by_kind = {}
    for path, d in docs:
        by_kind.setdefault((d.get("kind"), d.get("metadata", {}).get("name")), (path, d))
    path, writer = by_kind.get(("Deployment", "writer"), (None, None))
    if writer:
        check(writer["spec"].get("replicas", 1) >= 2, f"{path}: writer runs fewer than 2 replicas")
    path, headless = by_kind.get(("Service", "writer-headless"), (None, None))
    check(headless is not None and headless["spec"].get("clusterIP") == "None",
          "k8s: no headless writer Service (clusterIP: None) for client-side balancing")
    path, collector = by_kind.get(("Deployment", "collector"), (None, None))
    if collector:
        args = collector["spec"]["template"]["spec"]["containers"][0].get("args", [])
        check("--writer=dns:///writer-headless:50052" in args,
              f"{path}: collector does not reach the writers through dns:/// and the headless Service")
    for path, d in docs:
        if d.get("kind") != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            image = c.get("image", "")
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            check(tag not in ("", "latest"), f"{path}: {c['name']} image {image} has no pinned tag")
            check(c.get("imagePullPolicy") == "IfNotPresent",
                  f"{path}: {c['name']} imagePullPolicy is not IfNotPresent")
            check("memory" in c.get("resources", {}).get("limits", {}),
                  f"{path}: {c['name']} has no memory limit")
    policies = [d for _, d in docs if d.get("kind") == "NetworkPolicy"]

    def selects(policy, name):
        return policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == name

    ingress = [p for p in policies if selects(p, "writer") and "Ingress" in p["spec"]["policyTypes"]]
    check(ingress, "k8s: no NetworkPolicy restricts the writer's ingress")
    for p in ingress:
        for rule in p["spec"].get("ingress", []):
            ports = {x["port"] for x in rule.get("ports", [])}
            check(rule.get("from") and ports, "k8s: writer ingress rule open to every source or port")
            if 50052 in ports:
                names = {f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                         for f in rule["from"]}
                check(names == {"collector"}, f"k8s: writer gRPC ingress from {names}, not collectors only")
    egress = [p for p in policies if selects(p, "collector") and "Egress" in p["spec"]["policyTypes"]]
    check(egress, "k8s: no NetworkPolicy restricts the collector's egress")
    for p in egress:
        rules = p["spec"].get("egress", [])
        check(all(r.get("to") and r.get("ports") for r in rules),
              "k8s: collector egress rule open to every destination or port")
        to_writer = [r for r in rules
                     if any(t.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                            == "writer" for t in r.get("to", []))]
        check(to_writer, "k8s: collector egress does not allow the writer")
        for r in rules:
            for t in r.get("to", []):
                if "ipBlock" in t:
                    check("10.0.0.0/8" in t["ipBlock"].get("except", []),
                          "k8s: collector egress to external APIs does not exclude private ranges")


MIB = 1 << 20


def quantity_bytes(q):
    """A Kubernetes memory quantity ("256Mi", "1Gi", "300M", "1048576") in bytes, or None."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", str(q))
    if not m:
        return None
    unit = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}[m.group(2)]
    return int(m.group(1)) * unit


def flag_value(args, name, default):
    """The integer value of --name=V (or --name-with-dashes=V) in a container's args, else default."""
    for a in args:
        for spelling in (name, name.replace("_", "-")):
            if a.startswith("--%s=" % spelling):
                return int(a.split("=", 1)[1])
    return default


def collector_memory_bound(args):
    """What the page limits let a collector hold at once, plus its measured baseline (docs/scaling.md):
    max_concurrent_jobs x (max_buffered_bytes + 6 x max_response_bytes) + 30 MiB."""
    jobs = flag_value(args, "max_concurrent_jobs", 8)
    buffered = flag_value(args, "max_buffered_bytes", 16 * MIB)
    response = flag_value(args, "max_response_bytes", 8 * MIB)
    return jobs * (buffered + 6 * response) + 30 * MIB


def writer_memory_bound(args):
    """The writer's measured peak (75 MiB, docs/performance.md) plus one message at --max_message_bytes,
    one 1 MiB message per open stream (12: 3 collectors x 4 jobs), the commit batches and the queue."""
    message = flag_value(args, "max_message_bytes", 64 * MIB)
    batches = flag_value(args, "writer_threads", 2) * flag_value(args, "batch_bytes", MIB)
    queue = flag_value(args, "queue_bytes", 2 * MIB)
    return 75 * MIB + message + 12 * MIB + batches + queue


def check_replica_tiers(docs):
    """Collectors: 3 replicas, RollingUpdate, a PDB, a headless Service, readiness on
    etl.v1.CollectorService and liveness on ""; writers: a PDB; memory limits that fit the limits."""
    by_kind = {}
    for path, d in docs:
        by_kind.setdefault((d.get("kind"), d.get("metadata", {}).get("name")), (path, d))
    for name, replicas, ready_service in (("collector", 3, "etl.v1.CollectorService"),
                                          ("writer", 2, "etl.v1.WriterService")):
        path, dep = by_kind.get(("Deployment", name), (None, None))
        if dep is None:
            continue
        spec = dep["spec"]
        check(spec.get("replicas", 1) >= replicas, f"{path}: {name} runs fewer than {replicas} replicas")
        strategy = spec.get("strategy", {}).get("type", "RollingUpdate")
        check(strategy == "RollingUpdate", f"{path}: {name} strategy is {strategy}, not RollingUpdate")
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        check(str(rolling.get("maxUnavailable", 1)) in ("0", "1"),
              f"{path}: {name} rolling update may take more than one pod down at once")
        labels = spec["selector"]["matchLabels"]
        pdbs = [d for _, d in docs if d.get("kind") == "PodDisruptionBudget"
                and d["spec"].get("selector", {}).get("matchLabels") == labels]
        check(len(pdbs) == 1, f"k8s: {name} has {len(pdbs)} PodDisruptionBudgets, expected 1")
        for pdb in pdbs:
            check(pdb.get("apiVersion") == "policy/v1", f"k8s: {name} PDB is not policy/v1")
            ps = pdb["spec"]
            check(("minAvailable" in ps) != ("maxUnavailable" in ps),
                  f"k8s: {name} PDB must set exactly one of minAvailable / maxUnavailable")
            allowed_down = (spec.get("replicas", 1) - int(ps["minAvailable"]) if "minAvailable" in ps
                            else int(ps.get("maxUnavailable", 0)))
            check(allowed_down >= 1, f"k8s: {name} PDB never allows a voluntary disruption (drains block)")
            check(allowed_down < spec.get("replicas", 1), f"k8s: {name} PDB allows every pod down at once")
        headless = [d for _, d in docs if d.get("kind") == "Service" and d["spec"].get("clusterIP") == "None"
                    and d["spec"].get("selector") == labels]
        check(headless and any(p["name"].startswith("grpc-") for h in headless for p in h["spec"]["ports"]),
              f"k8s: no headless Service with a grpc-* port for the {name} pods (client-side balancing)")
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        check(c.get("readinessProbe", {}).get("grpc", {}).get("service") == ready_service,
              f"{path}: {name} readiness does not check {ready_service}")
        check(c.get("livenessProbe", {}).get("grpc", {}).get("service", "") == "",
              f"{path}: {name} liveness must check the overall health \"\" (SERVING while the process works)")
        check(pod.get("automountServiceAccountToken") is False, f"{path}: {name} mounts a service-account token")
        check(pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{path}: {name} has no seccompProfile RuntimeDefault")
        limits = c.get("resources", {}).get("limits", {})
        requests = c.get("resources", {}).get("requests", {})
        limit = quantity_bytes(limits.get("memory", ""))
        request = quantity_bytes(requests.get("memory", ""))
        check(limit is not None, f"{path}: {name} memory limit missing or unparsable")
        if limit is not None:
            bound = (collector_memory_bound if name == "collector" else writer_memory_bound)(c.get("args", []))
            check(limit >= bound, f"{path}: {name} memory limit {limits['memory']} is below what its flags let it "
                                  f"hold ({bound // MIB} MiB)")
            check(limit <= 2 * bound + 64 * MIB, f"{path}: {name} memory limit {limits['memory']} is far above "
                                                 f"its bound ({bound // MIB} MiB): recompute it")
            check(request is not None and request <= limit, f"{path}: {name} memory request above its limit")
    path, collector = by_kind.get(("Deployment", "collector"), (None, None))
    if collector:
        check("Recreate" not in str(collector["spec"].get("strategy", {})), f"{path}: collector uses Recreate")


def check_compose_replicas(services):
    """Two writers and two collectors in compose (scaled by deploy.replicas); each published port of a
    replicated service is a host range with a port per replica (else the second replica cannot start)."""
    for name in ("writer", "collector"):
        svc = services.get(name, {})
        replicas = svc.get("deploy", {}).get("replicas", 1)
        check(replicas >= 2, f"compose: {name} is not scaled to 2 replicas")
        check("container_name" not in svc, f"compose: {name} has a container_name (cannot be scaled)")
        for port in svc.get("ports", []):
            published = str(port).rsplit(":", 1)[0].split(":")[-1] if ":" in str(port) else ""
            if not published:
                continue
            lo, _, hi = published.partition("-")
            size = int(hi) - int(lo) + 1 if hi else 1
            check(size >= replicas, f"compose: {name} publishes {port}: {size} host port(s) for {replicas} replicas")


def main(deploy):
    # Dockerfiles.
    for svc, port in (("writer", "50052"), ("collector", "50051"), ("sample_api", "8080")):
        path = os.path.join(deploy, f"{svc}.Dockerfile")
        check(os.path.exists(path), f"{path} missing")
        if not os.path.exists(path):
            continue
        text = open(path).read()
        froms = [l for l in text.splitlines() if l.startswith("FROM ")]
        check(len(froms) >= 2, f"{path}: not multi-stage")
        check(froms and froms[0].startswith("FROM debian:12"), f"{path}: build stage is not debian:12")
        check(froms and froms[-1].strip() == "FROM debian:12-slim", f"{path}: runtime stage is not debian:12-slim")
        users = [l for l in text.splitlines() if l.startswith("USER ")]
        check(users and users[-1].split()[1].split(":")[0] not in ("0", "root"), f"{path}: runs as root")
        check(f"EXPOSE {port}" in text, f"{path}: does not expose {port}")
        if svc != "sample_api":
            check("etl_health_probe" in text, f"{path}: no gRPC health check")

    # docker-compose.yml.
    compose_path = os.path.join(deploy, "docker-compose.yml")
    compose = yaml.safe_load(open(compose_path))
    services = compose["services"]
    check(set(services) >= {"postgres", "writer", "collector", "sample_api"}, "compose: services missing")
    pg = services["postgres"]
    check(pg["image"].startswith("postgres:15"), "compose: postgres is not 15")
    check(pg["healthcheck"]["test"][:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"],
          "compose: postgres healthcheck is not pg_isready -h 127.0.0.1")
    for name, dep in (("writer", "postgres"), ("collector", "writer")):
        s = services[name]
        check("etl_health_probe" in s["healthcheck"]["test"], f"compose: {name} has no gRPC health check")
        check(s["depends_on"][dep]["condition"] == "service_healthy",
              f"compose: {name} does not wait for {dep} to be healthy")
        check(os.path.exists(os.path.join(deploy, "..", s["build"]["dockerfile"])),
              f"compose: {name} Dockerfile missing")
    check("DATABASE_URL" in services["writer"]["environment"], "compose: writer has no DATABASE_URL")
    top_secrets = compose.get("secrets", {})
    collector = services["collector"]
    check(collector.get("secrets"), "compose: collector gets no credentials through secrets:")
    for name in collector.get("secrets", []):
        name = name if isinstance(name, str) else name.get("source")
        check(name in top_secrets and "file" in top_secrets[name], f"compose: secret {name} is not a file secret")
    check(any("--credentials=/run/secrets/" in a for a in collector["command"]),
          "compose: collector does not read its credentials file from /run/secrets")
    for name in ("writer", "collector"):
        s = services[name]
        check(s.get("read_only") is True, f"compose: {name} root filesystem is writable")
        check(s.get("cap_drop") == ["ALL"], f"compose: {name} keeps capabilities")
        check("no-new-privileges:true" in s.get("security_opt", []), f"compose: {name} allows new privileges")
        env = s.get("environment") or {}
        for k in env:
            check(not any(w in k.upper() for w in ("TOKEN", "SECRET", "API_KEY")),
                  f"compose: {name} passes {k} in its environment (use secrets:)")

    # Kubernetes.
    docs = []
    for path in sorted(glob.glob(os.path.join(deploy, "k8s", "*.yaml"))):
        for doc in yaml.safe_load_all(open(path)):
            if doc:
                docs.append((path, doc))
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in docs if "metadata" in d}
    for name in ("writer", "collector"):
        check(("Deployment", name) in kinds and ("Service", name) in kinds, f"k8s: {name} Deployment/Service missing")
    for path, d in docs:
        if d.get("kind") == "Deployment" and d["metadata"]["name"] in ("writer", "collector"):
            c = d["spec"]["template"]["spec"]["containers"][0]
            grpc_ports = [p for p in c["ports"] if p["name"].startswith("grpc-")]
            check(len(grpc_ports) == 1, f"{path}: no container port named grpc-*")
            for probe in ("readinessProbe", "livenessProbe"):
                check("grpc" in c.get(probe, {}), f"{path}: {probe} is not a grpc probe")
                if grpc_ports and "grpc" in c.get(probe, {}):
                    check(c[probe]["grpc"]["port"] == grpc_ports[0]["containerPort"], f"{path}: {probe} port")
            check(d["spec"]["template"]["spec"]["securityContext"].get("runAsNonRoot") is True, f"{path}: root")
            if d["metadata"]["name"] == "collector":
                pod = d["spec"]["template"]["spec"]
                secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
                mounts = [m for m in c.get("volumeMounts", []) if m["name"] in secret_volumes]
                check(mounts and all(m.get("readOnly") is True for m in mounts),
                      f"{path}: collector credentials are not read-only files from a Secret")
                check(any(a.startswith("--credentials=") for a in c.get("args", [])),
                      f"{path}: collector has no --credentials file")
                for e in c.get("env", []):
                    check("value" not in e or not any(w in e["name"].upper() for w in ("TOKEN", "SECRET", "KEY")),
                          f"{path}: secret-looking literal env {e['name']}")
            if d["metadata"]["name"] == "writer":
                env = {e["name"]: e for e in c.get("env", [])}
                check("secretKeyRef" in env.get("DATABASE_URL", {}).get("valueFrom", {}),
                      f"{path}: DATABASE_URL is not from a Secret")
                # Readiness follows PostgreSQL; liveness ("" = the process) must not, or a database
                # outage restarts every writer.
                check(c.get("readinessProbe", {}).get("grpc", {}).get("service") == "etl.v1.WriterService",
                      f"{path}: writer readiness does not check etl.v1.WriterService")
                check(c.get("livenessProbe", {}).get("grpc", {}).get("service", "") == "",
                      f"{path}: writer liveness must check the overall health \"\"")
        if d.get("kind") == "Deployment":
            pod = d["spec"]["template"]["spec"]
            name = d["metadata"]["name"]
            check(pod.get("automountServiceAccountToken") is False, f"{path}: {name} mounts a service-account token")
            check(pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault",
                  f"{path}: {name} has no seccompProfile RuntimeDefault")
            for c in pod["containers"]:
                sc = c.get("securityContext", {})
                check(sc.get("readOnlyRootFilesystem") is True, f"{path}: {c['name']} root filesystem is writable")
                check(sc.get("allowPrivilegeEscalation") is False, f"{path}: {c['name']} allows privilege escalation")
                check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{path}: {c['name']} keeps capabilities")
                check(not sc.get("capabilities", {}).get("add"), f"{path}: {c['name']} adds capabilities")
                check(not sc.get("privileged"), f"{path}: {c['name']} is privileged")
        if d.get("kind") == "Service" and d["metadata"]["name"] in ("writer", "collector"):
            check(any(p["name"].startswith("grpc-") for p in d["spec"]["ports"]), f"{path}: Service port not grpc-*")
            for p in d["spec"]["ports"]:
                check(len(p["name"]) <= 15, f"{path}: port name {p['name']} longer than 15")

    check_replicas_and_network(docs)
    check_replica_tiers(docs)
    check_compose_replicas(services)

    compose_bin = shutil.which("docker-compose")
    if compose_bin:
        r = subprocess.run([compose_bin, "-f", compose_path, "config", "-q"], capture_output=True, text=True)
        check(r.returncode == 0, f"docker-compose config: {r.stderr.strip()}")
    else:
        print("docker-compose not installed: skipped `docker-compose config`")

    for e in errors:
        print("FAIL:", e)
    print(f"{len(errors)} problem(s) in {deploy}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
