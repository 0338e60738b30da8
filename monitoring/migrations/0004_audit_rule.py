"""The default alert for an audit log that no longer verifies."""

from django.db import migrations

RULE = {"name": "Audit log tampered with", "metric": "audit_chain_ok", "scope": "audit",
        "comparator": "<", "threshold": 1, "window_s": 0, "severity": "critical"}


def seed(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.get_or_create(name=RULE["name"],
                                                                   defaults=RULE)


def unseed(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.filter(name=RULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0003_breaker_rule")]
    operations = [migrations.RunPython(seed, unseed)]
