"""The accounts merge on text: the product's user's password and memberships move, the
rest of the new root's files stays byte for byte."""

from __future__ import annotations

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.model import accounts
from tests.unit.fake_roots import (
    NEW_GROUP,
    NEW_PASSWD,
    NEW_SHADOW,
    OLD_GROUP,
    OLD_PASSWD,
    OLD_SHADOW,
)


def test_names_and_ids_are_read_both_ways() -> None:
    ids = accounts.parse_ids(NEW_PASSWD, NEW_GROUP, "/new")
    assert ids.user_ids["hacluster"] == 107 and ids.user_names[105] == "_newsvc"
    assert ids.group_ids["haclient"] == 113 and ids.group_names[110] == "_newsvc"


def test_only_the_users_shadow_line_changes() -> None:
    merged = accounts.merge_shadow(OLD_SHADOW, NEW_SHADOW, ("admin",), "/old", "/new")
    old_lines, new_lines = NEW_SHADOW.splitlines(), merged.splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert changed == [("admin:*:19900:0:99999:7:::",
                        "admin:$y$j9T$oldsalt$oldhash:19500:0:99999:7:::")]
    assert merged.endswith("\n")


def test_memberships_are_added_to_the_new_roots_groups() -> None:
    merged = accounts.merge_members(OLD_GROUP, NEW_GROUP, ("admin",), accounts.GROUP,
                                    "/old", "/new")
    assert merged == NEW_GROUP.replace("sudo:x:27:\n", "sudo:x:27:admin\n").replace(
        "haclient:x:113:\n", "haclient:x:113:admin\n")
    # Again: nothing doubles.
    assert accounts.merge_members(OLD_GROUP, merged, ("admin",), accounts.GROUP,
                                  "/old", "/new") == merged


def test_a_group_the_new_release_dropped_is_refused_naming_it() -> None:
    old = OLD_GROUP + "storage-ops:x:1300:admin\n"
    with pytest.raises(IscsihaError) as exc:
        accounts.merge_members(old, NEW_GROUP, ("admin",), accounts.GROUP, "/old", "/new")
    assert exc.value.reports[0].code == "group-missing"
    assert "storage-ops" in exc.value.reports[0].message


def test_a_new_root_without_the_admin_account_is_refused() -> None:
    passwd = "\n".join(ln for ln in NEW_PASSWD.splitlines() if not ln.startswith("admin:"))
    with pytest.raises(IscsihaError) as exc:
        accounts.require_users(passwd, ("admin",), "/new/etc/passwd")
    assert (exc.value.reports[0].code, exc.value.reports[0].message) == (
        "account-missing", "has no admin")


@pytest.mark.parametrize("line", ["admin:x:1000:1000:/home/admin:/bin/sh",
                                  "admin:x:ten:1000::/home/admin:/bin/sh"])
def test_a_garbled_passwd_line_is_refused_naming_the_file(line: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        accounts.parse_ids(OLD_PASSWD + line + "\n", OLD_GROUP, "/old")
    assert exc.value.reports[0].code == "bad-accounts-file"
    assert str(exc.value.reports[0].value).startswith("/old/etc/passwd")
