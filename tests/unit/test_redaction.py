"""The support bundle's redactor against hostile inputs: every form of a secret goes,
nothing else does."""

from __future__ import annotations

import base64
import json
import textwrap
import time
from pathlib import Path

import pytest

from iscsiha.model.load import load_text
from iscsiha.redaction import MARK, Redactor, model_secrets, named_values

EXAMPLE = Path(__file__).parents[2] / "examples" / "two-node.toml"
HOSTILE = r'a.b*c+(d)[e]\f"g' + "'<h>&|$^?"


def test_a_secret_full_of_regex_and_markup_characters_goes_in_every_form() -> None:
    r = Redactor({HOSTILE})
    for shown in (HOSTILE, json.dumps(HOSTILE), json.dumps({"x": HOSTILE}),
                  "<nvpair value='a.b*c+(d)[e]\\f&quot;g&#x27;&lt;h&gt;&amp;|$^?'/>",
                  "sh -c 'echo " + HOSTILE.replace("'", "'\"'\"'") + "'"):
        out = r.redact_text(f"before {shown} after")
        assert "a.b*c+(d)" not in out, shown
        assert out.startswith("before ") and out.endswith(" after")


def test_regex_characters_are_taken_literally() -> None:
    # "a.b*c" as a pattern would match "aXbbbc"; only the literal text is a secret.
    assert Redactor({"a.b*c+(d)"}).redact_text("aXbbbcd+d x") == "aXbbbcd+d x"


def test_a_secret_split_across_lines_is_still_found() -> None:
    secret = "wrapped-Secret-42"
    r = Redactor({secret})
    for text in (f"x = {secret[:7]}\n    {secret[7:]}\n",
                 f"x = {secret[:9]}\\\n{secret[9:]}\n",
                 f"x = {secret[:3]}\r\n> {secret[3:]}\n"):
        out = r.redact_text(text)
        assert MARK.decode() in out and "Secret-42" not in out and "wrapped" not in out


def test_a_wrapped_base64_key_is_found() -> None:
    key = bytes(range(256)) * 2  # a binary cluster key
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(key).decode(), 76))
    out = Redactor({key}).redact_text(f"key:\n{wrapped}\nend\n")
    assert out == f"key:\n{MARK.decode()}\nend\n"


def test_secrets_inside_and_overlapping_each_other_go_whole() -> None:
    r = Redactor({"password1234", "password1234567890", "abcdefgh", "efghijkl"})
    assert r.redact_text("[password1234567890]") == "[[redacted]]"
    assert r.redact_text("[password1234]") == "[[redacted]]"
    # Overlapping: neither alone covers the text, together they do.
    assert r.redact_text("(abcdefghijkl)") == "([redacted])"
    assert r.redact_text("abcdefgh efghijkl") == "[redacted] [redacted]"


def test_a_binary_file_is_redacted_byte_for_byte() -> None:
    secret = "bin-Secret-007"
    data = b"\x00\xff\xfe" + secret.encode() + b"\x00\x80" + secret.encode()[:5] + b"\x01"
    out = Redactor({secret}).redact(data)
    assert out == b"\x00\xff\xfe" + MARK + b"\x00\x80bin-S\x01"


def test_secrets_too_short_to_cut_by_value_are_counted_and_still_go_where_named() -> None:
    r = Redactor({"abc", "long-enough-1"})
    assert r.too_short == 1 and r.count == 2
    out = r.redact_text("abc abcdef password=abc long-enough-1")
    assert out == "abc abcdef password=[redacted] [redacted]"


@pytest.mark.parametrize("text, kept", [
    ('<nvpair id="f-a-pw" value="hunter2" name="password"/>', '<nvpair id="f-a-pw" value='),
    ('<nvpair id="x" name="passwd" value=\'hunter2\'/>', '<nvpair id="x" name="passwd" value='),
    ('{"chap_password": "hunter2", "chap_userid": "u"}', '"chap_userid": "u"'),
    ("mutual_secret = 'hunter2'", "mutual_secret = "),
    ("fence_ipmilan ip=10.0.0.1 password=hunter2 lanplus=1", "lanplus=1"),
    ('        shared-secret "hunter2";', "shared-secret "),
    ("token ISJ1-ABCDEF-GHIJKL-MNOPQR-234567 printed", "printed"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nhunter2\n-----END OPENSSH PRIVATE KEY-----\nok",
     "ok"),
])
def test_named_secrets_go_without_knowing_their_value(text: str, kept: str) -> None:
    out = Redactor(set()).redact_text(text)
    assert "hunter2" not in out and "ISJ1-ABCDEF" not in out
    assert kept in out and MARK.decode() in out


def test_ordinary_cluster_output_is_left_alone() -> None:
    text = ("totem {\n    token: 3000\n    token_retransmits_before_loss_const: 10\n}\n"
            "Node List:\n  * Online: [ san-a san-b ]\n"
            '<nvpair id="t-iqn" name="iqn" value="iqn.2024-01.com.example:vm"/>\n'
            "drbd0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate\n")
    assert Redactor({"not-in-there-1"}).redact_text(text) == text


def test_the_redactor_never_shows_its_secrets() -> None:
    r = Redactor({"hv-Secret-0001"})
    assert "hv-Secret" not in repr(r) and "hv-Secret" not in str(r)


def test_every_typed_secret_of_the_desired_state_is_found() -> None:
    config = load_text(EXAMPLE.read_text(), str(EXAMPLE))
    assert model_secrets(config) == {"bmc-a-secret", "bmc-b-secret", "disc0very-Secret",
                                     "hv-Secret-0001", "san-Secret-0001", "backup-Secret-1"}


def test_named_values_skip_lrm_references_and_other_keys() -> None:
    pairs = [("password", "x1"), ("chap_secret", "lrm://"), ("user", "u"), ("iqn", "i"),
             ("mutual_secret", "x2"), ("bmc_password", 5)]
    assert named_values(pairs) == {"x1", "x2"}


@pytest.mark.parametrize("text", [
    b"z" * 300_000,  # one long word: no pattern may try it from every position to its end
    b"<nvpair " * 40_000,  # tags never closed
    b"-----BEGIN RSA PRIVATE KEY-----" * 10_000,  # keys never ended
    b'password:"' * 40_000,  # quotes never closed
    (b"a" + b" " * 1000) * 300,
])
def test_hostile_text_costs_time_in_proportion_to_its_size(text: bytes) -> None:
    # Linear: well under a second each here; quadratic: hours.
    start = time.monotonic()
    Redactor({"zzzzzzzz1", "abcdefgh-secret"}).redact(text)
    assert time.monotonic() - start < 10
