"""The Label Studio client: the ONLY module of distilloop that imports ``label_studio_sdk``; it talks to the
server with retries and clear errors (:mod:`labeling.studio.errors`) and knows nothing about the database
(:mod:`labeling.studio.push` and :mod:`labeling.studio.pull` do) nor about heads (:mod:`labeling.studio.config`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from labeling.studio.errors import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


#: annotation events a webhook receiver listens to
WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED"]


@dataclass
class TaskPage:
    tasks: list[dict[str, Any]]
    has_next: bool


@dataclass
class StudioClient:
    """A Label Studio connection with retries (exponential backoff) and errors for people.

    Build it with :meth:`from_settings`; ``retries``/``backoff`` bound how long a restart is waited for."""

    url: str
    api_key: str = field(repr=False)
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0
    timeout: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    _sdk: Any = field(default=None, init=False, repr=False)
    _emails: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _http: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, **kwargs: Any) -> StudioClient:
        """A client for LABEL_STUDIO_URL with LABEL_STUDIO_API_KEY, or the token `studio start` created."""
        from core.settings import get_settings
        from labeling.studio.credentials import read_token

        settings = get_settings()
        key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else read_token()
        if not key:
            raise LabelStudioAuthError(
                f"no API token for Label Studio at {settings.label_studio_url}: set LABEL_STUDIO_API_KEY "
                "(Account & Settings → Access token) or run `distilloop studio start`, which creates one"
            )
        return cls(url=settings.label_studio_url.rstrip("/"), api_key=key, **kwargs)

    @property
    def sdk(self) -> Any:
        if self._sdk is None:
            from label_studio_sdk import LabelStudio

            self._sdk = LabelStudio(base_url=self.url, api_key=self.api_key, timeout=self.timeout, max_retries=0)
        return self._sdk

    # -- error handling --

    def call(self, what: str, fn: Callable[..., T], *args: Any, retry: bool = True, **kwargs: Any) -> T:
        """Run one SDK call; retry transient failures with backoff; raise errors for people."""
        from label_studio_sdk.core.api_error import ApiError

        attempts = self.retries + 1 if retry else 1
        delay = self.backoff
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args, **kwargs)
            except ApiError as e:
                if e.status_code in (401, 403):
                    raise LabelStudioAuthError(
                        f"Label Studio at {self.url} refused the API token while {what} (HTTP {e.status_code}): "
                        "check LABEL_STUDIO_API_KEY (or the token file `distilloop studio start` wrote)",
                        status=e.status_code,
                    ) from None
                if e.status_code is not None and e.status_code < 500 and e.status_code not in (408, 429):
                    raise LabelStudioError(
                        f"Label Studio at {self.url} rejected the request while {what} "
                        f"(HTTP {e.status_code}): {_short(e.body)}",
                        status=e.status_code,
                    ) from None
                last = e
            except (httpx.TransportError, ConnectionError) as e:
                last = e
            except ValueError as e:
                # a truncated or non-JSON answer from a server that is going down
                if "json" not in str(e).lower() and "JSON" not in type(e).__name__:
                    raise
                last = e
            if attempt < attempts:
                log.warning("Label Studio at %s: %s failed (%s); retrying in %.1fs", self.url, what, _describe(last), delay)
                self.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise LabelStudioUnavailable(
            f"Label Studio at {self.url} did not answer while {what} after {attempts} attempt(s) "
            f"({_describe(last)}). Start it with `distilloop studio start` (or check LABEL_STUDIO_URL), "
            "then run the command again: what was done so far is recorded and nothing is repeated."
        )

    # -- users --

    def whoami(self) -> dict[str, Any]:
        user = self.call("checking the API token", self.sdk.users.whoami)
        return {"id": user.id, "email": user.email}

    def user_email(self, user_id: int | None) -> str | None:
        """The e-mail of a user id (cached; the users list is read once). None for an annotator removed
        from the organization: Label Studio then shows "Deleted" instead of the address, so the caller
        keeps the name it recorded for that user's answers."""
        if user_id is None:
            return "unknown"
        if user_id not in self._emails:
            for user in self.users():
                self._emails[int(user["id"])] = user["email"] if not user["removed"] else None
        return self._emails.get(int(user_id), f"user:{user_id}")

    def users(self) -> list[dict[str, Any]]:
        """Every account of the organization: id, email, joined, last activity, and whether it was removed
        (Label Studio keeps removed members, masking their e-mail as "Deleted")."""
        out = []
        for user in self.call("listing users", lambda: list(self.sdk.users.list())):
            email = user.email or ""
            out.append({
                "id": int(user.id),
                "email": email if "@" in email else None,
                "removed": "@" not in email,
                "date_joined": user.date_joined.isoformat() if getattr(user, "date_joined", None) else None,
                "last_activity": user.last_activity.isoformat() if getattr(user, "last_activity", None) else None,
            })
        return out

    def organization_id(self) -> int:
        user = self.call("checking the API token", self.sdk.users.whoami)
        return int(user.active_organization)

    def new_invite(self) -> str:
        """A fresh invitation token of the organization (sign-up link); every earlier link stops working."""
        return self.call("renewing the invitation link", self.sdk.organizations.reset_token).token

    def remove_member(self, user_id: int) -> None:
        """Remove an account from the organization (Label Studio's soft delete: its answers stay, attributed
        to it; it sees no project and can no longer annotate)."""
        org = self.organization_id()
        self.call(f"removing user {user_id}", self.sdk.organizations.members.delete, org, user_id)
        self._emails.pop(int(user_id), None)

    # -- projects --

    def get_project(self, project_id: int) -> dict[str, Any] | None:
        try:
            project = self.call(f"reading project {project_id}", self.sdk.projects.get, project_id)
        except LabelStudioError as e:
            if e.status == 404:
                return None
            raise
        return _project_dict(project)

    def find_project(self, title: str) -> dict[str, Any] | None:
        for project in self.call("listing projects", lambda: list(self.sdk.projects.list(title=title))):
            if project.title == title:
                return _project_dict(project)
        return None

    def create_project(self, *, title: str, **settings: Any) -> dict[str, Any]:
        # creating twice would give two projects: no blind retry (callers look the project up again)
        project = self.call(f"creating project {title!r}", self.sdk.projects.create, title=title, retry=False, **settings)
        return _project_dict(project)

    def update_project(self, project_id: int, **settings: Any) -> dict[str, Any]:
        project = self.call(f"updating project {project_id}", self.sdk.projects.update, project_id, **settings)
        return _project_dict(project)

    def used_labels(self, project_id: int, control: str) -> dict[str, int]:
        """How many annotations use each label name of the choices control ``control`` in a project."""
        counts: dict[str, int] = {}
        for task in self.iter_tasks(project_id, page_size=500, fields="all", only_annotated=True):
            for ann in task.get("annotations") or []:
                for item in ann.get("result") or []:
                    if item.get("from_name") == control:
                        for name in (item.get("value") or {}).get("choices") or []:
                            counts[name] = counts.get(name, 0) + 1
        return counts

    # -- tasks --

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Create tasks in bulk (one request); returns their ids in order. Never retried blindly: the
        caller looks tasks up by message id after a failure, so that no task is created twice."""
        response = self.call(
            f"importing {len(tasks)} tasks into project {project_id}",
            self.sdk.projects.import_tasks,
            project_id,
            request=list(tasks),
            return_task_ids=True,
            retry=False,
        )
        ids = list(response.task_ids or [])
        if len(ids) != len(tasks):
            raise LabelStudioError(
                f"Label Studio imported {len(ids)} task(s) of {len(tasks)} into project {project_id}; "
                "run the push again: tasks already there are found by message id and not created twice"
            )
        return ids

    def list_tasks(
        self,
        project_id: int,
        *,
        page: int,
        page_size: int = 500,
        fields: str = "all",
        updated_after: datetime | None = None,
        only_annotated: bool | None = None,
        include: str | None = None,
        after_id: int | None = None,
    ) -> TaskPage:
        """One page of a project's tasks, ordered by id. With ``after_id`` (a cursor: the last id seen) and
        ``page=1`` a long listing stays exact while tasks are added or deleted."""
        query: dict[str, Any] = {"ordering": ["tasks:id"]}
        filters: list[dict[str, Any]] = []
        if updated_after is not None:
            when = updated_after if updated_after.tzinfo else updated_after.replace(tzinfo=UTC)
            stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            filters.append({"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": stamp})
        if after_id:
            filters.append({"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(after_id)})
        if filters:
            query["filters"] = {"conjunction": "and", "items": filters}
        params = [
            ("project", str(project_id)), ("page", str(page)), ("page_size", str(page_size)), ("fields", fields),
            ("query", json.dumps(query)),
        ]
        if only_annotated is not None:
            params.append(("only_annotated", str(only_annotated).lower()))
        if include is not None:
            params.append(("include", include))
        body = self.call(f"reading tasks of project {project_id} (page {page})", self._get_json, "/api/tasks/", params)
        tasks = list(body.get("tasks") or [])
        total = body.get("total")
        more = len(tasks) == page_size and (total is None or page * page_size < int(total))
        return TaskPage(tasks=tasks, has_next=more)

    def iter_tasks(self, project_id: int, *, page_size: int = 1000, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every task of a project (id cursor: exact while tasks come and go)."""
        cursor = 0
        while True:
            batch = self.list_tasks(project_id, page=1, page_size=page_size, after_id=cursor, **kwargs)
            yield from batch.tasks
            if not batch.has_next or not batch.tasks:
                return
            cursor = max(int(t["id"]) for t in batch.tasks)

    def export_tasks(self, project_id: int, task_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Full tasks (data and every annotation, cancelled ones included) of the given ids, in one
        request (Label Studio's export API, which the SDK cannot filter by id)."""
        if not task_ids:
            return []

        params = [("exportType", "JSON"), ("download_all_tasks", "true")] + [("ids[]", str(i)) for i in task_ids]
        return self.call(
            f"exporting {len(task_ids)} task(s) of project {project_id}",
            self._get_json, f"/api/projects/{project_id}/export", params,
        )

    def _get_json(self, path: str, params: Sequence[tuple[str, str]]) -> Any:
        """A GET with the SDK's authentication, answered as plain JSON (large listings: the SDK's models
        cost more CPU than the server's answer, and its export call cannot filter by task id)."""
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout)
        response = self._http.get(f"{self.url}{path}", params=list(params), headers=self.sdk._client_wrapper.get_headers())
        if response.status_code >= 400:
            from label_studio_sdk.core.api_error import ApiError

            raise ApiError(status_code=response.status_code, body=response.text[:400], headers=dict(response.headers))
        return response.json()


    def task_ids_by_message(self, project_id: int) -> dict[int, int]:
        """{message_id: task_id} of every task of a project (the key that makes pushes idempotent)."""
        out: dict[int, int] = {}
        for task in self.iter_tasks(project_id, fields="task_only", include="id,data"):
            mid = (task.get("data") or {}).get("message_id")
            if mid is not None:
                out.setdefault(int(mid), int(task["id"]))
        return out

    def task_ids(self, project_id: int) -> set[int]:
        return {int(t["id"]) for t in self.iter_tasks(project_id, fields="task_only", include="id")}

    def delete_task(self, task_id: int) -> None:
        self.call(f"deleting task {task_id}", self.sdk.tasks.delete, str(task_id))

    # -- annotations (what annotators do; used by tests and demos) --

    def annotate(
        self, task_id: int, result: Sequence[dict[str, Any]], *, was_cancelled: bool = False, lead_time: float = 1.0
    ) -> int:
        ann = self.call(
            f"annotating task {task_id}",
            self.sdk.annotations.create,
            task_id,
            result=list(result),
            was_cancelled=was_cancelled,
            lead_time=lead_time,
            retry=False,
        )
        return int(ann.id)

    def update_annotation(self, annotation_id: int, result: Sequence[dict[str, Any]]) -> None:
        self.call(f"updating annotation {annotation_id}", self.sdk.annotations.update, annotation_id, result=list(result))

    def delete_annotation(self, annotation_id: int) -> None:
        self.call(f"deleting annotation {annotation_id}", self.sdk.annotations.delete, annotation_id, retry=False)

    # -- webhooks --

    def ensure_webhook(self, project_id: int, url: str) -> int:
        """A webhook of ``project_id`` posting annotation events to ``url`` (created once)."""
        for hook in self.call("listing webhooks", lambda: list(self.sdk.webhooks.list(project=str(project_id)))):
            if hook.url == url and (hook.project in (None, project_id)):
                return int(hook.id)
        hook = self.call(
            f"creating a webhook for project {project_id}",
            self.sdk.webhooks.create,
            url=url,
            project=project_id,
            send_payload=True,
            send_for_all_actions=False,
            actions=WEBHOOK_ACTIONS,
            is_active=True,
            retry=False,
        )
        return int(hook.id)


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def _project_dict(project: Any) -> dict[str, Any]:
    keys = (
        "id", "title", "label_config", "expert_instruction", "maximum_annotations", "show_collab_predictions", "task_number",
    )
    data = _as_dict(project)
    return {k: data.get(k) for k in keys}


def _short(body: Any, limit: int = 400) -> str:
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "no answer"
    status = getattr(err, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
