"""The `kubernetes` cluster type: Chidori's pod hosts the drivers, Spark asks for executor pods.

`pod_template` builds the executor pod template and the Spark conf that goes with it (pools,
scratch space, caps, the keys a job may not set); `rbac` the Kubernetes RBAC objects the server
and its drivers need. The settings are `chidori.config.kubernetes`.
"""
