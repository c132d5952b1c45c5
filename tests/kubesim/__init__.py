"""A simulated Kubernetes for tests: a fake API server, a naive scheduler, a process kubelet.

- `apiserver.FakeKubernetes`: the API server at the HTTP boundary (JSON over HTTP/1.1 and
  WebSocket watches), with an in-process Python API (`store.Store`, `cluster.Cluster`).
- `scheduler.Scheduler`: binds pending pods to fake nodes that fit (conditions, taints,
  selectors, affinity, requests), or reports FailedScheduling as the real scheduler words it.
- `kubelet.Kubelet`: runs bound pods as local processes (Spark executors the way the Spark
  image's entrypoint does), writes their status back and serves their logs.

Each module's docstring says what it models and what it does not.
"""
