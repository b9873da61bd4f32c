"""Generators of the chart's and manifests' derived files: Argo CD health checks, peering CRDs."""
