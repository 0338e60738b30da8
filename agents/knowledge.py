"""The local knowledge base: add, delete and search documents (for `search_knowledge`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import connection, transaction

from agents.models import KnowledgeDocument
from console import audit
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction

MAX_BYTES = 2 * 1024 * 1024


@dataclass
class Hit:
    id: int
    title: str
    excerpt: str


def add_document(actor: Actor, title: str, content: str) -> KnowledgeDocument:
    title, errors = title.strip()[:200], {}
    if not title:
        errors["title"] = ["Give the document a title."]
    if not content.strip():
        errors["content"] = ["The document is empty."]
    elif len(content.encode()) > MAX_BYTES:
        errors["content"] = [f"Documents are limited to {MAX_BYTES // (1024 * 1024)} MB."]
    if errors:
        raise Invalid(errors)
    with transaction.atomic():
        doc = KnowledgeDocument.objects.create(title=title, content=content,
                                               uploaded_by=actor.username)
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO agents_knowledge_fts(rowid, title, content) "
                               "VALUES (%s, %s, %s)", [doc.pk, title, content])
        audit.record(AuditAction.KNOWLEDGE_ADDED, actor, target=doc,
                     after={"title": title, "bytes": len(content.encode())})
    return doc


def delete_document(actor: Actor, doc: KnowledgeDocument) -> None:
    with transaction.atomic():
        pk, title = doc.pk, doc.title
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM agents_knowledge_fts WHERE rowid = %s", [pk])
        doc.delete()
        audit.record(AuditAction.KNOWLEDGE_DELETED, actor, target_type="agents.knowledgedocument",
                     target_id=pk, before={"title": title})


def _fts_query(text: str) -> str:
    # user words as quoted terms: FTS5 syntax characters in a query cannot break it
    words = re.findall(r"\w+", text, flags=re.UNICODE)[:20]
    return " OR ".join(f'"{w}"' for w in words)


def search(text: str, limit: int = 5) -> list[Hit]:
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import (
            SearchHeadline,
            SearchQuery,
            SearchRank,
            SearchVector,
        )

        query = SearchQuery(text, search_type="websearch")
        vector = SearchVector("title", weight="A") + SearchVector("content", weight="B")
        # filter on the match itself (@@): ts_rank is never exactly 0
        rows = (KnowledgeDocument.objects.annotate(document=vector,
                                                   rank=SearchRank(vector, query))
                .filter(document=query).order_by("-rank")
                .annotate(excerpt=SearchHeadline("content", query, max_words=40, min_words=15))
                [:limit])
        return [Hit(r.pk, r.title, r.excerpt) for r in rows]
    match = _fts_query(text)
    if not match:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rowid, title, snippet(agents_knowledge_fts, 1, '[', ']', '…', 32) "
            "FROM agents_knowledge_fts WHERE agents_knowledge_fts MATCH %s "
            "ORDER BY bm25(agents_knowledge_fts, 5.0, 1.0) LIMIT %s", [match, limit])
        return [Hit(pk, title, excerpt) for pk, title, excerpt in cursor.fetchall()]
