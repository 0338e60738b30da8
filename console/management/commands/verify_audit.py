from django.core.management.base import BaseCommand, CommandError

from console.actions.audit import verify_chain
from console.audit import Actor


class Command(BaseCommand):
    help = "Check the audit log's hash chain; exit non-zero naming the first broken event."

    def handle(self, *args, **options):
        result = verify_chain(Actor.system("verify_audit"))
        if not result.ok:
            raise CommandError(f"audit chain broken at #{result.first_bad}: {result.reason} "
                               f"({result.checked} events checked before it)")
        self.stdout.write(f"OK: {result.checked} events checked")
