"""Make the audit table append-only in the database itself.

SQLite: BEFORE UPDATE/DELETE triggers that abort. PostgreSQL: a trigger
function that raises. Anyone who drops these has also to rewrite the hash
chain, which `verify_audit` detects.
"""

from django.db import migrations

SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS console_auditevent_no_update BEFORE UPDATE ON "
    "console_auditevent BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",
    "CREATE TRIGGER IF NOT EXISTS console_auditevent_no_delete BEFORE DELETE ON "
    "console_auditevent BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS console_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS console_auditevent_no_delete;",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION console_audit_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'audit log is append-only'; END; $$ LANGUAGE plpgsql;""",
    "DROP TRIGGER IF EXISTS console_auditevent_append_only ON console_auditevent;",
    """CREATE TRIGGER console_auditevent_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON console_auditevent FOR EACH STATEMENT EXECUTE FUNCTION console_audit_append_only();""",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS console_auditevent_append_only ON console_auditevent;",
    "DROP FUNCTION IF EXISTS console_audit_append_only();",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        )
    ]
