"""The docs cannot drift from the code: the generated reference pages are current, every failure class has its
troubleshooting entry, and the examples the docs show load as the monitor loads them. (`./dev docs` builds the
site itself with `mkdocs build --strict`; `./dev lint` runs it.)"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from model_monitor.config import load
from model_monitor.errors import ErrorClass
from model_monitor.settings import OPTIONS
from model_monitor.types import TYPES

from .helpers import ROOT

DOCS = ROOT / "docs"
EXAMPLE = ROOT / "examples" / "endpoints" / "vllm-litellm.yaml"


def gen_docs() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gen_docs", str(ROOT / "scripts" / "gen-docs"))
    spec = importlib.util.spec_from_loader("gen_docs", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


GENERATED = gen_docs().pages()


@pytest.mark.parametrize("path", sorted(GENERATED), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_generated_page_is_current(path: Path) -> None:
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    assert committed == GENERATED[path], f"{path.relative_to(ROOT)} is out of date: run scripts/gen-docs"


def test_the_generator_names_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = gen_docs()
    stale = tmp_path / "options.md"
    stale.write_text("old\n")
    monkeypatch.setattr(module, "pages", lambda: {module.ROOT / "docs" / "x.md": "new\n", stale: "new\n"})
    monkeypatch.setattr(module, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text("new\n")
    assert module.main(["--check"]) == 1
    assert stale.read_text() == "old\n", "--check writes nothing"
    assert module.main([]) == 0 and stale.read_text() == "new\n"


def test_the_reference_covers_every_option_type_and_field() -> None:
    options = (DOCS / "reference" / "options.md").read_text()
    for option in OPTIONS:
        assert f"`{option.env}`" in options if option.env else f"`{option.flag}" in options
    fields = (DOCS / "reference" / "endpoints-file.md").read_text()
    for name, model_type in TYPES.items():
        assert f"[{name}](types/{name}.md)" in fields
        page = (DOCS / "reference" / "types" / f"{name}.md").read_text()
        assert all(f"| `{field}` |" in page for field in model_type.schema), name


def test_every_generated_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for path in GENERATED:
        if path.is_relative_to(DOCS):
            assert f": {path.relative_to(DOCS).as_posix()}\n" in nav, (
                f"{path.relative_to(ROOT)} is not in mkdocs.yml's nav"
            )


def test_every_failure_class_has_a_troubleshooting_entry() -> None:
    headings = set(re.findall(r"^### (\w+)$", (DOCS / "troubleshooting.md").read_text(), flags=re.M))
    assert sorted(c.value for c in ErrorClass if c.value not in headings) == []


def test_the_chart_readme_values_table_is_between_its_markers() -> None:
    text = (ROOT / "chart" / "README.md").read_text()
    module = gen_docs()
    assert text.count(module.START) == 1 and text.count(module.END) == 1
    assert "| `cronJob.shards` |" in text.split(module.START)[1].split(module.END)[0]


def test_the_vllm_litellm_example_loads() -> None:
    suite = load(EXAMPLE, environ={})
    assert [case.id for case in suite.cases][:2] == ["vllm-chat/qwen3-8b", "vllm-chat/qwen3-8b-json"]
    assert {case.type.name for case in suite.cases} >= {"chat", "responses", "models", "embedding", "rerank"}
    assert list(suite.discoveries) == ["gateway"]
    # Its keys are read only for the cases a run selects, from the variables the docs name.
    names = yaml.safe_load(EXAMPLE.read_text())["endpoints"]
    assert {e["api_key_env"] for e in names} == {"VLLM_API_KEY", "LITELLM_API_KEY"}


def test_the_docs_show_the_example_file_itself() -> None:
    assert '--8<-- "examples/endpoints/vllm-litellm.yaml"' in (DOCS / "endpoints.md").read_text()


def test_the_release_workflow_publishes_the_strictly_built_site() -> None:
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())["jobs"]
    build = "\n".join(step.get("run", "") for step in jobs["docs"]["steps"])
    assert "mkdocs build --strict" in build and "scripts/gen-docs --check" in build
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact@") for step in jobs["docs"]["steps"])
    assert [step["uses"].split("@")[0] for step in jobs["pages"]["steps"]] == ["actions/deploy-pages"]
    assert jobs["pages"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert "docs" in jobs["pages"]["needs"]


def test_the_readme_keeps_its_quick_start_and_its_links() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./dev demo    #" in readme and "./dev test    #" in readme
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), f"README.md links to {target}, which is not there"
