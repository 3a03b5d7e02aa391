#!/usr/bin/env python3
"""Writes N generated Deployments as one multi-document YAML stream (stdout or --out FILE).

The mix is the one `make bench` creates in the cluster (kind-tests/src/bench/mod.rs,
`ensure_workloads`): namespaces `kvb-<i>` of 100 Deployments `w-000`..`w-099`, zero replicas,
label `kubevigil-bench=workload`, one container `main` running `sleep`, every tenth one
privileged; plus the fields a real Deployment has (app labels, an annotation, a port, two
environment variables, requests, a readiness probe), about 950 bytes each. Each Deployment also carries a UID, a generation and a namespace, as the API server
would return it, so that the results carry fingerprints and owner references as in a cluster.

    python3 scripts/gen-workloads.py 2000 --out /tmp/wl-2k.yaml

Deterministic: the same N gives the same bytes.
"""

import argparse
import sys
import uuid

PER_NAMESPACE = 100
IMAGE = "ghcr.io/kubevigil/probe:0.1.0"
TEMPLATE = """\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  uid: {uid}
  generation: 1
  labels:
    kubevigil-bench: workload
    app.kubernetes.io/name: {name}
    app.kubernetes.io/part-of: kvb
  annotations:
    kubevigil.io/generated-by: scripts/gen-workloads.py
spec:
  replicas: 0
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: {image}
        args:
        - sleep
        ports:
        - name: http
          containerPort: 8080
        env:
        - name: MODE
          value: bench
        - name: WORKERS
          value: "2"
        resources:
          requests:
            cpu: 10m
            memory: 16Mi
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
        securityContext:
          privileged: {privileged}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, help="number of Deployments")
    parser.add_argument("--out", help="output file (default: stdout)")
    args = parser.parse_args()
    if args.count < 0:
        parser.error("count must be >= 0")
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    with out:
        for k in range(args.count):
            i, j = divmod(k, PER_NAMESPACE)
            name = f"w-{j:03}"
            ns = f"kvb-{i}"
            uid = uuid.uuid5(uuid.NAMESPACE_URL, f"kubevigil-bench/{ns}/{name}")
            out.write(
                TEMPLATE.format(
                    name=name,
                    ns=ns,
                    uid=uid,
                    image=IMAGE,
                    privileged="true" if j % 10 == 0 else "false",
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
