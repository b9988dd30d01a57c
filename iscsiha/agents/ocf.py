"""The OCF resource agent API (OCF 1.1): exit codes, metadata, parameters, dispatch.

Agents raise AgentError to finish with an OCF code instead of exiting deep in a
helper; ``run`` is the single place that turns it into an exit status.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, Protocol, TextIO

from iscsiha.errors import IscsihaError, bug_report
from iscsiha.model.names import parse_decimal


class Rc(IntEnum):
    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9


class AgentError(Exception):
    def __init__(self, rc: Rc, message: str) -> None:
        super().__init__(message)
        self.rc = rc


@dataclass(frozen=True)
class Param:
    name: str
    shortdesc: str
    longdesc: str
    kind: Literal["string", "integer", "boolean"] = "string"
    required: bool = False
    unique: bool = False
    default: str | None = None


@dataclass(frozen=True)
class Action:
    name: str
    timeout: int  # seconds
    interval: int | None = None


@dataclass(frozen=True)
class AgentSpec:
    name: str
    shortdesc: str
    longdesc: str
    params: tuple[Param, ...]
    actions: tuple[Action, ...] = field(default=(
        Action("start", 60), Action("stop", 60), Action("monitor", 20, interval=10),
        Action("validate-all", 10), Action("meta-data", 5),
    ))
    version: str = "1.0"


Params = Mapping[str, str]


class Agent(Protocol):
    spec: AgentSpec

    def validate(self, params: Params) -> None: ...
    def start(self, params: Params) -> Rc: ...
    def stop(self, params: Params) -> Rc: ...
    def monitor(self, params: Params) -> Rc: ...


def metadata_xml(spec: AgentSpec) -> str:
    root = ET.Element("resource-agent", name=spec.name, version=spec.version)
    ET.SubElement(root, "version").text = "1.1"
    ET.SubElement(root, "longdesc", lang="en").text = spec.longdesc
    ET.SubElement(root, "shortdesc", lang="en").text = spec.shortdesc
    params = ET.SubElement(root, "parameters")
    for p in spec.params:
        el = ET.SubElement(params, "parameter", name=p.name, unique=_flag(p.unique),
                           required=_flag(p.required))
        ET.SubElement(el, "longdesc", lang="en").text = p.longdesc
        ET.SubElement(el, "shortdesc", lang="en").text = p.shortdesc
        content = ET.SubElement(el, "content", type=p.kind)
        if p.default is not None:
            content.set("default", p.default)
    actions = ET.SubElement(root, "actions")
    for a in spec.actions:
        attrs = {"name": a.name, "timeout": f"{a.timeout}s"}
        if a.interval is not None:
            attrs["interval"] = f"{a.interval}s"
        ET.SubElement(actions, "action", attrs)
    ET.indent(root, space="  ")
    # The DOCTYPE is what ocf-tester validates against (ra-api-1.dtd, next to the
    # RelaxNG schema in resource-agents' data folder).
    return ('<?xml version="1.0"?>\n<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def parse_params(spec: AgentSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """OCF_RESKEY_<name> for each declared parameter, with defaults; required ones checked."""
    params = {}
    for p in spec.params:
        value = environ.get(f"OCF_RESKEY_{p.name}", p.default)
        if value is None or value == "":
            if p.required:
                raise AgentError(Rc.ERR_CONFIGURED, f"parameter {p.name} is required")
            continue
        if p.kind == "integer" and parse_decimal(value, INT_MIN, INT_MAX) is None:
            raise AgentError(Rc.ERR_CONFIGURED,
                             f"parameter {p.name}={_short(value)}: not an integer "
                             f"(ASCII digits, {INT_MIN} to {INT_MAX})")
        if p.kind == "boolean" and value.lower() not in _BOOLEANS:
            raise AgentError(Rc.ERR_CONFIGURED, f"parameter {p.name}={_short(value)}: "
                             f"not one of {', '.join(_BOOLEANS)}")
        params[p.name] = value
    return params


def is_probe(action: str, environ: Mapping[str, str]) -> bool:
    """A one-off monitor Pacemaker runs to learn whether the resource is active here."""
    return action == "monitor" and environ.get("OCF_RESKEY_CRM_meta_interval", "0") == "0"


def run(make_agent: Callable[[], Agent], spec: AgentSpec, argv: list[str],
        environ: Mapping[str, str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if len(argv) != 2:
        print(f"usage: {spec.name} {{{'|'.join(a.name for a in spec.actions)}}}", file=err)
        return Rc.ERR_ARGS
    action = argv[1]
    if action == "meta-data":
        out.write(metadata_xml(spec))
        return Rc.SUCCESS
    if action not in {a.name for a in spec.actions}:
        return Rc.ERR_UNIMPLEMENTED
    try:
        params = parse_params(spec, environ)
        agent = make_agent()
        agent.validate(params)
        if action == "validate-all":
            return Rc.SUCCESS
        handler: Callable[[Params], Rc] = getattr(agent, action.replace("-", "_"))
        return int(handler(params))
    except IscsihaError as exc:  # an executor failed: a generic, retryable failure
        print(f"{spec.name} {action}: {exc}", file=err)
        return Rc.ERR_GENERIC
    except AgentError as exc:
        # A probe of a box whose configuration cannot apply here is "not running",
        # so Pacemaker does not mark the resource failed on a box it never ran on.
        if is_probe(action, environ) and exc.rc in (Rc.ERR_CONFIGURED, Rc.ERR_INSTALLED):
            print(f"{spec.name}: probe: {exc}; reporting not running", file=err)
            return Rc.NOT_RUNNING
        print(f"{spec.name} {action}: {exc}", file=err)
        return int(exc.rc)
    except Exception:  # the last resort: say it is ours, keep the trace
        print(bug_report(f"{spec.name} {action}"), file=err)
        return Rc.ERR_GENERIC


_BOOLEANS = ("true", "false", "yes", "no", "1", "0", "on", "off")
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # OCF integers are C long long


def _short(value: str) -> str:
    return repr(value) if len(value) <= 80 else f"{value[:40]!r}... ({len(value)} characters)"


def _flag(value: bool) -> str:
    return "1" if value else "0"
