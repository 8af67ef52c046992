"""One Label Studio project per head: created or found, its configuration kept in step with the head, and its webhooks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from core.heads import HeadDef, get_head
from db import crud
from labeling.studio.client import StudioClient
from labeling.studio.config import (
    LABEL_CONTROL,
    build_label_config,
    config_label_names,
    instructions,
    project_title,
)
from labeling.studio.errors import LabelConfigConflict


def project_key(head: str) -> str:
    return f"label_studio:project:{head}"


def push_key(head: str) -> str:
    return f"label_studio:push:{head}"


def pull_key(head: str) -> str:
    return f"label_studio:pull:{head}"


def client_or_default(client: StudioClient | None) -> StudioClient:
    return client if client is not None else StudioClient.from_settings()


def project_settings(head: HeadDef) -> dict[str, Any]:
    """The Label Studio project settings that follow from a head."""
    al = head.active_learning
    return {
        "label_config": build_label_config(head),
        "expert_instruction": instructions(head),
        "show_instruction": True,
        "show_skip_button": True,
        "maximum_annotations": al.annotations_per_task,
        "overlap_cohort_percentage": 100,
        "show_collab_predictions": al.show_predictions,
        "description": head.description,
    }


def ensure_project(session: Session, *, head: str, client: StudioClient | None = None) -> dict[str, Any]:
    """The head's project, created or found (by the recorded id, then by title), with its configuration
    brought up to date. Adding labels updates it; removing a label that annotations use is refused with
    :class:`LabelConfigConflict`. Returns {project_id, created, updated, title}."""
    hd = get_head(head)
    client = client_or_default(client)
    wanted = project_settings(hd)
    title = project_title(hd.name)
    state = crud.get_sync_state(session, name=project_key(hd.name))
    project = None
    if state.get("project_id") and state.get("url") == client.url:
        project = client.get_project(int(state["project_id"]))
    if project is None:
        project = client.find_project(title)
    created = updated = False
    changed: list[str] = []
    if project is None:
        project = client.create_project(title=title, **wanted)
        created = True
    else:
        current = config_label_names(project.get("label_config") or "")
        removed = [name for name in current if name not in hd.label_names]
        if removed:
            used = client.used_labels(int(project["id"]), LABEL_CONTROL)
            in_use = {name: used[name] for name in removed if used.get(name)}
            if in_use:
                detail = ", ".join(f"{name!r} ({n} annotation(s))" for name, n in in_use.items())
                raise LabelConfigConflict(
                    f"head {hd.name!r} no longer has label(s) {detail} that annotations of Label Studio project "
                    f"{project['id']} ({title}) use; Label Studio would lose them. Keep the label(s) in "
                    f"{hd.source_file or 'the head file'}, or relabel those tasks first, then run the command again"
                )
        keys = ("label_config", "maximum_annotations", "show_collab_predictions")
        changed = [k for k in keys if project.get(k) != wanted[k]]
        # Label Studio sanitizes the instructions' HTML: compare with what we sent last time
        if state.get("instructions_sha") != _sha(wanted["expert_instruction"]):
            changed.append("expert_instruction")
        if changed:
            project = client.update_project(int(project["id"]), **wanted)
            updated = True
    crud.set_sync_state(
        session,
        name=project_key(hd.name),
        value={
            "project_id": int(project["id"]),
            "url": client.url,
            "title": title,
            "instructions_sha": _sha(wanted["expert_instruction"]),
        },
    )
    session.commit()
    return {"project_id": int(project["id"]), "created": created, "updated": updated, "changed": changed, "title": title}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def project_id_for(session: Session, *, head: str, client: StudioClient) -> int | None:
    state = crud.get_sync_state(session, name=project_key(head))
    if state.get("project_id") and state.get("url") == client.url:
        return int(state["project_id"])
    return None


def register_webhooks(
    session: Session, *, heads: Sequence[str], url: str, client: StudioClient | None = None
) -> dict[str, int]:
    """Make each head's project post its annotation events to ``url`` (once). Returns {head: webhook id}."""
    client = client_or_default(client)
    out = {}
    for head in heads:
        pid = ensure_project(session, head=head, client=client)["project_id"]
        out[head] = client.ensure_webhook(pid, url)
    return out
