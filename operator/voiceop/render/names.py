"""Names of child objects: readable when they fit, shortened with a stable hash when not."""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_HASH_CHARS = 8


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def dns_label(*parts: str) -> str:
    """`parts` joined by '-' as a DNS-1035 label (what a Service name must be), 63 at most.

    A join that is already a valid label is kept as it is. Anything else (too long, dots,
    leading digit) is cleaned, cut, and suffixed with a hash of the parts themselves, so two
    different inputs never share a shortened name and the same input always gets the same one.
    """
    joined = "-".join(parts)
    if len(joined) <= MAX_LABEL and _DNS_1035.match(joined):
        return joined
    suffix = short_hash("/".join(parts))
    cleaned = _NOT_DNS.sub("-", joined.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = "v-" + cleaned
    head = cleaned[: MAX_LABEL - _HASH_CHARS - 1].rstrip("-")
    return f"{head}-{suffix}"


def media_name(agent: str, region: str) -> str:
    """Name of an agent's Deployment, Service, PDB and autoscaler in one region."""
    return dns_label(agent, region)


def pod_name_regex(deployment: str) -> str:
    """Every pod a Deployment makes: <deployment>-<replicaset hash>-<pod suffix>."""
    return f"{deployment}-[a-z0-9]+-[a-z0-9]+"


def media_policy_name(agent: str) -> str:
    """Name of the NetworkPolicy over an agent's media pods in every region."""
    return dns_label(agent, "media")


def runtime_config_name(agent: str) -> str:
    """Name of an agent's runtime ConfigMap (a DNS subdomain: 253 allowed, agents have 63)."""
    return f"{agent}-runtime"


def env_var_suffix(name: str) -> str:
    """A backend name as an environment variable fragment: `openai-rt.eu` -> `OPENAI_RT_EU`."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())
