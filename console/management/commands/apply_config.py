"""`manage.py apply_config FILE [--dry-run] [--secret KEY=VALUE ...]`.

Lists every create, update and delete; with any error, lists every error with its
path, changes nothing and exits 1. Secrets are never in the file: pass
`--secret backends.NAME.api_key=…` (or tools./mcp_servers. keys), or set
TANGLAW_CONFIG_SECRETS_FILE to a YAML mapping of them.
"""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from console import siteconfig
from console.actions import Invalid
from console.audit import Actor
from console.safeinput import UnsafeInput, load_yaml


class Command(BaseCommand):
    help = "Apply a site configuration file (see export_config); --dry-run changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--secret", action="append", default=[], metavar="KEY=VALUE")

    def handle(self, *args, file, dry_run, secret, **options):
        try:
            text = Path(file).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        secrets = {}
        secrets_file = os.environ.get("TANGLAW_CONFIG_SECRETS_FILE")
        if secrets_file:
            try:
                loaded = load_yaml(Path(secrets_file).read_text(),
                                   "TANGLAW_CONFIG_SECRETS_FILE")
            except (OSError, UnsafeInput) as exc:
                raise CommandError(str(exc)) from None
            if loaded is not None and not isinstance(loaded, dict):
                raise CommandError("TANGLAW_CONFIG_SECRETS_FILE: expected a mapping of "
                                   "secret names to values")
            secrets.update(loaded or {})
        for item in secret:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--secret {key}: write it as KEY=VALUE")
            secrets[key] = value
        try:
            changes = siteconfig.apply(Actor.system("apply_config"), text, dry_run=dry_run,
                                       secrets=secrets)
        except Invalid as exc:
            for path, messages in exc.errors.items():
                self.stderr.write(f"{path}: {' '.join(messages)}")
            self.stderr.write("Nothing was changed.")
            raise SystemExit(1) from None
        for change in changes:
            self.stdout.write(f"{change['action']:9} {change['kind']:11} {change['name']}")
            for field in change.get("fields", []) if change["action"] == "update" else []:
                self.stdout.write(f"{'':9} {'':11}   {field['field']}: "
                                  f"{_short(field['before'])} → {_short(field['after'])}")
        self.stdout.write("Dry run: nothing was changed." if dry_run else "Applied.")


def _short(value) -> str:
    """A field's value on one line of a terminal."""
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"
