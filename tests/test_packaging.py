"""Packaging: the Dockerfile (no Docker engine here, so it is parsed), README commands, requirements pins."""

from __future__ import annotations

import re
import shlex

from tests.helpers import REPO


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def test_dockerfile_copies_only_files_that_exist():
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            for source in parts[:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"


def test_dockerfile_is_a_space_image_that_starts_the_app():
    rows = dockerfile_instructions()
    keywords = dict(rows)
    assert keywords["FROM"].startswith("python:3.11-slim")
    assert "8501" in keywords["EXPOSE"]
    assert "--uid 1000" in " ".join(rest for k, rest in rows if k == "RUN")
    assert keywords["USER"] == "user"
    assert "/_stcore/health" in keywords["HEALTHCHECK"]
    command = keywords["CMD"]
    assert "streamlit" in command and "app.py" in command and "8501" in command


def test_image_install_step_matches_the_readme():
    readme = (REPO / "README.md").read_text()
    installs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "pip install" in rest]
    assert any("-r requirements.txt" in line for line in installs)
    assert "pip install -r requirements.txt && streamlit run app.py" in readme


def test_readme_front_matter_is_a_docker_space():
    front = (REPO / "README.md").read_text().split("---")[1]
    assert re.search(r"^sdk: docker$", front, re.M) and re.search(r"^app_port: 8501$", front, re.M)
    for key in ("title:", "emoji:", "license:", "short_description:"):
        assert key in front


def test_requirements_are_pinned():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.]*", line), f"unpinned: {line}"


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "python -m pytest -q" in readme and "pytest -q" in ci


def test_ray_is_an_optional_extra_that_ci_installs_and_the_space_does_not():
    scale = (REPO / "requirements-scale.txt").read_text()
    assert re.search(r"^ray\[data\]==2\.60\.0$", scale, re.MULTILINE)
    for line in scale.splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.]*", line), f"unpinned: {line}"
    assert "ray" not in (REPO / "requirements.txt").read_text().lower()
    assert "requirements-scale" not in (REPO / "Dockerfile").read_text()
    assert "requirements-scale.txt" in (REPO / ".ci" / "run").read_text()


def test_the_readmes_transfer_table_is_the_one_the_cards_print():
    from core.checks.deploy import transfer_markdown
    from core.models.cards import list_cards, transfer_table

    cards = list_cards()
    table = transfer_markdown(transfer_table(cards), cards)
    assert table.count("\n") >= 4  # header, rule and at least three rows: the chest cards are committed
    assert table in (REPO / "README.md").read_text(), "rerun: python -m core.checks.deploy --readme-table"


def test_the_readmes_seed_tables_are_the_ones_seeds_json_prints():
    from core.checks.seeds import load_seed_study, seed_markdown
    from core.models.cards import WEIGHTS_DIR, list_cards

    study = load_seed_study(WEIGHTS_DIR)
    assert study is not None, "weights/seeds.json is committed"
    tables = seed_markdown(study, list_cards())
    assert "(in use)" in tables and tables.count("mean ± std") >= 3
    assert tables in (REPO / "README.md").read_text(), "rerun: python -m core.checks.seeds --readme-table"
