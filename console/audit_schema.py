"""SQL that makes the audit table append-only (used by migration 0002 and the test harness).

SQLite: BEFORE UPDATE/DELETE triggers that abort. PostgreSQL: a trigger
function that raises, also on TRUNCATE. Anyone who drops these has also to
rewrite the hash chain, which `verify_audit` detects.
"""

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


def statements(vendor: str, *, drop: bool = False) -> list[str]:
    if vendor == "sqlite":
        return SQLITE_DROP if drop else SQLITE
    if vendor == "postgresql":
        return POSTGRES_DROP if drop else POSTGRES
    return []
