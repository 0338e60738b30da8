from django.core.management.base import BaseCommand

from console.actions import Invalid
from console.actions.backends import create_backend, discover
from console.audit import Actor


class Command(BaseCommand):
    help = "Find inference engines on this machine; --register adds the new ones."

    def add_arguments(self, parser):
        parser.add_argument("--register", action="store_true")
        parser.add_argument("--ports", help="comma-separated ports instead of the defaults")

    def handle(self, *args, register, ports, **options):
        actor = Actor.system("discover_backends")
        port_list = [int(p) for p in ports.split(",")] if ports else None
        candidates = discover(actor, port_list)
        if not candidates:
            self.stdout.write("No backends found.")
        for c in candidates:
            state = f"registered as #{c.registered_id}" if c.registered_id else "new"
            self.stdout.write(f"{c.kind:18} {c.base_url:32} {c.version or '-':12} "
                              f"{c.models} models  {state}")
            if register and not c.registered_id:
                try:
                    backend = create_backend(actor, {"name": c.name, "kind": c.kind,
                                                     "base_url": c.base_url, "enabled": True,
                                                     "connect_timeout_s": 3,
                                                     "read_timeout_s": 60})
                    self.stdout.write(f"  registered {backend.name} (#{backend.pk})")
                except Invalid as exc:
                    self.stderr.write(f"  not registered: {exc}")
