import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from console.actions.users import create_user
from console.audit import Actor
from console.choices import Role


class Command(BaseCommand):
    help = "On first run, create the admin account and print its one-time password."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.exists():
            return
        given = os.environ.get("TANGLAW_ADMIN_PASSWORD") or None
        user, generated = create_user(Actor.system("first-run"), "admin", Role.ADMIN,
                                      password=given)
        self.stdout.write(self.style.SUCCESS("Created the admin account."))
        self.stdout.write(f"  user:     {user.username}")
        if generated:
            self.stdout.write(f"  password: {generated}   (one-time: you choose your own at "
                              f"first sign-in)")
        else:
            self.stdout.write("  password: the value of TANGLAW_ADMIN_PASSWORD")
