"""The local knowledge base: add, delete and search documents (for `search_knowledge`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db import connection, transaction

from agents.models import KnowledgeDocument
from console import audit
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction

MAX_BYTES = 2 * 1024 * 1024
# SQLite: words (Porter stemmer) and trigrams (scripts without spaces, parts of words)
INDEX_ADD = ["INSERT INTO agents_knowledge_fts(rowid, title, content) VALUES (%s, %s, %s)",
             "INSERT INTO agents_knowledge_trigram(rowid, title, content) VALUES (%s, %s, %s)"]
INDEX_DROP = ["DELETE FROM agents_knowledge_fts WHERE rowid = %s",
              "DELETE FROM agents_knowledge_trigram WHERE rowid = %s"]


# snippet() markers around each matched term: characters no document text contains
MARK_START, MARK_END = "\x02", "\x03"
# the shortest term the trigram index can find; shorter ones (東京) are looked up as text
TRIGRAM = 3
EXCERPT_CHARS = 120


@dataclass
class Hit:
    id: int
    title: str
    excerpt: str  # plain text, as the search_knowledge tool gives it to a model
    highlights: list[tuple[int, int]] = field(default_factory=list)  # [start, end) spans


def _hit(pk: int, title: str, marked: str) -> Hit:
    """A hit from an excerpt with MARK_START/MARK_END around the matches."""
    text, spans, start = [], [], None
    length = 0
    for ch in marked:
        if ch == MARK_START:
            start = length
        elif ch == MARK_END:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            text.append(ch)
            length += 1
    return Hit(pk, title, "".join(text), spans)


def _has_unspaced_script(text: str) -> bool:
    """Text in a script written without spaces between words (Chinese, Japanese, Thai,
    …): a word tokenizer sees a whole sentence as one word."""
    return any(_unspaced(ch) for ch in text)


def _unspaced(ch: str) -> bool:
    code = ord(ch)
    return (0x0E00 <= code <= 0x0EFF or 0x1000 <= code <= 0x109F or 0x1780 <= code <= 0x17FF
            or 0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF
            or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF
            or 0xAC00 <= code <= 0xD7AF or 0x20000 <= code <= 0x2FA1F)


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
                for sql in INDEX_ADD:
                    cursor.execute(sql, [doc.pk, title, content])
        audit.record(AuditAction.KNOWLEDGE_ADDED, actor, target=doc,
                     after={"title": title, "bytes": len(content.encode())})
    return doc


def delete_document(actor: Actor, doc: KnowledgeDocument) -> None:
    with transaction.atomic():
        pk, title = doc.pk, doc.title
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                for sql in INDEX_DROP:
                    cursor.execute(sql, [pk])
        doc.delete()
        audit.record(AuditAction.KNOWLEDGE_DELETED, actor, target_type="agents.knowledgedocument",
                     target_id=pk, before={"title": title})


def _terms(text: str) -> list[str]:
    return re.findall(r"\w+", text, flags=re.UNICODE)[:20]


def _fts_query(words: list[str]) -> str:
    # user words as quoted terms: FTS5 syntax characters in a query cannot break it
    return " OR ".join(f'"{w}"' for w in words)


def search(text: str, limit: int = 5) -> list[Hit]:
    """The best documents for `text`, each with an excerpt and its matches marked.
    Words are matched by their stem (offices → office); text in a script without
    spaces (日本語, 中文, ไทย) and parts of words by trigrams; a term shorter than a
    trigram (東京) as plain text."""
    words = _terms(text)
    if not words:
        return []
    hits = _words(text, words, limit)
    if len(hits) < limit and (_has_unspaced_script(text) or not hits):
        seen = {h.id for h in hits}
        hits += [h for h in _fragments(words, limit) if h.id not in seen][:limit - len(hits)]
    return hits


def _words(text: str, words: list[str], limit: int) -> list[Hit]:
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
                .annotate(excerpt=SearchHeadline("content", query, max_words=40, min_words=15,
                                                 start_sel=MARK_START, stop_sel=MARK_END))
                [:limit])
        return [_hit(r.pk, r.title, r.excerpt) for r in rows]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rowid, title, snippet(agents_knowledge_fts, 1, %s, %s, '…', 32) "
            "FROM agents_knowledge_fts WHERE agents_knowledge_fts MATCH %s "
            "ORDER BY bm25(agents_knowledge_fts, 5.0, 1.0) LIMIT %s",
            [MARK_START, MARK_END, _fts_query(words), limit])
        return [_hit(pk, title, excerpt) for pk, title, excerpt in cursor.fetchall()]


def _fragments(words: list[str], limit: int) -> list[Hit]:
    """Hits for text a word index cannot split: trigrams (SQLite) for terms of three
    characters or more, plain substring search for the shorter ones (and on
    PostgreSQL)."""
    long = [w for w in words if len(w) >= TRIGRAM]
    hits: list[Hit] = []
    if long and connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rowid, title, snippet(agents_knowledge_trigram, 1, %s, %s, '…', 24) "
                "FROM agents_knowledge_trigram WHERE agents_knowledge_trigram MATCH %s "
                "ORDER BY bm25(agents_knowledge_trigram, 5.0, 1.0) LIMIT %s",
                [MARK_START, MARK_END, _fts_query(long), limit])
            hits = [_hit(pk, title, excerpt) for pk, title, excerpt in cursor.fetchall()]
    short = [w for w in words if len(w) < TRIGRAM or connection.vendor != "sqlite"]
    if short and len(hits) < limit:
        seen = {h.id for h in hits}
        hits += [h for h in _substrings(short, limit) if h.id not in seen][:limit - len(hits)]
    return hits


def _substrings(words: list[str], limit: int) -> list[Hit]:
    from django.db.models import Q

    wanted = Q()
    for word in words:
        wanted |= Q(content__icontains=word) | Q(title__icontains=word)
    hits = []
    for doc in KnowledgeDocument.objects.filter(wanted).only("pk", "title", "content")[:limit]:
        # offsets in the text itself (lower() can change a text's length: "İ")
        found = [m for m in (re.search(re.escape(w), doc.content, re.IGNORECASE)
                             for w in words) if m]
        if not found:
            hits.append(Hit(doc.pk, doc.title, doc.content[:EXCERPT_CHARS]))
            continue
        match = min(found, key=lambda m: m.start())
        at, end = match.start(), match.end()
        begin = max(0, at - EXCERPT_CHARS // 2)
        excerpt = doc.content[begin:end + EXCERPT_CHARS // 2]
        prefix = "…" if begin else ""
        suffix = "…" if end + EXCERPT_CHARS // 2 < len(doc.content) else ""
        start = len(prefix) + at - begin
        hits.append(Hit(doc.pk, doc.title, prefix + excerpt + suffix,
                        [(start, start + end - at)]))
    return hits
