from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from console import audit, datadir
from console.audit import Actor
from console.choices import AuditAction
from console.crypto import EncryptedTextField


class Command(BaseCommand):
    help = "Add a new encryption key and re-encrypt every stored secret with it."

    def handle(self, *args, **options):
        path = getattr(settings, "TANGLAW_ENCRYPTION_KEY_FILE", None)
        if path is None:
            raise CommandError("keys come from TANGLAW_ENCRYPTION_KEYS: put a new key first "
                               "in that variable, restart, then run this to re-encrypt")
        new = datadir.new_fernet_key()
        settings.TANGLAW_ENCRYPTION_KEYS = [new, *settings.TANGLAW_ENCRYPTION_KEYS]
        count = 0
        with transaction.atomic():
            # every encrypted column of every app (backend keys, tools' and MCP servers'
            # secret headers, …): read decrypts with any key, the update encrypts with the
            # new primary key on the way in
            for model in apps.get_models():
                fields = [f.name for f in model._meta.concrete_fields
                          if isinstance(f, EncryptedTextField)]
                for name in fields:
                    for pk, value in model._default_manager.exclude(**{name: ""}).values_list(
                            "pk", name):
                        model._default_manager.filter(pk=pk).update(**{name: value})
                        count += 1
            tmp = path.with_suffix(".new")
            tmp.write_text("\n".join(settings.TANGLAW_ENCRYPTION_KEYS) + "\n")
            tmp.chmod(0o600)
            tmp.replace(path)
            audit.record(AuditAction.SECRETS_ROTATED, Actor.system("rotate_keys"),
                         after={"secrets": count, "keys": len(settings.TANGLAW_ENCRYPTION_KEYS)})
        self.stdout.write(f"Re-encrypted {count} secrets with a new key; old keys still decrypt.")
