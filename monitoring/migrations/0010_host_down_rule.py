"""The default alert for a fleet host none of whose exporters answers."""

from django.db import migrations

RULE = {"name": "Host down", "metric": "host_up", "scope": "hosts", "comparator": "<",
        "threshold": 1, "window_s": 0, "for_samples": 2, "severity": "critical"}


def seed(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.get_or_create(name=RULE["name"],
                                                                   defaults=RULE)


def unseed(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.filter(name=RULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0009_fleet_hosts")]
    operations = [migrations.RunPython(seed, unseed)]
