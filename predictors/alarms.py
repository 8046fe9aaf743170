"""Alarms: alerts filed in the ledger's alarm book, and notifications of new alarms (webhook, e-mail, chat: any
service Apprise knows) configured per line and minimum severity in a YAML file:

    - line: plant-hamburg/hall-2/*      # a glob over site/area/line
      severity: critical                # the lowest severity notified
      urls: ["json://ops.example:8080/alarms", "mailtos://user:pass@mail.example?to=shift@example"]

The file is $LINETWIN_NOTIFY, else notify.yaml in the linetwin home. Each alarm is notified once per severity
it reaches (an alarm escalating from warning to critical is notified again), however many processes file it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sensors.bus.payloads import SEVERITIES
from sensors.store.ledger import ACTIVE_STATES, Ledger, home
from twin.scenario import parse_yaml

log = logging.getLogger("linetwin.alarms")


class NotifyRule(BaseModel):
    """Where to send new alarms of lines matching `line` at `severity` or above."""

    model_config = ConfigDict(extra="forbid")
    line: str = Field("*", description="glob over site/area/line")
    severity: Literal["info", "warning", "critical"] = "critical"
    urls: list[str] = Field(min_length=1, description="Apprise URLs: json://, mailto://, slack://, ...")


class NotifyError(ValueError):
    """The notification settings file is wrong: the message names the file, the entry and the fix."""


def notify_file() -> Path:
    return Path(os.environ.get("LINETWIN_NOTIFY") or home() / "notify.yaml")


def load_rules(path: Path | None = None) -> list[NotifyRule]:
    """The notification rules (none if the file does not exist); NotifyError with file, entry and field if wrong."""
    path = path or notify_file()
    if not path.exists():
        return []
    doc, _ = parse_yaml(path, "notification rules", NotifyError)  # size, aliases, nesting: as every config file
    if not isinstance(doc, list):
        raise NotifyError(f"{path}: expected a list of rules (- line: ..., severity: ..., urls: [...]), got "
                          f"{type(doc).__name__}.")
    rules = []
    for i, entry in enumerate(doc):
        try:
            rules.append(NotifyRule.model_validate(entry))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "entry"
            raise NotifyError(f"{path}: rule {i + 1}, field '{where}': {err['msg']}. Each rule has line (a glob), "
                              f"severity ({', '.join(SEVERITIES)}) and urls (a list of Apprise URLs).") from None
    if rules:
        import apprise

        for i, rule in enumerate(rules):
            for j, url in enumerate(rule.urls):  # one Apprise cannot read was dropped at the first alarm, silently
                if not apprise.Apprise().add(url):
                    raise NotifyError(f"{path}: rule {i + 1}, field 'urls.{j}': {_private(url)!r} is not a URL Apprise "
                                      "can send to (a typo in the scheme, e.g. mailtos:// or json://, or a missing "
                                      "part); see https://github.com/caronc/apprise/wiki for each service's form.")
    return rules


def _private(url: str) -> str:
    """A URL as it may be printed or logged: Apprise's own form with passwords and tokens hidden (notify.yaml holds
    mail and chat credentials); for one it cannot read, the password of user:password@ hidden."""
    import apprise

    server = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    return server.url(privacy=True).split("?")[0] if server else re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


class AlarmDesk:
    """Files alert messages in the alarm book and sends notifications of new alarms (in a background thread: a
    slow mail server never holds up the MQTT loop)."""

    def __init__(self, ledger: Ledger, rules: list[NotifyRule] | None = None) -> None:
        self.ledger = ledger
        self.rules = load_rules() if rules is None else rules
        self.sent: list[tuple[int, str, bool]] = []  # (alarm, severity, delivered)
        self._threads: list[threading.Thread] = []

    def receive(self, alert: dict[str, Any]) -> int:
        """File one alert; notify if it makes an alarm reach a severity a rule asks for. Returns the alarm id."""
        alarm, _ = self.ledger.record_alert(alert)
        if alert["state"] not in ACTIVE_STATES:
            return alarm
        urls = [u for r in self.rules if fnmatch.fnmatchcase(str(alert.get("line", "")), r.line)
                and SEVERITIES.index(alert["severity"]) >= SEVERITIES.index(r.severity) for u in r.urls]
        if urls and self.ledger.claim_notification(alarm, SEVERITIES.index(alert["severity"])):
            t = threading.Thread(target=self._send, args=(alarm, alert, urls), daemon=True)
            t.start()
            self._threads.append(t)
        return alarm

    def _send(self, alarm: int, alert: dict[str, Any], urls: list[str]) -> None:
        import apprise

        box = apprise.Apprise()
        for url in urls:
            box.add(url)
        rul = alert.get("rul") if isinstance(alert.get("rul"), dict) else {}
        rul_h = rul.get("estimate_s") / 3600 if isinstance(rul.get("estimate_s"), int | float) else float("nan")
        title = f"[{alert['severity']}] {alert.get('line', '')} {alert['machine']}: {alert.get('fault_mode', '')}"
        body = (f"Alarm {alarm}: {alert['machine']} ({alert.get('station', '')}) on {alert.get('line', '')}, fault "
                f"mode {alert.get('fault_mode', '')}, P(failure within horizon) {alert['probability']:.0%}, "
                f"RUL {rul_h:.1f} h, run {alert.get('run', '')} replication {alert.get('replication', '')}.")
        kind = apprise.NotifyType.FAILURE if alert["severity"] == "critical" else apprise.NotifyType.WARNING
        delivered = bool(box.notify(title=title, body=body, notify_type=kind))
        if not delivered:  # a mail server or webhook that is down: said where the alarms are filed, not only lost
            log.warning("alarm %d (%s): its %s notification could not be delivered to %s (see the lines above from "
                        "apprise)", alarm, alert["machine"], alert["severity"],
                        ", ".join(_private(u) for u in urls))
        self.sent.append((alarm, alert["severity"], delivered))

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for notifications in flight (tests, and before a process exits)."""
        for t in self._threads:
            t.join(timeout)
