"""The state of a loopback API server: objects, resource versions, watches, finalizers, GC.

Everything the Kubernetes API promises that an operator relies on, kept in memory:
- every write bumps one cluster-wide resourceVersion; a stale one in an update is a 409;
- `metadata.generation` moves only when something outside metadata and status changes;
- with a status subresource, the main endpoint ignores status and `/status` touches nothing else;
- custom resources are defaulted and validated from their CRD's schema and CEL rules;
- deleting an object with finalizers only marks it; it goes when the last finalizer does;
- a deleted owner takes its dependents with it (ownerReferences, background propagation);
- watches see ADDED/MODIFIED/DELETED in order from any resourceVersion still in the log, and
  an older one gets 410 Gone, as from etcd's compacted history.
Thread-safe: tests call it directly while the HTTP side serves an operator.
"""

from __future__ import annotations

import copy
import itertools
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

# The generic engine (structural defaults, OpenAPI schema, CEL) that any CRD's schema runs on.
from voiceop.api.admission import Admission
from voiceop.sandbox.apiserver.errors import ApiError, not_found
from voiceop.sandbox.apiserver.faults import FaultsAndCounts
from voiceop.sandbox.apiserver.patching import (
    PatchError,
    changed_fields,
    disown,
    json_patch,
    merge_patch,
    owned_by_update,
    server_side_apply,
)
from voiceop.sandbox.apiserver.resources import BUILTIN_TYPES, ResourceType, types_from_crd
from voiceop.sandbox.apiserver.scale import scale_view, set_path
from voiceop.sandbox.apiserver.selectors import SelectorError, parse_field_selector, parse_selector
from voiceop.sandbox.apiserver.watch import Watch, WatchEvent
from voiceop.sandbox.apiserver.watching import Watching
from voiceop.status import now_iso

Obj = dict[str, Any]
ObjKey = tuple[str, str]  # (namespace or "", name)
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
UPDATER = "(updates)"  # the field manager of every write that is no apply
# Kinds whose spec.replicas kube-apiserver defaults to 1 (also when an apply removes it).
DEFAULT_ONE_REPLICA = {("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")}
EVENT_LOG_SIZE = 20_000


class Store(FaultsAndCounts, Watching):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._objects: dict[tuple[str, str], dict[ObjKey, Obj]] = {}
        # (kind, object) -> {field manager: what it applied last}: field ownership for apply.
        self._applied: dict[tuple[tuple[str, str], ObjKey], dict[str, Obj]] = {}
        self._uids: set[str] = set()  # of every object stored: owners the garbage collector knows
        self._revision = itertools.count(1)
        self._last_revision = 0
        self._log: deque[WatchEvent] = deque(maxlen=EVENT_LOG_SIZE)
        self._watches: set[Watch] = set()
        self._faults: dict[str, list[tuple[int, int, str | None]]] = {}
        self._admissions: dict[tuple[str, str, str], tuple[dict[str, Any] | None, Admission]] = {}
        self.request_counts: dict[str, int] = {}
        self.request_log: deque[tuple[str, str]] = deque(maxlen=2000)  # (verb, path), newest last
        # Stand-ins for controllers (see controllers.py): called after every change, under the lock.
        self.listeners: list[Callable[[WatchEvent], None]] = []
        for rtype in BUILTIN_TYPES:
            self._register(rtype)

    # --- resource types -------------------------------------------------------------------

    def _register(self, rtype: ResourceType) -> None:
        self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self._objects.setdefault(rtype.key, {})

    def resource_types(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def resource_type(self, group: str, version: str, plural: str) -> ResourceType:
        with self._lock:
            rtype = self._types.get((group, version, plural))
        if rtype is None:
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({group}/{version} {plural})",
            )
        return rtype

    def type_of_kind(self, api_version: str, kind: str) -> ResourceType:
        with self._lock:
            for rtype in self._types.values():
                if rtype.api_version == api_version and rtype.kind == kind:
                    return rtype
        raise ApiError(404, "NotFound", f"no resource type for {api_version} {kind}")

    # --- reads ----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._last_revision

    def _table(self, rtype: ResourceType) -> dict[ObjKey, Obj]:
        return self._objects[rtype.key]

    def _ns(self, rtype: ResourceType, namespace: str | None) -> str:
        if rtype.namespaced and not namespace:
            raise ApiError(400, "BadRequest", f"{rtype.plural} is namespaced: a namespace is required")
        return namespace or "" if rtype.namespaced else ""

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._lock:
            obj = self._table(rtype).get((self._ns(rtype, namespace), name))
            if obj is None:
                raise not_found(rtype, name)
            return {**copy.deepcopy(obj), "apiVersion": rtype.api_version}

    def find(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        """The object, or None: a convenience for tests."""
        rtype = self.type_of_kind(api_version, kind)
        try:
            return self.get(rtype, namespace, name)
        except ApiError:
            return None

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        after: ObjKey | None = None,
        limit: int | None = None,
    ) -> tuple[list[Obj], int]:
        """Matching objects in (namespace, name) order; with `after` and `limit`, the `limit`
        that follow the key `after` (a chunk of a paginated list)."""
        try:
            labels = parse_selector(label_selector)
            fields = parse_field_selector(field_selector)
        except (SelectorError, ValueError) as error:
            raise ApiError(400, "BadRequest", str(error)) from None
        with self._lock:
            matching = (
                obj
                for (ns, name), obj in sorted(self._table(rtype).items())
                if (after is None or (ns, name) > after)
                and (not namespace or ns == namespace)
                and labels(obj["metadata"].get("labels") or {})
                and fields(obj)
            )
            chosen = matching if limit is None else itertools.islice(matching, limit)
            items = [{**copy.deepcopy(obj), "apiVersion": rtype.api_version} for obj in chosen]
            return items, self._last_revision

    # --- writes ---------------------------------------------------------------------------

    def _emit(self, event_type: str, rtype: ResourceType, old: Obj | None, new: Obj) -> None:
        event = WatchEvent(int(new["metadata"]["resourceVersion"]), event_type, rtype.key, old, new)
        self._log.append(event)
        for watch in list(self._watches):
            message = watch.event_for(event)
            if message is not None:
                watch.offer(copy.deepcopy(message))
        for listener in list(self.listeners):
            listener(event)

    def _bump(self, obj: Obj) -> None:
        self._last_revision = next(self._revision)
        obj["metadata"]["resourceVersion"] = str(self._last_revision)

    def _admit(self, rtype: ResourceType, obj: Obj) -> Obj:
        """Defaults and validation of a custom resource from its CRD schema, as on a cluster; of
        the built-in kinds, only the defaults voiceop's writes meet (a Deployment's replicas)."""
        if rtype.schema is None:
            if rtype.key in DEFAULT_ONE_REPLICA and isinstance(obj.get("spec"), dict):
                obj["spec"].setdefault("replicas", 1)
            return obj
        spec_and_more = {k: v for k, v in obj.items() if k != "status"}
        defaulted, errors = self._admission_for(rtype).admit(spec_and_more)
        if errors:
            name = obj.get("metadata", {}).get("name", "")
            causes = [{"reason": "FieldValueInvalid", "message": e.message, "field": e.path} for e in errors]
            message = f'{rtype.kind} "{name}" is invalid: ' + "; ".join(str(e) for e in errors)
            raise ApiError(422, "Invalid", message, causes)
        if "status" in obj:
            defaulted["status"] = obj["status"]
        return defaulted

    def _admission_for(self, rtype: ResourceType) -> Admission:
        """The admission of a kind's current schema, built once per schema. Keyed by kind and
        checked by identity against the schema it holds (which keeps that schema alive): an id()
        key alone was reused by a freed schema of another kind, and judged objects by it."""
        served = (rtype.group, rtype.version, rtype.plural)
        held = self._admissions.get(served)
        if held is None or held[0] is not rtype.schema:
            held = self._admissions[served] = (rtype.schema, Admission(rtype.schema or {}, strict=False))
        return held[1]

    def create(self, rtype: ResourceType, namespace: str | None, body: Obj) -> Obj:
        with self._lock:
            ns = self._ns(rtype, namespace or body.get("metadata", {}).get("namespace"))
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            if (ns, name) in self._table(rtype):
                raise ApiError(409, "AlreadyExists", f'{rtype.plural} "{name}" already exists')
            if rtype.namespaced and rtype.plural != "events":
                namespaces = self._objects[("", "namespaces")]
                if namespaces and ("", ns) not in namespaces:
                    raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
            obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
            if "status" in rtype.subresources:
                obj.pop("status", None)
            obj = self._admit(rtype, obj)
            meta = obj["metadata"]
            if rtype.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso())
            if rtype.has_generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            meta.pop("deletionTimestamp", None)
            self._bump(obj)
            self._table(rtype)[(ns, name)] = obj
            self._uids.add(meta["uid"])
            if rtype.key == CRD_KEY:
                self._served_crd(obj)
            self._emit("ADDED", rtype, None, obj)
            self._collect_if_orphaned(rtype, (ns, name), obj)
            return {**copy.deepcopy(obj), "apiVersion": rtype.api_version}

    def _served_crd(self, crd: Obj) -> None:
        for served in types_from_crd(crd):
            self._register(served)
        crd["status"] = {
            "conditions": [
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "",
                    "lastTransitionTime": now_iso(),
                },
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "",
                    "lastTransitionTime": now_iso(),
                },
            ],
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        }

    def _store_update(
        self,
        rtype: ResourceType,
        key: ObjKey,
        old: Obj,
        new: Obj,
        subresource: str | None,
        applier: str | None = None,
    ) -> Obj:
        """Common tail of PUT and PATCH: subresource isolation, identity, generation, finalizers,
        and field ownership (what this write changed is no other applier's any more)."""
        # A resourceVersion sent is a precondition on /status too (kube-apiserver checks it on
        # the object the write produced, before the status is isolated from the rest).
        sent_version = (new.get("metadata") or {}).get("resourceVersion")
        if subresource == "status":
            candidate = copy.deepcopy(old)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
            new = candidate
        else:
            if "status" in rtype.subresources:
                new = {k: v for k, v in new.items() if k != "status"}
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            new = self._admit(rtype, new)
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        if sent_version and sent_version != old_meta["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rtype.plural} "{key[1]}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        for immutable in ("uid", "creationTimestamp", "name", "namespace", "generation", "resourceVersion"):
            if immutable in old_meta:
                meta[immutable] = old_meta[immutable]
            else:
                meta.pop(immutable, None)
        if "deletionTimestamp" in old_meta:
            meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        if new == old:
            return {**copy.deepcopy(old), "apiVersion": rtype.api_version}  # a no-op write
        if rtype.has_generation and _without(new, "metadata", "status") != _without(
            old, "metadata", "status"
        ):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if "deletionTimestamp" in meta and not meta.get("finalizers"):
            self._remove(rtype, key)
            return new
        managers = self._applied.get((rtype.key, key), {})
        for manager, applied in list(managers.items()):
            if manager != applier:
                managers[manager] = disown(applied, old, new, rtype.schema is None) or {}
        if applier is None and subresource != "status":
            # An update owns what it changed (one updater stands for all: none of voiceop's
            # checks tells updaters apart).
            changed = changed_fields(old, new)
            if changed:
                managers[UPDATER] = owned_by_update(managers.get(UPDATER, {}), changed)
                self._applied[(rtype.key, key)] = managers
        self._bump(new)
        self._table(rtype)[key] = new
        self._emit("MODIFIED", rtype, old, new)
        self._collect_if_orphaned(rtype, key, new)
        return {**copy.deepcopy(new), "apiVersion": rtype.api_version}

    def replace(
        self, rtype: ResourceType, namespace: str | None, name: str, body: Obj, subresource: str | None = None
    ) -> Obj:
        with self._lock:
            key = (self._ns(rtype, namespace), name)
            old = self._table(rtype).get(key)
            if old is None:
                raise not_found(rtype, name)
            if subresource == "scale":
                return self._write_scale(rtype, key, old, body)
            return self._store_update(rtype, key, old, copy.deepcopy(body), subresource)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = True,
    ) -> Obj:
        with self._lock:
            key = (self._ns(rtype, namespace), name)
            old = self._table(rtype).get(key)
            is_apply = content_type.startswith("application/apply-patch")
            if old is None and not is_apply:
                raise not_found(rtype, name)
            try:
                if is_apply:
                    if not field_manager:
                        raise ApiError(422, "Invalid", "fieldManager is required for apply")
                    managers = self._applied.setdefault((rtype.key, key), {})
                    if old is None:
                        created = self.create(rtype, namespace, body)
                        managers[field_manager] = copy.deepcopy(body)
                        return created
                    new = server_side_apply(
                        old,
                        body,
                        managers.get(field_manager),
                        associative_lists=rtype.schema is None,
                        others=[a for m, a in managers.items() if m != field_manager],
                        force=force,
                    )
                    managers[field_manager] = copy.deepcopy(body)
                elif content_type.startswith("application/json-patch"):
                    new = json_patch(old, body)
                else:  # merge-patch and strategic-merge-patch
                    new = merge_patch(old, body)
            except PatchError as error:
                raise ApiError(
                    409 if error.conflict else 422, "Conflict" if error.conflict else "Invalid", str(error)
                ) from None
            assert old is not None  # an apply to a missing object created it above
            if subresource == "scale":
                return self._write_scale(rtype, key, old, new)
            return self._store_update(rtype, key, old, new, subresource, field_manager if is_apply else None)

    # --- scale subresource ----------------------------------------------------------------

    def scale(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.get(rtype, namespace, name)
        return scale_view(rtype, obj)

    def _write_scale(self, rtype: ResourceType, key: ObjKey, old: Obj, body: Obj) -> Obj:
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", "spec.replicas: must be a non-negative integer")
        new = copy.deepcopy(old)
        set_path(new, rtype.spec_replicas_path, replicas)
        stored = self._store_update(rtype, key, old, new, None)
        return scale_view(rtype, stored)

    # --- deletion and garbage collection --------------------------------------------------

    def delete(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._lock:
            key = (self._ns(rtype, namespace), name)
            obj = self._table(rtype).get(key)
            if obj is None:
                raise not_found(rtype, name)
            if obj["metadata"].get("finalizers"):
                if "deletionTimestamp" not in obj["metadata"]:
                    new = copy.deepcopy(obj)
                    new["metadata"]["deletionTimestamp"] = now_iso()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    if rtype.has_generation:
                        new["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
                    self._bump(new)
                    self._table(rtype)[key] = new
                    self._emit("MODIFIED", rtype, obj, new)
                    obj = new
                return {**copy.deepcopy(obj), "apiVersion": rtype.api_version}
            self._remove(rtype, key)
            return {**copy.deepcopy(obj), "apiVersion": rtype.api_version}

    def _remove(self, rtype: ResourceType, key: ObjKey) -> None:
        obj = self._table(rtype).pop(key)
        self._uids.discard(obj["metadata"].get("uid", ""))
        self._applied.pop((rtype.key, key), None)
        self._bump(obj)
        self._emit("DELETED", rtype, obj, obj)
        if rtype.key == CRD_KEY:
            self._unserve_crd(obj)
        if rtype.key == ("", "namespaces"):
            self._delete_namespace_contents(key[1])
        self._collect_dependents(obj["metadata"]["uid"])

    def _unserve_crd(self, crd: Obj) -> None:
        for served in types_from_crd(crd):
            for key in list(self._objects.get(served.key, {})):
                if key in self._objects[served.key]:
                    self._remove(served, key)
            self._types.pop((served.group, served.version, served.plural), None)

    def _delete_namespace_contents(self, namespace: str) -> None:
        for rtype in list(self._types.values()):
            if rtype.namespaced:
                for key in [k for k in self._table(rtype) if k[0] == namespace]:
                    if key in self._table(rtype):
                        self.delete(rtype, namespace, key[1])

    def _collect_if_orphaned(self, rtype: ResourceType, key: ObjKey, obj: Obj) -> None:
        """As kube's garbage collector does with an object written with ownerReferences none of
        whose owners exists (an operator racing its owner's deletion): it is deleted."""
        references = obj["metadata"].get("ownerReferences") or []
        orphaned = bool(references) and not any(ref.get("uid") in self._uids for ref in references)
        if orphaned and key in self._table(rtype):
            self.delete(rtype, key[0] or None, key[1])

    def _collect_dependents(self, owner_uid: str) -> None:
        """Background cascading deletion: dependents whose last owner is gone are deleted."""
        for rtype in self._unique_types():
            for key, obj in list(self._table(rtype).items()):
                references = obj["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in references):
                    continue
                remaining = [ref for ref in references if ref.get("uid") != owner_uid]
                if remaining:
                    new = copy.deepcopy(obj)
                    new["metadata"]["ownerReferences"] = remaining
                    self._bump(new)
                    self._table(rtype)[key] = new
                    self._emit("MODIFIED", rtype, obj, new)
                elif key in self._table(rtype):
                    self.delete(rtype, key[0] or None, key[1])

    def _unique_types(self) -> Iterable[ResourceType]:
        seen: dict[tuple[str, str], ResourceType] = {}
        for rtype in self._types.values():
            seen.setdefault(rtype.key, rtype)
        return list(seen.values())

    # --- watches --------------------------------------------------------------------------


def _without(obj: Obj, *keys: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in keys}
