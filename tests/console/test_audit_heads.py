"""Signed chain heads outside the database: tail truncation and early rewrites are caught."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from console import audit, audit_heads
from console.models import AuditCheckpoint, AuditEvent
from tests.support.audit_tamper import relink, without_triggers

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def heads(settings, tmp_path):
    path = tmp_path / "audit-heads.jsonl"
    settings.TANGLAW_AUDIT_HEADS_FILE = path
    settings.TANGLAW_AUDIT_HEAD_EVERY = 50
    settings.TANGLAW_AUDIT_HEAD_INTERVAL_S = 300
    return path


@pytest.fixture
def write(actor, django_capture_on_commit_callbacks):
    """write(n): n committed events (their after-commit head writes run)."""

    def write(n):
        with django_capture_on_commit_callbacks(execute=True):
            for i in range(n):
                audit.record("backend.discovered", actor, after={"i": i})

    return write


def recorded(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def verify_audit_fails():
    with pytest.raises(CommandError) as err:
        call_command("verify_audit")
    assert err.value.returncode == 1
    return str(err.value)


def test_heads_are_signed_from_the_first_event_then_every_n(heads, write):
    write(120)
    lines = recorded(heads)
    assert [line["seq"] for line in lines] == [1, 50, 100]
    for line in lines:
        assert line["hash"] == AuditEvent.objects.get(seq=line["seq"]).hash
        assert line["signature"] == audit.sign(line["seq"], line["hash"], line["ts"])
    assert heads.stat().st_mode & 0o777 == 0o600
    # a site that never reaches TANGLAW_AUDIT_CHECKPOINT_EVERY still has a signed start
    assert AuditCheckpoint.objects.filter(seq=1).exists()
    call_command("verify_audit")


@pytest.mark.parametrize("deleted", [1, 50])
@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_deleting_the_newest_events_is_caught(heads, write, settings, deleted,
                                               with_checkpoint):
    settings.TANGLAW_AUDIT_CHECKPOINT_EVERY = 100
    write(100)
    assert AuditCheckpoint.objects.filter(seq=100).exists()
    without_triggers(f"DELETE FROM console_auditevent WHERE seq > {100 - deleted}")
    if with_checkpoint:
        AuditCheckpoint.objects.filter(seq__gt=100 - deleted).delete()
    message = verify_audit_fails()
    missing = "event #100 is missing" if deleted == 1 else "events #51–#100 are missing"
    assert f"broken at #{101 - deleted}: the database ends at #{100 - deleted} but " in message
    assert f"records #100; {missing}" in message


def test_deleting_the_newest_events_and_every_checkpoint_is_caught_by_the_file(heads, write):
    write(100)
    without_triggers("DELETE FROM console_auditevent WHERE seq > 60")
    AuditCheckpoint.objects.all().delete()
    message = verify_audit_fails()
    assert f"the heads file {heads} records #100; events #61–#100 are missing" in message


def test_an_emptied_log_is_caught(heads, write):
    write(3)
    without_triggers("DELETE FROM console_auditevent")
    AuditCheckpoint.objects.all().delete()
    message = verify_audit_fails()
    assert "the database has no events but the heads file" in message
    assert "records #1; event #1 is missing" in message


@pytest.mark.parametrize("keep_checkpoint", [True, False])
def test_rewriting_a_small_chain_entirely_is_caught(heads, write, keep_checkpoint):
    write(10)  # far fewer than TANGLAW_AUDIT_CHECKPOINT_EVERY
    without_triggers("UPDATE console_auditevent SET actor = 'mallory'")
    relink()
    if not keep_checkpoint:
        AuditCheckpoint.objects.all().delete()
    assert audit._verify_chain(100).ok  # the hash chain alone is fooled
    message = verify_audit_fails()
    assert "broken at #1: the chain was rewritten: event #1 no longer matches" in message


def test_events_written_during_the_walk_do_not_look_missing(heads, write, settings,
                                                            monkeypatch):
    settings.TANGLAW_AUDIT_CHECKPOINT_EVERY = 50
    write(10)
    walk = audit._verify_chain

    def walk_while_another_worker_writes(batch):
        result = walk(batch)
        write(50)  # #50's checkpoint row and head are recorded before verify reads on
        return result

    monkeypatch.setattr(audit, "_verify_chain", walk_while_another_worker_writes)
    result = audit.verify()
    assert result.ok and result.checked == 10, result.reason


def test_a_forged_head_is_reported(heads, write):
    write(3)
    ts = "2030-01-01T00:00:00.000000+00:00"
    forged = {"seq": 9, "hash": "f" * 64, "ts": ts, "signature": "0" * 64}
    with heads.open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
        handle.write("not json at all\n")
    message = verify_audit_fails()
    assert f"line 2 of the heads file {heads} (#9) is not signed with this site's audit " \
           f"key" in message
    heads.write_text(heads.read_text().replace(json.dumps(forged) + "\n", ""))
    message = verify_audit_fails()
    assert f"line 2 of the heads file {heads} is not a signed head" in message


def test_a_head_is_written_when_the_last_one_is_older_than_the_interval(heads, write):
    write(3)
    old = time.time() - 301
    os.utime(heads, (old, old))
    write(2)
    assert [line["seq"] for line in recorded(heads)] == [1, 4]


def test_the_monitor_writes_a_head_for_a_quiet_tail(heads, write):
    from monitoring.collectors.gpu import GpuCollector
    from monitoring.worker import Monitor
    from tests.support.fake_nvml import FakeNvml

    write(7)
    monitor = Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="m1")
    assert monitor.audit_head() is None  # the last head is recent
    old = time.time() - 301
    os.utime(heads, (old, old))
    assert monitor.audit_head() == 7
    assert [line["seq"] for line in recorded(heads)] == [1, 7]
    old = time.time() - 301
    os.utime(heads, (old, old))
    assert monitor.audit_head() is None  # nothing new since


def test_verify_audit_checkpoint_also_records_a_head(heads, write, capsys,
                                                     django_capture_on_commit_callbacks):
    write(5)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("verify_audit", "--checkpoint")
    assert "OK: 5 events checked; 1 recorded heads match" in capsys.readouterr().out
    assert [line["seq"] for line in recorded(heads)] == [1, 5]


def test_pruned_logs_still_verify_against_their_heads(heads, write, settings, tmp_path):
    settings.TANGLAW_AUDIT_HEAD_EVERY = 4
    write(10)
    call_command("prune_audit", "--up-to", "6", "--export", str(tmp_path / "old.jsonl"))
    assert [line["seq"] for line in recorded(heads)] == [1, 4, 8]
    result = audit.verify()
    assert result.ok and result.heads == 1  # #8; #1 and #4 went with the pruned events


def test_the_syslog_copy_catches_what_the_local_file_lost(heads, write, tmp_path):
    import logging
    import logging.config
    import socket

    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(5)
    spec = audit_heads.syslog_handler(f"127.0.0.1:{collector.getsockname()[1]}")
    handler = logging.config.DictConfigurator({"version": 1}).configure_handler(spec)
    logger = logging.getLogger("tanglaw.audit.heads")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # as console.settings configures it beside the handler
    try:
        write(60)
        received = [collector.recv(4096).decode() for _ in range(2)]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
        collector.close()
    assert all(line.startswith("<") and "tanglaw-audit-head: {" in line for line in received)
    copy = tmp_path / "syslog"
    copy.write_text("".join(line + "\n" for line in received))
    without_triggers("DELETE FROM console_auditevent WHERE seq > 10")
    heads.unlink()  # whoever truncated the log also removed the local heads
    assert audit.verify().ok
    with pytest.raises(CommandError, match=f"the heads file {copy} records #50; events "
                                           f"#11–#50 are missing"):
        call_command("verify_audit", "--heads", str(copy))


def test_a_bad_syslog_address_is_refused():
    assert audit_heads.syslog_handler("/dev/log")["address"] == "/dev/log"
    assert audit_heads.syslog_handler("logs.example")["address"] == ("logs.example", 514)
    with pytest.raises(ValueError, match="expected /path, host or host:port"):
        audit_heads.syslog_handler("logs.example:syslog")


def test_two_processes_append_whole_lines(tmp_path):
    path = tmp_path / "heads.jsonl"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from console import audit_heads\n"
        "writer, start = int(sys.argv[1]), float(sys.argv[2])\n"
        "time.sleep(max(0.0, start - time.time()))\n"
        "for i in range(3000):\n"
        "    audit_heads.append(Path(sys.argv[3]), 'k', writer * 100000 + i, 'ab' * 32)\n")
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w), str(start), str(path)],
                              cwd=ROOT) for w in (1, 2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    heads = [head for _, head in audit_heads.read(path)]
    assert len(heads) == 6000 and None not in heads  # no torn or interleaved line
    seqs = sorted(head["seq"] for head in heads)
    assert seqs == [w * 100000 + i for w in (1, 2) for i in range(3000)]
    assert all(audit_heads.signed_by("k", head) for head in heads)
    assert path.stat().st_mode & 0o777 == 0o600
