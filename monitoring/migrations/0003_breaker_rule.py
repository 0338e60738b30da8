"""The default alert for a backend whose circuit breaker opened."""

from django.db import migrations

RULE = {"name": "Circuit breaker open", "metric": "breaker_open", "scope": "backends",
        "comparator": ">=", "threshold": 1, "window_s": 0, "severity": "warning"}


def seed(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.get_or_create(name=RULE["name"],
                                                                   defaults=RULE)


def unseed(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.filter(name=RULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0002_default_rules")]
    operations = [migrations.RunPython(seed, unseed)]
