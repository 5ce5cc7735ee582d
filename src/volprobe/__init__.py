"""volprobe: end-to-end storage probes for Kubernetes.

The package has two halves that share only `reasons` and `reports`:

* the agent (`volprobe.agent`), which runs inside probe pods, uses the standard library only and
  must start fast;
* the controller (`volprobe.controller` and the modules it wires together), which talks to the
  API server, schedules runs and exports metrics.
"""

__version__ = "0.1.0"
