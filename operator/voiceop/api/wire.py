"""The wire contract: labels, annotations and names that other programs read or write.

Media pods, SIP edges, dashboards and users' selectors depend on these strings; they change
only with the API version.
"""

from __future__ import annotations

# Labels on every child.
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "voiceop"
AGENT_LABEL = "voiceop.dev/agent"
REGION_LABEL = "voiceop.dev/region"
COMPONENT_LABEL = "app.kubernetes.io/component"
CHILD_SELECTOR = f"{MANAGED_BY}={MANAGER}"

# Node labels a Region's nodes carry by default (Kubernetes' well-known topology labels).
NODE_REGION_LABEL = "topology.kubernetes.io/region"
NODE_ZONE_LABEL = "topology.kubernetes.io/zone"

# Media pods: the readiness gate the operator opens and closes.
ACCEPTING_CALLS = "voiceop.dev/accepting-calls"
# Set on a media pod with its readiness gate false; the pod sees it in its downward-API file.
DRAINING_SINCE = "voiceop.dev/draining-since"
POD_ANNOTATIONS_DIR = "/etc/voiceop-pod"
POD_ANNOTATIONS_FILE = f"{POD_ANNOTATIONS_DIR}/annotations"
# Kubernetes' own: the ReplicaSet controller removes the lowest cost first.
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

# The per-namespace routing table a SIP edge or SBC reads.
ROUTES_CONFIGMAP = "voiceop-routes"
