"""The dataset pages: from a CSV or JSON Lines, a new version from a file, an older
version shown as it was, roles, bad files named."""

import html
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from evals.models import Dataset

pytestmark = pytest.mark.django_db

CSV = ("id,input,expected,contains\n"
       "add,What is 19*21?,399,399\n"
       "city,Where is the depot?,,Ōsaka\n").encode()
JSONL = ('{"id": "weekday", "messages": "What day is it?", '
         '"checks": [{"kind": "tool_called", "name": "current_time"}]}\n\n'
         '{"messages": [{"role": "system", "content": "Be brief."}, '
         '{"role": "user", "content": "Stock of valve-7?"}]}\n')


def test_a_dataset_from_a_csv_then_a_version_from_json_lines(operator_client, viewer_client):
    empty = viewer_client.get("/datasets/").content.decode()
    assert "No datasets yet" in empty and "An operator can create one." in empty
    made = operator_client.post("/datasets/", {
        "name": "desk", "description": "desk questions",
        "file": SimpleUploadedFile("cases.csv", CSV)})
    dataset = Dataset.objects.get()
    assert made.status_code == 302 and made["Location"] == f"/datasets/{dataset.pk}/"
    page = operator_client.get(made["Location"]).content.decode()
    assert "What is 19*21?" in page and "<code>contains &quot;Ōsaka&quot;</code>" in page
    assert "version 1" in page
    operator_client.post(f"/datasets/{dataset.pk}/versions/", {
        "jsonl": JSONL, "note": "weekday and stock"})
    dataset.refresh_from_db()
    assert dataset.version == 2
    current = operator_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "Stock of valve-7?" in current and "(2 messages)" in current
    assert "<code>calls current_time</code>" in current
    old = viewer_client.get(f"/datasets/{dataset.pk}/?version=1").content.decode()
    assert "This is an older version" in old and "What is 19*21?" in old
    assert "Stock of valve-7?" not in old
    assert viewer_client.get(f"/datasets/{dataset.pk}/?version=²").status_code == 200


@pytest.mark.parametrize("upload,says", [
    (SimpleUploadedFile("cases.csv", b"question,answer\nhi,hello\n"), "needs an input column"),
    (SimpleUploadedFile("cases.jsonl", b'{"messages": "q"}\n{oops\n'), "line 2"),
    (SimpleUploadedFile("cases.txt", b"q"), "a .jsonl or .csv file"),
    (SimpleUploadedFile("cases.csv", b"\xff\xfe\x00"), "UTF-8 text"),
    (SimpleUploadedFile("cases.jsonl", b'{"messages": "q", "checks": [{"kind": "x"}]}\n'),
     "cases[0].checks[0].kind"),
])
def test_bad_files_are_named_and_nothing_is_made(operator_client, upload, says):
    page = operator_client.post("/datasets/", {"name": "desk", "file": upload})
    assert page.status_code == 200 and says in page.content.decode()
    assert 'value="desk"' in page.content.decode()  # what was typed stays
    assert not Dataset.objects.exists()


def test_viewers_read_and_do_not_change(operator_client, viewer_client):
    operator_client.post("/datasets/", {"name": "desk",
                                        "file": SimpleUploadedFile("c.csv", CSV)})
    dataset = Dataset.objects.get()
    assert viewer_client.post("/datasets/", {"name": "x"}).status_code == 403
    assert viewer_client.post(f"/datasets/{dataset.pk}/versions/",
                              {"jsonl": JSONL}).status_code == 403
    assert viewer_client.post(f"/datasets/{dataset.pk}/delete/").status_code == 403
    assert "New version" not in viewer_client.get(f"/datasets/{dataset.pk}/").content.decode()
    operator_client.post(f"/datasets/{dataset.pk}/delete/")
    assert not Dataset.objects.exists()


def test_editing_the_cases_on_the_page_and_removing_one(operator_client, viewer_client):
    made = operator_client.post("/api/datasets", data=json.dumps({"name": "desk", "cases": [
        {"id": "a", "messages": "one?", "expected": "1"},
        {"id": "b", "messages": "two?"}]}), content_type="application/json").json()
    page = operator_client.get(f"/datasets/{made['id']}/").content.decode()
    # the editor starts from this version's cases, one JSON object per line
    assert '{"id": "a", "messages": [{"role": "user", "content": "one?"}], ' \
           '"expected": "1", "checks": []}' in html.unescape(page)
    edited = operator_client.post(f"/datasets/{made['id']}/versions/", {
        "jsonl": '{"id": "a", "messages": "one?", "expected": "one"}\n'
                 '{"id": "b", "messages": "two?"}', "note": "spelled out"}, follow=True)
    assert b"Version 2: 2 cases." in edited.content
    removed = operator_client.post(f"/datasets/{made['id']}/remove-case/", {"case": "b"},
                                   follow=True)
    assert b"Removed b: version 3 has 1 case." in removed.content
    got = operator_client.get(f"/api/datasets/{made['id']}").json()
    assert [c["id"] for c in got["cases"]] == ["a"] and got["cases"][0]["expected"] == "one"
    old = operator_client.get(f"/api/datasets/{made['id']}?version=2").json()
    assert [c["id"] for c in old["cases"]] == ["a", "b"]
    # the API's twin, and what it refuses
    gone = operator_client.delete(f"/api/datasets/{made['id']}/cases/a")
    assert gone.status_code == 200 and gone.json()["version"] == 4 and gone.json()["cases"] == []
    missing = operator_client.delete(f"/api/datasets/{made['id']}/cases/a")
    assert missing.status_code == 422 and "case_id" in missing.json()["errors"]
    nothing = operator_client.post(f"/datasets/{made['id']}/remove-case/", {"case": "zz"},
                                   follow=True)
    assert b"Nothing removed" in nothing.content
    assert viewer_client.delete(f"/api/datasets/{made['id']}/cases/a").status_code == 403
    assert b"Remove case" not in viewer_client.get(f"/datasets/{made['id']}/?version=3").content
    assert Dataset.objects.get(pk=made["id"]).version == 4


def test_a_version_too_large_for_the_editor_is_changed_by_file(operator_client, monkeypatch):
    from evals import views

    monkeypatch.setattr(views, "EDIT_LIMIT", 50)
    made = operator_client.post("/api/datasets", data=json.dumps({"name": "big", "cases": [
        {"id": f"c{i}", "messages": "a question long enough"} for i in range(3)]}),
        content_type="application/json").json()
    page = operator_client.get(f"/datasets/{made['id']}/").content.decode()
    assert "is too large to edit here" in page and 'name="jsonl"' not in page
    assert "Replace the cases from a file" in page
