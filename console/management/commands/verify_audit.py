from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from console import audit
from console.actions.audit import verify_chain
from console.audit import Actor


class Command(BaseCommand):
    help = ("Check the audit log's hash chain, its signed checkpoints and the signed heads "
            "recorded outside the database; exit non-zero naming the first broken or "
            "missing event. --checkpoint signs the chain head first.")

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", action="store_true",
                            help="sign a checkpoint of the chain head now (e.g. before "
                                 "exporting it for off-box keeping)")
        parser.add_argument("--heads", action="append", default=[], metavar="FILE",
                            help="also check the heads recorded in FILE: a copy kept off "
                                 "the box (syslog lines are fine); repeatable")

    def handle(self, *args, checkpoint=False, heads=(), **options):
        if checkpoint:
            made = audit.checkpoint()
            if made is not None:
                self.stdout.write(f"signed checkpoint #{made.seq}: {made.hash}")
        result = verify_chain(Actor.system("verify_audit"),
                              also_heads=[Path(path) for path in heads])
        if not result.ok:
            where = f" at #{result.first_bad}" if result.first_bad is not None else ""
            raise CommandError(f"audit chain broken{where}: {result.reason} "
                               f"({result.checked} events checked before it)")
        self.stdout.write(f"OK: {result.checked} events checked; {result.heads} recorded "
                          f"heads match")
