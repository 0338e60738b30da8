"""A trigram full-text index beside the word index (SQLite FTS5): text in scripts written
without spaces (Japanese, Chinese, Thai) and parts of words are found too."""

from django.db import migrations

CREATE = ("CREATE VIRTUAL TABLE IF NOT EXISTS agents_knowledge_trigram USING fts5("
          "title, content, tokenize='trigram')")
FILL = ("INSERT INTO agents_knowledge_trigram(rowid, title, content) "
        "SELECT id, title, content FROM agents_knowledgedocument")
DROP = "DROP TABLE IF EXISTS agents_knowledge_trigram"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(CREATE)
        schema_editor.execute(FILL)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("agents", "0010_agent_quick")]
    operations = [migrations.RunPython(create, drop)]
