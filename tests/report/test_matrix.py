"""The matrix (report/matrix.py): role x permission tables computed by the engine; the
`relengine matrix` command is tests/test_cli.py's."""

from __future__ import annotations

import os
import pathlib

import pytest

from relengine.errors import InvalidArgument, UnknownDefinition
from relengine.report.matrix import Matrix, compute_matrix, render

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
GOLDEN = pathlib.Path(__file__).parent / "golden"

MAIN_TYPES = {
    "google_tag_manager": "container",
    "dxtra": "application",
    "google_tag": "google_tag",
    "piwik_pro": "website",
    "taggrs": "product",
}


def grants(matrix: Matrix, role: str) -> set[str]:
    for label, flags in matrix.rows:
        if label == role:
            return {p for p, flag in zip(matrix.permissions, flags) if flag}
    raise AssertionError(f"no role {role} in {[label for label, _ in matrix.rows]}")


def gtm() -> Matrix:
    return compute_matrix((SCHEMAS / "google_tag_manager.zed").read_text(), "container")


def test_gtm_container_rights_follow_the_product_rules() -> None:
    m = gtm()
    assert grants(m, "(no role)") == set()
    assert grants(m, "reader") == {"read"}
    assert grants(m, "editor") == {"read", "edit", "create_workspace"}
    assert grants(m, "approver") == {"read", "edit", "create_workspace", "approve", "create_version"}
    assert grants(m, "publisher") == set(m.permissions) - {"manage_users"}
    assert grants(m, "account->admin") == set(m.permissions)
    assert grants(m, "account->member") == set()


def test_dxtra_application_matrix() -> None:
    m = compute_matrix((SCHEMAS / "dxtra.zed").read_text(), "application")
    assert {"edit_tags", "create_revision"} <= grants(m, "developer")
    assert "finalize_revision" not in grants(m, "developer")
    assert "finalize_revision" in grants(m, "reviewer")
    assert grants(m, "viewer") == {"view_configuration", "view_analytics"}
    assert grants(m, "organization->owner") == set(m.permissions)
    assert grants(m, "organization->member") == set()


@pytest.mark.parametrize("name", sorted(MAIN_TYPES))
def test_matrix_golden(name: str) -> None:
    text = render(compute_matrix((SCHEMAS / f"{name}.zed").read_text(), MAIN_TYPES[name]), "markdown")
    golden = GOLDEN / f"{name}.{MAIN_TYPES[name]}.md"
    if os.environ.get("REGEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_formats() -> None:
    m = gtm()
    assert render(m, "text").splitlines()[0].split("|")[1].strip() == "publish"
    html = render(m, "html")
    assert html.startswith("<table>") and "<th>account-&gt;admin</th>" in html
    with pytest.raises(InvalidArgument):
        render(m, "pdf")


def test_unknown_type() -> None:
    with pytest.raises(UnknownDefinition):
        compute_matrix((SCHEMAS / "taggrs.zed").read_text(), "nothing")
