"""Label Studio commands: `studio start|stop|status|login|listen`, `studio annotators add|list|remove`, `push`,
`pull`, `agreement`, `holdout-batch`."""

from __future__ import annotations

import json
import time

import typer
from rich.table import Table

from app.commands._common import cli_errors, console, progress_bar

studio_cli = typer.Typer(help="Run the local Label Studio server and listen to its annotation events.", no_args_is_help=True)
annotators_cli = typer.Typer(help="Annotator accounts on the Label Studio server (self sign-up is off).", no_args_is_help=True)
studio_cli.add_typer(annotators_cli, name="annotators")


def register(cli: typer.Typer) -> None:
    cli.add_typer(studio_cli, name="studio")
    cli.command("push")(push)
    cli.command("pull")(pull)
    cli.command("agreement")(agreement)
    cli.command("holdout-batch")(holdout_batch)


def _errors():  # noqa: ANN202
    from labeling.studio.errors import LabelStudioError
    from labeling.studio.server import StudioError

    return cli_errors(ValueError, LookupError, FileNotFoundError, PermissionError, LabelStudioError, StudioError)


@studio_cli.command("start")
def start(
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for /health (the first start migrates)."),
) -> None:
    """Start Label Studio on LABEL_STUDIO_URL's port with its data under VAR_DIR (reuses a running one)."""
    from labeling.studio.server import start as start_server

    with _errors(), progress_bar("starting Label Studio (seconds)") as update:
        st = start_server(timeout=timeout, progress=update)
    _print_status(st)


@studio_cli.command("stop")
def stop() -> None:
    """Stop the Label Studio server distilloop started."""
    from labeling.studio.server import stop as stop_server

    with _errors():
        stopped = stop_server()
    console.print("Label Studio stopped" if stopped else "no Label Studio started by distilloop is running")


@studio_cli.command("status")
def status() -> None:
    """Is Label Studio running, healthy, and does it accept the API token?"""
    from labeling.studio.server import status as server_status

    with _errors():
        st = server_status()
    _print_status(st)
    if not st.healthy or st.token_ok is False:
        raise typer.Exit(1)


def _print_status(st) -> None:  # noqa: ANN001
    state = "[green]up[/green]" if st.healthy else "[red]down[/red]"
    owner = f"pid {st.pid}, started by distilloop" if st.managed else ("not started by distilloop" if st.healthy else "not running")
    console.print(f"Label Studio {state} at {st.url} ({owner})")
    if st.healthy:
        token = {True: f"[green]accepted[/green] (user {st.user})", False: "[red]refused[/red]", None: "not checked"}[st.token_ok]
        console.print(f"API token: {token}")
    console.print(f"data: {st.data_dir}  log: {st.log_file}")
    if st.message:
        console.print(st.message)


@studio_cli.command("login")
def login() -> None:
    """Where to log in to Label Studio: the URL, the admin user and where its password is (never the password)."""
    from core.settings import get_settings
    from labeling.studio.credentials import password_file

    settings = get_settings()
    console.print(f"Label Studio: {settings.label_studio_url.rstrip('/')}/user/login/")
    console.print(f"admin user:   {settings.label_studio_username}")
    if settings.label_studio_password is not None:
        console.print("password:     the LABEL_STUDIO_PASSWORD you set")
    elif password_file().exists():
        console.print(f"password:     in {password_file()} (readable by its owner only): cat it to read it")
    else:
        console.print("password:     not generated yet: `distilloop studio start` generates it (or set LABEL_STUDIO_PASSWORD)")
    console.print("annotators:   `distilloop studio annotators add EMAIL` gives each person an account of their own")


@annotators_cli.command("add")
def annotators_add(
    email: str = typer.Argument(..., help="The annotator's e-mail address (their login)."),
    invite: bool = typer.Option(False, "--invite", help="Print a sign-up link instead (they choose their own password)."),
) -> None:
    """Create an annotator account; its password (or sign-up link) is printed once and stored nowhere."""
    from labeling.studio.annotators import add_annotator

    with _errors():
        new = add_annotator(email, invite_only=invite)
    if new.invite_url:
        console.print(f"sign-up link for {new.email} (valid until the next `annotators add`; shown once):")
        console.print(new.invite_url, soft_wrap=True, highlight=False)
        console.print(f"they sign up there with {new.email} and a password of their choice, then log in at {new.login_url}")
    else:
        console.print(f"account {new.email} created; log in at {new.login_url}")
        console.print(f"password (shown once, stored nowhere): {new.password}", highlight=False)
    console.print("every account sees every head's project")


@annotators_cli.command("list")
def annotators_list(removed: bool = typer.Option(False, "--removed", help="Also list removed accounts.")) -> None:
    """The Label Studio accounts (the admin distilloop uses included)."""
    from labeling.studio.annotators import list_annotators

    with _errors():
        users = list_annotators(include_removed=removed)
    for u in users:  # one line each (a table would cut long addresses on a narrow terminal)
        console.print(f"{u['id']:>4}  {u['email'] or '(removed)'}  {'removed' if u['removed'] else 'active'}  "
                      f"joined {(u['date_joined'] or '-')[:16]}  last active {(u['last_activity'] or '-')[:16]}",
                      highlight=False, soft_wrap=True)


@annotators_cli.command("remove")
def annotators_remove(email: str = typer.Argument(..., help="The annotator's e-mail address.")) -> None:
    """Remove an annotator: they see no project any more; the labels they gave stay attributed to them."""
    from labeling.studio.annotators import remove_annotator

    with _errors():
        user = remove_annotator(email)
    console.print(f"removed {user['email']} (id {user['id']}); their answers stay, attributed to them")


@studio_cli.command("listen")
def listen(
    head: list[str] = typer.Option(..., "--head", help="Head(s) to pull for (repeat the option)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the receiver listens on."),
    port: int = typer.Option(8090, "--port", help="Port of the receiver."),
    poll: float = typer.Option(60.0, "--poll", help="Seconds between fallback polls."),
    public_url: str | None = typer.Option(None, "--public-url", help="URL Label Studio posts to (default: http://HOST:PORT/webhook)."),
) -> None:
    """Receive Label Studio's annotation webhooks and pull at once; poll every --poll seconds as a fallback."""
    from db.engine import session_scope
    from labeling.studio.projects import register_webhooks
    from labeling.studio.webhook import WebhookReceiver

    with _errors():
        receiver = WebhookReceiver(heads=head, host=host, port=port, poll_interval=poll)
        url = public_url or f"http://{host}:{port}/webhook"
        with session_scope() as session:
            hooks = register_webhooks(session, heads=head, url=url)
        receiver.start()
    console.print(f"listening on {receiver.url} for {', '.join(head)} (webhooks {hooks}); polling every {poll:g}s; Ctrl-C stops")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        console.print(json.dumps(receiver.counters(), default=str))


def push(
    head: str = typer.Option(..., "--head", help="Head whose pending queue items to push."),
    limit: int | None = typer.Option(None, "--limit", help="Push at most this many items."),
) -> None:
    """Push the head's pending queue items to its Label Studio project (with predictions unless hidden)."""
    from db.engine import session_scope
    from labeling.studio.push import push_queue

    with _errors(), session_scope() as session, progress_bar(f"pushing {head}") as update:
        r = push_queue(session, head=head, limit=limit, progress=update)
    console.print(
        f"project {r['project_id']}: {r['pushed']} task(s) created, {r['already_there']} already there, "
        f"{r['predictions']} prediction(s), {r['batches']} batch(es)"
    )


def pull(
    head: str = typer.Option(..., "--head", help="Head whose annotations to pull."),
    full: bool = typer.Option(False, "--full", help="Re-read every task, not only those changed since the last pull."),
) -> None:
    """Pull annotations into human labels (incremental, idempotent); report refused annotations."""
    from db.engine import session_scope
    from labeling.studio.pull import pull_annotations

    with _errors(), session_scope() as session, progress_bar(f"pulling {head} (tasks)") as update:
        r = pull_annotations(session, head=head, full=full, progress=update)
    console.print(
        f"project {r['project_id']}: {r['tasks_seen']} task(s) read, {r['labels_created']} new label(s), "
        f"{r['labels_updated']} updated, {r['labels_retracted']} retracted (annotation deleted), {r['unchanged']} unchanged; "
        f"{r['labelled']} labelled, {r['review']} to review, "
        f"{r['skipped']} skipped, {r['deleted']} deleted"
    )
    for ref in r["refused"]:
        console.print(f"[yellow]refused[/yellow] task {ref['task_id']} annotation {ref['annotation_id']} "
                      f"({ref['annotator']}): {ref['error']}")
    if r["refused"]:
        console.print(f"{len(r['refused'])} annotation(s) refused; fix them in Label Studio and pull again")


def agreement(head: str = typer.Option(..., "--head", help="Head to measure.")) -> None:
    """Inter-annotator agreement: raw agreement, Fleiss' kappa, Cohen's kappa per annotator pair."""
    from db.engine import session_scope
    from labeling.studio.agreement import agreement as compute

    with _errors(), session_scope() as session:
        r = compute(session, head=head)

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    console.print(
        f"{r['head']}: {r['items_with_several_annotators']} item(s) with several annotators; raw agreement "
        f"{fmt(r['raw_agreement'])}, Fleiss' kappa {fmt(r['fleiss_kappa'])}, Cohen's kappa {fmt(r['cohen_kappa'])}"
    )
    if r["pairwise"]:
        table = Table("annotators", "items", "raw agreement", "Cohen's kappa")
        for p in r["pairwise"]:
            table.add_row(" / ".join(p["annotators"]), str(p["items"]), fmt(p["raw_agreement"]), fmt(p["cohen_kappa"]))
        console.print(table)
    console.print(f"queue: {r['queue']}; {len(r['disagreements'])} disagreement(s)")


def holdout_batch(
    head: str = typer.Option(..., "--head", help="Head to label the holdout for."),
    n: int = typer.Option(50, "--n", help="How many random pool messages to move into the holdout."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (repeatable samples)."),
    push_now: bool = typer.Option(True, "--push/--no-push", help="Push the batch to Label Studio at once."),
) -> None:
    """Queue a random holdout batch for humans (indistinguishable from other tasks, never trained on)."""
    from db.engine import session_scope
    from labeling.studio.push import holdout_batch as make_batch
    from labeling.studio.push import push_queue

    with _errors(), session_scope() as session:
        r = make_batch(session, head=head, n=n, seed=seed)
        console.print(f"{r['queued']} message(s) moved into the holdout and queued for {head}")
        if push_now:
            with progress_bar(f"pushing {head}") as update:
                p = push_queue(session, head=head, progress=update)
            console.print(f"project {p['project_id']}: {p['pushed']} task(s) created")
