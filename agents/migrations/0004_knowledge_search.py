"""Full-text index for knowledge documents (SQLite FTS5), and the search_knowledge tool."""

from django.db import migrations

SQLITE = ["CREATE VIRTUAL TABLE IF NOT EXISTS agents_knowledge_fts USING fts5("
          "title, content, tokenize='porter unicode61')"]
SQLITE_DROP = ["DROP TABLE IF EXISTS agents_knowledge_fts"]


def index(drop):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for sql in SQLITE_DROP if drop else SQLITE:
                schema_editor.execute(sql)

    return run


def add_tool(apps, schema_editor):
    from agents.tools.builtin import SPECS

    spec = SPECS["search_knowledge"]
    apps.get_model("agents", "Tool").objects.get_or_create(name="search_knowledge", defaults={
        "kind": "builtin", "description": spec["description"],
        "parameters": spec["parameters"], "timeout_s": 5.0})


def remove_tool(apps, schema_editor):
    apps.get_model("agents", "Tool").objects.filter(name="search_knowledge").delete()


class Migration(migrations.Migration):
    dependencies = [("agents", "0003_knowledge_documents")]
    operations = [
        migrations.RunPython(index(False), index(True)),
        migrations.RunPython(add_tool, remove_tool),
    ]
