"""Annotator accounts on the Label Studio server: add, list, remove.

Self sign-up is off (``studio start`` sets ``LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK``), so an account is
made in one of two ways, both through the organization's invitation link, which is renewed before and after
each use so that no earlier link keeps working:

- :func:`add_annotator` with a generated password: distilloop signs the account up through the link, as a
  person would on the sign-up page, and hands back the password once (it is stored nowhere);
- ``invite_only=True``: a fresh sign-up link is handed back once; the annotator chooses their own password.

Every account of the organization sees every project, so a new annotator has access to all heads' projects.
:func:`remove_annotator` removes the account from the organization (Label Studio's soft delete): its
answers stay and keep their attribution; it sees no project and can no longer annotate.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from labeling.studio.client import StudioClient
from labeling.studio.errors import LabelStudioError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class NewAnnotator:
    email: str
    login_url: str
    password: str | None = field(default=None, repr=False)  # shown once, stored nowhere
    invite_url: str | None = field(default=None, repr=False)  # shown once; the next `add` invalidates it


def _check_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise ValueError(f"expected an e-mail address such as ana@example.org, found {email!r}")
    return email


def list_annotators(client: StudioClient | None = None, *, include_removed: bool = False) -> list[dict[str, Any]]:
    """The organization's accounts (the admin included), oldest first."""
    client = client or StudioClient.from_settings()
    users = sorted(client.users(), key=lambda u: u["id"])
    return [u for u in users if include_removed or not u["removed"]]


def add_annotator(email: str, *, invite_only: bool = False, client: StudioClient | None = None) -> NewAnnotator:
    """Create an annotator account with a generated password, or (``invite_only``) a fresh invitation link."""
    email = _check_email(email)
    client = client or StudioClient.from_settings()
    if any(u["email"] == email for u in client.users()):
        raise ValueError(f"{email} already has a Label Studio account: `distilloop studio annotators list` shows it")
    token = client.new_invite()
    invite_url = f"{client.url}/user/signup/?token={token}"
    login_url = f"{client.url}/user/login/"
    if invite_only:
        return NewAnnotator(email=email, login_url=login_url, invite_url=invite_url)
    password = secrets.token_urlsafe(12)
    try:
        _sign_up(client.url, invite_url, email, password)
    finally:
        client.new_invite()  # the link just used stops working
    if not any(u["email"] == email for u in client.users()):
        raise LabelStudioError(f"Label Studio did not create the account {email} (its sign-up page refused it)")
    return NewAnnotator(email=email, login_url=login_url, password=password)


def remove_annotator(email: str, *, client: StudioClient | None = None) -> dict[str, Any]:
    """Remove an annotator from the organization; their answers stay attributed to them."""
    email = _check_email(email)
    client = client or StudioClient.from_settings()
    users = [u for u in client.users() if u["email"] == email]
    if not users:
        raise LookupError(f"no Label Studio account {email}: `distilloop studio annotators list` shows the accounts")
    me = client.whoami()
    if users[0]["id"] == me["id"]:
        raise ValueError(f"{email} is the admin account that distilloop uses; it cannot be removed")
    client.remove_member(users[0]["id"])
    return users[0]


def _sign_up(url: str, invite_url: str, email: str, password: str) -> None:
    """Sign up through Label Studio's own sign-up page with the invitation link (form + CSRF cookie)."""
    path = invite_url[len(url):]
    with httpx.Client(base_url=url, follow_redirects=True, timeout=60) as s:
        try:
            s.get("/user/signup/")
            r = s.post(
                path,
                data={"email": email, "password": password, "csrfmiddlewaretoken": s.cookies.get("csrftoken") or ""},
                headers={"Referer": f"{url}/user/signup/"},
            )
        except httpx.HTTPError as e:
            raise LabelStudioError(f"Label Studio at {url} did not answer while creating the account {email}: {e}") from None
        if r.status_code >= 400:
            raise LabelStudioError(f"Label Studio at {url} refused to create the account {email} (HTTP {r.status_code})")

