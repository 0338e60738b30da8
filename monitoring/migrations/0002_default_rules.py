"""The default alert rules from the seed guide (editable afterwards)."""

from django.db import migrations

RULES = [{'name': 'Backend unhealthy',
  'metric': 'backend_up',
  'scope': 'backends',
  'comparator': '<',
  'threshold': 1,
  'window_s': 0,
  'for_samples': 2,
  'severity': 'critical'},
 {'name': 'Slow responses',
  'metric': 'latency_ms',
  'scope': 'backends',
  'comparator': '>',
  'threshold': 2000,
  'window_s': 300,
  'severity': 'warning'},
 {'name': 'High latency',
  'metric': 'latency_ms',
  'scope': 'backends',
  'comparator': '>',
  'threshold': 3000,
  'window_s': 300,
  'severity': 'critical'},
 {'name': 'Error rate',
  'metric': 'error_rate',
  'scope': 'backends',
  'comparator': '>',
  'threshold': 0.05,
  'window_s': 600,
  'severity': 'critical'},
 {'name': 'Host memory',
  'metric': 'memory_percent',
  'scope': 'host',
  'comparator': '>',
  'threshold': 85,
  'window_s': 120,
  'for_s': 60,
  'severity': 'warning'},
 {'name': 'GPU saturated',
  'metric': 'gpu_utilization_percent',
  'scope': 'gpus',
  'comparator': '>',
  'threshold': 95,
  'window_s': 300,
  'for_s': 120,
  'severity': 'warning'},
 {'name': 'Queue backlog',
  'metric': 'engine_requests_waiting',
  'scope': 'backends',
  'comparator': '>',
  'threshold': 50,
  'window_s': 120,
  'severity': 'warning'}]


def seed(apps, schema_editor):
    AlertRule = apps.get_model("monitoring", "AlertRule")
    for rule in RULES:
        AlertRule.objects.get_or_create(name=rule["name"], defaults=rule)


def unseed(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.filter(
        name__in=[r["name"] for r in RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
