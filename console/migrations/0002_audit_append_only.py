"""Make the audit table append-only in the database itself (SQL in console.audit_schema)."""

from django.db import migrations

from console.audit_schema import statements


def _run(drop):
    def run(apps, schema_editor):
        for sql in statements(schema_editor.connection.vendor, drop=drop):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]

    operations = [migrations.RunPython(_run(False), _run(True))]
