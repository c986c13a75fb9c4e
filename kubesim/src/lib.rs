//! kubesim: an in-memory, simulated Kubernetes API server. It is a test double, not a cluster.
