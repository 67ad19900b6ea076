"""The `baton` command. Wiring lives here: settings -> connector -> pipeline -> report."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapter import report
from adapter.errors import BatonError
from adapter.manifest import load_manifest
from adapter.pipeline import audit
from adapter.policy import EXAMPLE_POLICY, load_policy
from adapter.settings import Settings

CRMS = ("hubspot", "salesforce")
err = Console(stderr=True)


def _connector(crm: str, settings: Settings, redis=None):
    """The one wiring point to `connectors/`, for commands and for worker processes (as their
    connector factory). `redis` is the queue's connection: the HubSpot connector shares its
    rate limit across workers through it."""
    from connectors import get_connector

    return get_connector(crm, settings.values, redis=redis)


def cmd_init(args, settings: Settings) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        err.print(f"{path} exists; use --force to overwrite")
        return 1
    path.write_text(EXAMPLE_POLICY, encoding="utf-8")
    print(f"Wrote {path}. Edit it, then run `baton audit --policy {path}`.")
    return 0


def cmd_install(args, settings: Settings) -> int:
    manifest = load_manifest()
    if args.project:
        if args.crm != "hubspot":
            err.print("--project writes a HubSpot developer project; use --package for Salesforce")
            return 2
        from connectors.hubspot.project import write_project

        public_url = settings.require("BATON_PUBLIC_URL", "the HTTPS URL HubSpot sends webhooks to")
        written = write_project(manifest, Path(args.project), public_url=public_url)
        print(f"Wrote a HubSpot project to {args.project} ({len(written)} files). "
              f"Upload it from that folder with: hs project upload")
        return 0
    if args.package:
        if args.crm != "salesforce":
            err.print("--package writes a Salesforce metadata source package; HubSpot needs no package")
            return 2
        from connectors.salesforce.metadata import write_package

        written = write_package(
            manifest, Path(args.package), public_url=settings.public_url,
            token=settings.get("BATON_SALESFORCE_OUTBOUND_TOKEN"), integration_user=settings.get("SALESFORCE_USERNAME"),
            enforce=args.enforce,
        )
        print(f"Wrote a Salesforce metadata source package to {args.package} ({len(written)} files).")
        if not (settings.public_url and settings.get("BATON_SALESFORCE_OUTBOUND_TOKEN")):
            print("No Outbound Messages included: set BATON_PUBLIC_URL and BATON_SALESFORCE_OUTBOUND_TOKEN to add them.")
        print(f"Deploy it with: sf project deploy start --source-dir {args.package}")
        return 0
    connector = _connector(args.crm, settings)
    if args.enforce:
        if args.crm != "salesforce":
            err.print("--enforce adds Salesforce validation rules; HubSpot has no equivalent")
            return 2
        result = connector.install(manifest, dry_run=args.dry_run, enforce=True)
    else:
        result = connector.install(manifest, dry_run=args.dry_run)
    verb = "would create" if args.dry_run else "created"
    for name in result.created:
        print(f"{verb}: {name}")
    for name in result.updated:
        print(f"{'would update' if args.dry_run else 'updated'}: {name}")
    for line in result.notes:
        print(line)
    if not result.changed:
        print(f"{args.crm}: nothing to change; Baton's {len(result.unchanged)} fields are already installed.")
    return 0


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def cmd_audit(args, settings: Settings) -> int:
    policy = load_policy(args.policy or settings.policy_path)
    connector = _connector(args.crm, settings)
    object_types = args.object or list(connector.object_types)
    unknown = sorted(set(object_types) - set(connector.object_types))
    if unknown:
        err.print(f"{args.crm} has no object type {', '.join(unknown)}; choose from {', '.join(connector.object_types)}")
        return 2
    now = datetime.now(timezone.utc)
    with _progress(err) as progress:
        task = progress.add_task("Reading records" if not args.apply else "Reconciling records", total=None)
        result = audit(connector, policy, object_types, now=now, apply=args.apply,
                       progress=lambda n: progress.advance(task, n))
    if args.format == "table":
        report.render(Console(), result.records, now, "table")
        mode = "applied" if args.apply else "dry run: nothing written (use --apply)"
        print(f"{len(result.records)} records, {result.writes} writes planned, {mode}; "
              f"{sum(connector.calls.values())} API calls.")
    elif args.format == "json":
        print(report.as_json(result.records))
    else:
        sys.stdout.write(report.as_csv(result.records, now))
    for failure in result.failures:
        err.print(f"[red]failed[/red] {failure.ref}: {failure.reason}")
    return 1 if result.failures else 0


def cmd_extract(args, settings: Settings) -> int:
    from adapter.commitments import extract

    sent_at = datetime.fromisoformat(args.sent_at) if args.sent_at else datetime.now(timezone.utc)
    if sent_at.tzinfo is None:
        from zoneinfo import ZoneInfo

        sent_at = sent_at.replace(tzinfo=ZoneInfo(args.tz))
    found = extract(sys.stdin.read(), sent_at, args.tz, direction=args.direction, known_people=args.person or ())
    if args.json:
        print(json.dumps([c.to_dict() for c in found], indent=2))
        return 0
    if not found:
        print("No commitments found.")
    for c in found:
        due = c.due.isoformat() if c.due else "no date"
        who = c.actor_name or c.actor
        print(f"- {c.action}  (due {due}; {who}; confidence {c.confidence:.2f})\n  “{c.quote}”")
    return 0


def cmd_emulator(args, settings: Settings) -> int:
    from importlib import import_module

    import_module(f"connectors.{args.crm}.emulator").serve_forever(port=args.port, seed=args.seed)
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from connectors.demo import run_demo

    return run_demo(settings, crms=args.crm or CRMS, records=args.records, realtime=not args.no_realtime)


def cmd_serve(args, settings: Settings) -> int:
    from webhooks.app import serve

    serve(settings, host=args.host, port=args.port)
    return 0


def cmd_worker(args, settings: Settings) -> int:
    from adapter.worker import run_worker

    from connectors import configured_crms

    failed = run_worker(settings, burst=args.burst, count=args.count, connector_factory=_connector,
                        crms=configured_crms(settings))
    return 1 if failed else 0


def cmd_sweep(args, settings: Settings) -> int:
    from adapter.worker import sweep
    from connectors import configured_crms

    crms = [args.crm] if args.crm else configured_crms(settings)
    if not crms:
        err.print("no CRM is configured: set BATON_CRMS or a CRM's settings (see docs/configuration.md)")
        return 2
    for crm in crms:
        queued = sweep(settings, crm, full=args.full, connector_factory=_connector)
        print(f"{crm}: {sum(queued.values())} records queued "
              f"({', '.join(f'{n} {t}' for t, n in queued.items()) or 'none'})")
    return 0


def cmd_retry_failed(args, settings: Settings) -> int:
    from adapter.queue import retry_failed

    print(f"Requeued {retry_failed(settings)} failed jobs.")
    return 0


def cmd_status(args, settings: Settings) -> int:
    from adapter.queue import status

    snapshot = status(settings)
    if args.json:
        print(json.dumps(snapshot, indent=2, default=str))
        return 0
    console = Console()
    console.print_json(json.dumps(snapshot, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baton", description="One named owner and a dated next action on every open CRM record.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a commented example policy file")
    p.add_argument("--path", default="baton.yml")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("install", help="create Baton's fields in the CRM (idempotent)")
    p.add_argument("crm", choices=CRMS)
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.add_argument("--package", metavar="DIR", help="salesforce: write a metadata source package instead")
    p.add_argument("--project", metavar="DIR", help="hubspot: write a developer-platform project (app + webhooks)")
    p.add_argument("--enforce", action="store_true",
                   help="salesforce: also add validation rules requiring a user owner and a next action (off by default)")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("audit", help="list every exception and the planned actions (dry run unless --apply)")
    p.add_argument("--crm", choices=CRMS, default="hubspot")
    p.add_argument("--object", action="append", help="object type (repeatable), e.g. deal")
    p.add_argument("--apply", action="store_true", help="write the planned actions")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--policy", help="policy file (default: $BATON_POLICY or built-in defaults)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("demo", help="run Baton end to end against the bundled emulators")
    p.add_argument("--crm", action="append", choices=CRMS)
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--no-realtime", action="store_true", help="skip the webhook + worker part")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("emulator", help="run a CRM emulator standalone")
    p.add_argument("crm", choices=CRMS)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="seed this many records")
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser("extract", help="print the commitments in a text read from standard input")
    p.add_argument("--sent-at", help="ISO 8601 time the text was written (default now)")
    p.add_argument("--tz", default="UTC", help="writer's IANA timezone")
    p.add_argument("--direction", choices=("note", "outbound", "inbound"), default="note")
    p.add_argument("--person", action="append", help="a known owner's name (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("serve", help="run the webhook receivers (development server; see README for gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run an rq worker that reconciles pending records")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--count", type=int, default=1, help="worker processes to run (default 1)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("sweep", help="queue records modified since the last sweep (the safety net for missed webhooks)")
    p.add_argument("--crm", choices=CRMS)
    p.add_argument("--full", action="store_true", help="queue every open record")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("retry-failed", help="requeue work that failed after its retries")
    p.set_defaults(func=cmd_retry_failed)

    p = sub.add_parser("status", help="pending, queued and failed work, next deadlines")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, Settings.from_env())
    except BatonError as exc:
        err.print(f"[red]baton:[/red] {exc}", markup=True, highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
