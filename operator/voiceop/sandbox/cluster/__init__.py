"""A real Kubernetes control plane on 127.0.0.1, built from source, with sandbox nodes.

etcd, kube-apiserver (its own throwaway CA, RBAC), kube-controller-manager and kube-scheduler
run as processes of the one `voiceop-k8s` binary that `controlplane/build.sh` builds; the
sandbox kubelet registers nodes and runs the pods bound to them as `voiceop media-sim`
processes on 127.x addresses. A test tool, never a cluster in production.
"""
