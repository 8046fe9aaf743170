"""The alarm book (lifecycle, acknowledgement with who and when, kept across restarts), the runs index, notifications
through Apprise to a real HTTP receiver, and the dashboard's users file and sign-in rules."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictors.alarms import AlarmDesk, NotifyError, NotifyRule, load_rules
from sensors.bus.broker import free_port
from sensors.bus.payloads import ParseError, alert_payload, parse_alert
from sensors.store.ledger import Ledger
from tests.conftest import ROOT, twin_cmd

LINE = "plant-hamburg/hall-2/bottling-1"


def alert(machine: str = "filler-a", state: str = "raised", severity: str = "critical", since: int = 1000,
          ts: int = 1000, run: str = "r1", p: float = 0.9) -> dict[str, Any]:
    return {"run": run, "replication": 0, "line": LINE, "station": "filler", "machine": machine, "state": state,
            "severity": severity, "fault_mode": "bearing", "probability": p, "rul": {"estimate_s": 7200.0},
            "since": since, "ts": ts}


def test_an_alarm_goes_through_its_lifecycle_and_survives_a_restart(tmp_path: Path) -> None:
    book = Ledger(tmp_path / "l.sqlite")
    a, new = book.record_alert(alert())
    assert new
    assert book.record_alert(alert(state="updated", ts=61_000)) == (a, False)  # same alarm, refreshed
    row = book.alarms(LINE).iloc[0]
    assert (row.active, row.acked_by, row.updated_ms, row.rul_s, row.probability) == (1, None, 61_000, 7200.0, 0.9)
    book.acknowledge(a, "alice", "bearing ordered")
    book.acknowledge(a, "bob", "again")  # the first acknowledgement stands
    book.close()

    again = Ledger(tmp_path / "l.sqlite")  # a restarted dashboard
    row = again.alarms(LINE).iloc[0]
    assert (row.acked_by, row.ack_comment, row.active) == ("alice", "bearing ordered", 1)
    again.clear(a, "alice", "replaced")
    assert again.alarms(LINE, active=True).empty
    assert again.alarms(LINE).iloc[0].cleared_by == "alice"
    assert list(again.alarm_log(a).action) == ["acknowledged", "cleared"]
    assert list(again.alarm_log(a).user) == ["alice", "alice"]
    b, _ = again.record_alert(alert(machine="capper", since=5000, ts=5000))
    assert again.record_alert(alert(machine="capper", state="cleared", since=5000, ts=9000))[0] == b
    assert again.alarms(LINE, search="capper").iloc[0].cleared_by == "forecast"
    again.record_alert(alert(machine="rinser", since=7000, ts=7000))
    assert again.end_run("r1") == 1  # a finished run's alarms stop being active
    assert again.alarms(LINE, active=True).empty and again.alarms(LINE, search="rinser").iloc[0].cleared_by == \
        "run finished"
    assert len(again.alarms(LINE, search="alice")) == 1


class Receiver:
    """A webhook receiver on 127.0.0.1: what Apprise's json:// posts, kept in order."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/alarms"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def test_one_notification_per_new_critical_alarm_through_apprise(tmp_path: Path, receiver: Receiver) -> None:
    rules = [NotifyRule(line="plant-hamburg/*", severity="critical", urls=[receiver.url]),
             NotifyRule(line="plant-linz/*", severity="info", urls=[receiver.url])]
    desk = AlarmDesk(Ledger(tmp_path / "l.sqlite"), rules)
    other = AlarmDesk(Ledger(tmp_path / "l.sqlite"), rules)  # a second process filing the same messages
    feed = [alert(severity="warning", p=0.6), alert(state="updated", ts=2000),  # escalates: notified
            alert(state="updated", ts=3000, p=0.95),  # still critical: nothing new
            alert(machine="capper", since=4000, ts=4000),  # a second critical alarm
            {**alert(machine="mill", since=5000, ts=5000), "line": "plant-other/x/y"}]  # no rule for its line
    for a in feed:
        desk.receive(a)
        other.receive(a)
    desk.wait()
    other.wait()
    assert len(receiver.posts) == 2, receiver.posts
    assert sorted(p["title"].split()[-2] for p in receiver.posts) == ["capper:", "filler-a:"]
    assert all(p["type"] == "failure" and "RUL 2.0 h" in p["message"] for p in receiver.posts)
    assert [s for _, s, ok in desk.sent + other.sent if ok] == ["critical", "critical"]


def test_a_new_critical_alarm_is_mailed_through_a_real_smtp_server(tmp_path: Path) -> None:
    """E-mail through Apprise's mailto:// to an SMTP server on 127.0.0.1 (aiosmtpd): one message per new critical
    alarm, with the machine, fault mode and RUL; a later update of the same alarm sends nothing."""
    from aiosmtpd.controller import Controller


    class Inbox:
        def __init__(self) -> None:
            self.mails: list[tuple[str, list[str], str]] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
            content = envelope.content.decode("utf-8", "replace")
            self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), content))
            return "250 OK"

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        url = (f"mailto://127.0.0.1:{smtp.port}?mode=insecure&from=twin@plant.example"
               "&to=maintenance@plant.example")
        desk = AlarmDesk(Ledger(tmp_path / "l.sqlite"), [NotifyRule(line="plant-hamburg/*", severity="critical",
                                                                    urls=[url])])
        for a in (alert(), alert(state="updated", ts=2000, p=0.95)):
            desk.receive(a)
        desk.wait()
    finally:
        smtp.stop()
    assert [ok for _, _, ok in desk.sent] == [True]
    assert len(inbox.mails) == 1, inbox.mails
    sender, to, content = inbox.mails[0]
    assert sender == "twin@plant.example" and to == ["maintenance@plant.example"]
    assert "[critical]" in content and "filler-a" in content and "bearing" in content and "RUL 2.0 h" in content


def test_notification_settings_errors_name_the_file_rule_and_field(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "notify.yaml"
    monkeypatch.setenv("LINETWIN_NOTIFY", str(f))
    assert load_rules() == []
    f.write_text("- line: '*'\n  severity: urgent\n  urls: [json://x]\n")
    with pytest.raises(NotifyError, match=r"notify.yaml: rule 1, field 'severity'"):
        load_rules()
    f.write_text("line: x\n")
    with pytest.raises(NotifyError, match="expected a list of rules"):
        load_rules()
    f.write_text("- {line: '*', urls: []}\n")
    with pytest.raises(NotifyError, match="field 'urls'"):
        load_rules()
    # a URL Apprise cannot send to was taken, and the first alarm's notification went nowhere without a word
    f.write_text("- {line: '*', urls: ['json://ops.example/alarms', 'mailtos//shift:secret@mail.example']}\n")
    with pytest.raises(NotifyError, match=r"rule 1, field 'urls.1': 'mailtos//shift:\*\*\*@mail.example' is not a "
                                          "URL Apprise can send to"):
        load_rules()


def test_a_notification_that_cannot_be_delivered_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A webhook or mail server that is down: the alarm is filed, and the failed notification said in the log (it
    was only a False in memory), without the URL's secrets."""
    url = f"json://ops:hunter2@127.0.0.1:{free_port()}/alarms"  # nothing listens there
    desk = AlarmDesk(Ledger(tmp_path / "l.sqlite"), [NotifyRule(line="*", severity="warning", urls=[url])])
    with caplog.at_level("WARNING", logger="linetwin.alarms"):
        desk.receive(alert())
        desk.wait()
    assert [ok for _, _, ok in desk.sent] == [False]
    said = [r.getMessage() for r in caplog.records if r.name == "linetwin.alarms"]
    assert len(said) == 1 and "critical notification could not be delivered to json://ops:" in said[0], said
    assert "hunter2" not in said[0]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["run", "replication", "line", "station", "fault_mode", "since", "rul",
                                        "probabilities", "model"]),
                       st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=300),
                                 st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text())))),
       st.integers(min_value=-2**70, max_value=2**70), st.sampled_from(["raised", "updated", "cleared"]))
def test_any_alert_message_that_parses_is_filed_without_error(tmp_path: Path, extra: dict[str, Any], ts: int,
                                                               state: str) -> None:
    """MQTT payloads are untrusted: whatever passes the alert parser is filed (fields bounded), never a crash."""
    raw = {**alert(state=state), **extra, "ts": ts}
    try:
        parsed = parse_alert(alert_payload(raw))
    except (ParseError, TypeError):
        return
    desk = AlarmDesk(Ledger(tmp_path / "fuzz.sqlite"), [])
    desk.receive(parsed)
    assert len(desk.ledger.alarms()) >= 1


@pytest.mark.slow
def test_runs_are_indexed_wherever_they_are_written(tmp_path: Path, linetwin_home: Path) -> None:
    out = tmp_path / "far" / "away"
    subprocess.run(twin_cmd("run", "scenarios/cnc_cell.yaml", "--no-stream", "--duration", "20 min", "--warmup", "0",
                            "--out", out),
                   cwd=ROOT, check=True, capture_output=True)
    assert out.resolve() in Ledger(linetwin_home / "linetwin.sqlite").run_folders()


def test_users_file_errors_name_the_file_field_and_fix(tmp_path: Path) -> None:
    from dashboard.access import AccessError, User, load_users

    f = tmp_path / "users.yaml"
    key = "k" * 40
    f.write_text(f"cookie_key: {key}\nusers:\n  alice: {{role: operator, password: secret}}\n")
    with pytest.raises(AccessError, match=r"users.yaml: field 'users.alice.password'.*twin passwd"):
        load_users(f)
    f.write_text(f"cookie_key: {key}\nusers:\n  alice: {{role: admin}}\n")
    with pytest.raises(AccessError, match=r"field 'users.alice.role'.*viewer, operator, engineer"):
        load_users(f)
    f.write_text("cookie_key: short\nusers:\n  alice: {role: viewer}\n")
    with pytest.raises(AccessError, match="field 'cookie_key'"):
        load_users(f)
    assert User("v", "viewer").can("acknowledge") is False
    assert User("o", "operator").can("acknowledge") and not User("o", "operator").can("start_run")
    assert User("e", "engineer").can("audit")


def test_user_names_are_matched_in_lower_case_as_the_sign_in_form_does(tmp_path: Path) -> None:
    """The sign-in form (streamlit-authenticator) lower-cases the name typed and the file's names: a user 'Alice'
    signed in as 'alice' and was then looked up as 'alice' in a file that says 'Alice' (a KeyError on the page)."""
    from dashboard.access import AccessError, load_users

    f = tmp_path / "users.yaml"
    head = f"cookie_key: {'k' * 40}\nusers:\n"
    f.write_text(head + "  Alice: {role: operator}\n  bob.smith@plant: {role: viewer}\n")
    assert set(load_users(f).users) == {"alice", "bob.smith@plant"}
    f.write_text(head + "  alice: {role: operator}\n  ALICE: {role: engineer}\n")
    with pytest.raises(AccessError, match=r"users.yaml: users 'alice' and 'ALICE' are the same user"):
        load_users(f)
    for bad in ("'bad user'", "'a:b'", "''", "x" * 65):
        f.write_text(head + f"  {bad}: {{role: viewer}}\n")
        with pytest.raises(AccessError, match=r"users.yaml: field 'users\..*user names are letters, digits"):
            load_users(f)


def test_passwd_prints_an_entry_the_users_file_reads_back(tmp_path: Path) -> None:
    from dashboard.access import load_users

    def passwd(user: str, typed: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(twin_cmd("passwd", user, "--role", "operator"), input=f"{typed}\n{typed}\n",
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    r = passwd("Alice.M", "correct horse")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr, r.stderr  # piped in: no getpass warnings about echo (with their file paths)
    [entry] = r.stdout.splitlines()  # the entry only (the prompts go to stderr): `twin passwd u >> users.yaml` works
    f = tmp_path / "users.yaml"
    f.write_text(f"cookie_key: {'k' * 40}\nusers:\n{entry}\n")
    users = load_users(f)
    assert users.users["alice.m"].role == "operator" and users.users["alice.m"].name == "Alice.M"
    for user, typed, message in [("a:b", "correct horse", "user name 'a:b'"),
                                 ("bad user", "correct horse", "user name 'bad user'"),
                                 ("olga", " correct horse", "spaces at either end")]:
        r = passwd(user, typed)
        assert r.returncode == 2 and message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run(twin_cmd("passwd", "olga"), input="correct horse\ncorrect hose\n", capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "a second line, if any, the same" in r.stderr and not r.stdout


def test_the_dashboard_refuses_the_network_without_sign_in(tmp_path: Path) -> None:
    r = subprocess.run(twin_cmd("dashboard", "--address", "0.0.0.0", "--runs", tmp_path), cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--auth USERS.yaml" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(twin_cmd("dashboard", "--address", "0.0.0.0", "--auth-header", "X-User", "--auth",
                                ROOT / "tests" / "nope.yaml"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "reverse proxy on the same host" in r.stderr


def test_notification_and_users_files_get_the_checks_of_every_configuration_file(tmp_path: Path) -> None:
    """Both were read with a bare `yaml.safe_load`: an alias bomb expanded without bound, a duplicate key was
    silently dropped. Now they are parsed like a scenario: refused at once, naming the file and line."""
    from dashboard.access import AccessError, load_users
    from tests.test_scenario import _laughs

    cases = [(_laughs(), r":\d+: the document expands to more than 200,000 values"),
             ("cookie_key: a\ncookie_key: b\n", ":2: key 'cookie_key' appears twice"),
             ("- a: [1\n", r":\d: not valid YAML")]
    for load, error, name in ((load_rules, NotifyError, "notify.yaml"), (load_users, AccessError, "users.yaml")):
        for text, message in cases:
            (tmp_path / name).write_text(text)
            with pytest.raises(error, match=f"^{name}{message}"):
                load(tmp_path / name)
