#!/usr/bin/env python3
"""Checks deploy/: YAML syntax of docker-compose.yml and the Kubernetes manifests, and the properties the
design asks for (multi-stage non-root images, pg_isready healthcheck, gRPC health checks and
depends_on: service_healthy, grpc-* port names and gRPC probes, DATABASE_URL from a Secret) and the
hardening (seccomp RuntimeDefault, no service-account token, read-only root, no privilege escalation, all
capabilities dropped, API credentials as files from Secrets / compose secrets).
Runs `docker-compose config` too when that client is installed. Usage: check_manifests.py DEPLOY_DIR"""
import glob
import os
import shutil
import subprocess
import sys

import yaml

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


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
