"""`manage.py prune_audit --up-to SEQ --export FILE`: retention for the audit log.

Exports events up to #SEQ to FILE (JSONL ending in a signed checkpoint; the file
must not exist), then deletes them and appends an `audit.pruned` event with the
export's SHA-256 that anchors the remaining chain, so `verify_audit` still passes.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from console import audit
from console.actions import Refused
from console.audit import Actor


class Command(BaseCommand):
    help = "Export the oldest audit events to a file, then prune them (anchored, audited)."

    def add_arguments(self, parser):
        parser.add_argument("--up-to", type=int, required=True, metavar="SEQ")
        parser.add_argument("--export", required=True, metavar="FILE")

    def handle(self, *args, up_to, export, **options):
        try:
            summary = audit.prune(Actor.system("prune_audit"), up_to, Path(export))
        except Refused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"exported {summary['events']} events to {export} "
                          f"(sha256 {summary['export_sha256']}) and pruned them; the chain "
                          f"now starts at #{summary['up_to_seq'] + 1}")
