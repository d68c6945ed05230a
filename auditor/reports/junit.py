"""The JUnit XML report, for Jenkins and GitLab test dashboards.

One <testsuite> per host and one <testcase> per snapshot (classname HOST/DOMAIN, name SNAPSHOT),
plus one per other subject with findings (an image, a domain, the host itself). A test case
fails when an unsuppressed error finding names it, and is an <error> when a rule raised on it;
a host that could not be scanned is one errored test case, a skipped snapshot or domain a
<skipped> one. Warnings, infos and waived or baselined findings do not fail anything: they are
listed in the suite's <system-out>. The layout follows the Ant/Jenkins JUnit schema (one result
element per test case, output at suite level), so every consumer reads it.
"""

from __future__ import annotations

import re
from collections import defaultdict

from lxml import etree

from auditor.model import Finding, HostScan, RuleError, ScanResult, Severity, Skipped

# What XML 1.0 cannot carry at all, even escaped; names from hosts may hold anything.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def render(result: ScanResult, *, color: bool = False) -> str:
    root = etree.Element("testsuites")
    timestamp = result.generated_at.strftime("%Y-%m-%dT%H:%M:%S")  # the schema wants no zone
    by_host: dict[str, list[Finding]] = defaultdict(list)
    for finding in result.findings:
        by_host[finding.host].append(finding)
    errors_by_host: dict[str | None, list[RuleError]] = defaultdict(list)
    for error in result.rule_errors:
        errors_by_host[error.host].append(error)

    for scan in result.hosts:
        suite = _suite(root, scan.host.uri, scan.host.hostname or scan.host.uri, timestamp)
        _property(suite, "uri", scan.host.uri)
        for key in ("hostname", "libvirt_version", "hypervisor_version"):
            value = getattr(scan.host, key)
            if value:
                _property(suite, key, value)
        output = _host_cases(suite, scan, by_host[scan.host.uri], errors_by_host[scan.host.uri])
        _finish(suite, output)

    if errors_by_host[None]:  # rules that failed to load belong to no host
        suite = _suite(root, "snapaudit rules", "localhost", timestamp)
        for error in errors_by_host[None]:
            case = _case(suite, "snapaudit.rules", error.rule)
            _result(case, "error", error.message, "rule-error", error.message)
        _finish(suite, [])

    return etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True).decode()


def _host_cases(
    suite, scan: HostScan, findings: list[Finding], rule_errors: list[RuleError]
) -> list[str]:
    """Add the host's test cases; return the lines for its <system-out>."""
    uri = scan.host.uri
    if scan.host.error:
        case = _case(suite, uri, "scan")
        _result(case, "error", scan.host.error, "host-error", scan.host.error)
        return []

    # Subjects in report order: every snapshot, then whatever else findings or errors name.
    subjects: dict[tuple[str, str], tuple[list[Finding], list[RuleError]]] = {}
    for domain in scan.domains:
        for snapshot in domain.snapshots:
            subjects[(domain.name, snapshot.name)] = ([], [])
    for finding in findings:
        subjects.setdefault((finding.domain, finding.snapshot_label), ([], []))[0].append(finding)
    for error in rule_errors:
        key = (error.domain or "", error.snapshot or "")
        subjects.setdefault(key, ([], []))[1].append(error)

    output = []
    for (name, subject), (found, errors) in subjects.items():
        case = _case(suite, f"{uri}/{name}" if name else uri, _subject_name(name, subject))
        failing = [f for f in found if f.severity is Severity.ERROR and not f.suppressed]
        details = "\n".join(_failure_line(f) for f in failing)
        if errors:
            messages = [f"rule {e.rule}: {e.message}" for e in errors]
            text = "\n".join(messages + ([details] if details else []))
            _result(case, "error", _headline(messages), "rule-error", text)
        elif failing:
            codes = ",".join(dict.fromkeys(f.rule for f in failing))
            headline = _headline([f"{f.rule}: {f.message}" for f in failing])
            _result(case, "failure", headline, codes, details)
        output += [
            _output_line(f) for f in found if f.severity is not Severity.ERROR or f.suppressed
        ]
    for item in scan.skipped:
        _skip(suite, item)
    return output


def _subject_name(domain: str, subject: str) -> str:
    return subject or ("(domain)" if domain else "(host)")


def _headline(messages: list[str]) -> str:
    more = len(messages) - 1
    return messages[0] + (f" (and {more} more)" if more else "")


def _failure_line(f: Finding) -> str:
    disk = f" [disk {f.disk}]" if f.disk else ""
    return f"{f.rule} {f.name}{disk}: {f.message}\n  remediation: {f.remediation}"


def _output_line(f: Finding) -> str:
    where = "/".join(p for p in (f.domain, f.snapshot_label, f.disk or "") if p) or "(host)"
    line = f"{where}  {f.rule} {f.severity.value}  {f.message}"
    if f.waiver is not None:
        w = f.waiver
        line += f"  [waived: {w.reason} ({w.owner}, until {w.expires.isoformat()})]"
    elif f.baselined:
        line += "  [baselined]"
    return line


def _skip(suite, item: Skipped) -> None:
    classname = f"{item.host}/{item.domain}" if item.domain else item.host
    case = _case(suite, classname, _subject_name(item.domain or "", item.snapshot or ""))
    etree.SubElement(case, "skipped", message=xml_text(item.reason))


def _suite(root, name: str, hostname: str, timestamp: str):
    suite = etree.SubElement(root, "testsuite", name=xml_text(name), package="snapaudit")
    suite.set("id", str(len(root) - 1))  # the schema numbers suites from 0
    suite.set("hostname", xml_text(hostname))
    suite.set("timestamp", timestamp)
    etree.SubElement(suite, "properties")
    return suite


def _property(suite, name: str, value: str) -> None:
    etree.SubElement(suite.find("properties"), "property", name=name, value=xml_text(value))


def _case(suite, classname: str, name: str):
    return etree.SubElement(
        suite, "testcase", name=xml_text(name), classname=xml_text(classname), time="0"
    )


def _result(case, kind: str, message: str, type_: str, text: str) -> None:
    element = etree.SubElement(case, kind, message=xml_text(message), type=xml_text(type_))
    element.text = xml_text(text)


def _finish(suite, output: list[str]) -> None:
    """Counts, then the output elements the schema requires after the test cases."""
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for kind, attribute in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attribute, str(sum(1 for c in cases if c.find(kind) is not None)))
    suite.set("time", "0")
    etree.SubElement(suite, "system-out").text = xml_text("".join(f"{line}\n" for line in output))
    etree.SubElement(suite, "system-err")
