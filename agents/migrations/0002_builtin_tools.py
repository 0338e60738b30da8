"""The built-in tools exist from the start."""

from django.db import migrations


def create(apps, schema_editor):
    from agents.tools.builtin import SPECS

    Tool = apps.get_model("agents", "Tool")
    for name, spec in SPECS.items():
        Tool.objects.get_or_create(name=name, defaults={
            "kind": "builtin", "description": spec["description"],
            "parameters": spec["parameters"], "timeout_s": 5.0,
        })


def remove(apps, schema_editor):
    from agents.tools.builtin import SPECS

    apps.get_model("agents", "Tool").objects.filter(kind="builtin", name__in=SPECS).delete()


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
