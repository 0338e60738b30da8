"""`manage.py export_config [-o FILE]`: the whole site's configuration as YAML (no secrets)."""

from pathlib import Path

from django.core.management.base import BaseCommand

from console import siteconfig


class Command(BaseCommand):
    help = "Print (or write) backends, agents, tools, MCP servers, alert rules and plans as YAML."

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", help="write to this file instead of stdout")

    def handle(self, *args, output=None, **options):
        text = siteconfig.export_yaml()
        if output:
            Path(output).write_text(text)
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")
