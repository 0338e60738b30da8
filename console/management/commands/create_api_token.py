from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from console.actions.users import create_token
from console.audit import Actor


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user named {username!r}")
        _, raw = create_token(Actor.system("create_api_token"), user, name)
        self.stdout.write(raw)
