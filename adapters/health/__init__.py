"""The health server: what a supervisor, a load balancer or Prometheus asks about the workers."""
