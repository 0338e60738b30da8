from django.core.management.base import BaseCommand, CommandError

from console import audit
from console.actions.audit import verify_chain
from console.audit import Actor


class Command(BaseCommand):
    help = ("Check the audit log's hash chain and its signed checkpoints; exit non-zero "
            "naming the first broken event. --checkpoint signs the chain head first.")

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", action="store_true",
                            help="sign a checkpoint of the chain head now (e.g. before "
                                 "exporting it for off-box keeping)")

    def handle(self, *args, checkpoint=False, **options):
        if checkpoint:
            made = audit.checkpoint()
            if made is not None:
                self.stdout.write(f"signed checkpoint #{made.seq}: {made.hash}")
        result = verify_chain(Actor.system("verify_audit"))
        if not result.ok:
            raise CommandError(f"audit chain broken at #{result.first_bad}: {result.reason} "
                               f"({result.checked} events checked before it)")
        self.stdout.write(f"OK: {result.checked} events checked")
