"""`model-monitor validate` and `model-monitor init`: the endpoints file checked without sending anything, and a
starter file that validate accepts. In process (model_monitor.cli.main); the installed command runs them in
test_command.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model_monitor.cli import main
from model_monitor.files import STARTER

from .helpers import endpoint, model
from .test_config import BAD, PASSWORD

VARIABLES = ("MM_TEST_VALIDATE_KEY", "MM_TEST_VALIDATE_HOST")
STARTER_KEYS = ("VLLM_API_KEY", "LITELLM_API_KEY", "OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*VARIABLES, *STARTER_KEYS, "NO_SUCH_VAR_FOR_TEST", "NO_SUCH_KEY_FOR_TEST", "MODEL_MONITOR_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", sorted(BAD))
def test_validate_names_each_bad_file_at_its_line_and_exits_4(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bad-config corpus: each file's problem, at file:line, exit 4; with --resolve, as a run would see it."""
    text, piece, line = BAD[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    assert main(["validate", "--resolve", str(path)]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}:{line}: " if line else f"{path}: ") and piece in err
    assert PASSWORD not in out + err


def test_validate_lists_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "endpoints:\n"
        "  - name: a\n"
        "    url: my-service\n"
        "    models: [{name: m, type: chatt}]\n"
        "  - name: b\n"
        "    url: http://x\n"
        "    timeout: soon\n"
        "    models: [{name: m, type: chat}]\n"
    )
    assert main(["validate", str(path)]) == 4
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[0:2] for line in err] == [
        [f"{path}:3", "endpoints[0].url"],
        [f"{path}:4", "endpoints[0].models[0].type"],
        [f"{path}:7", "endpoints[1].timeout"],
    ]


def test_validate_reads_no_unset_variable_unless_asked_to_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --resolve, a file whose key and URL variables are unset is valid (a run that does not select the
    endpoint would not read them) and validate names them; --resolve lists each unset one, then accepts them set,
    never showing a value."""
    key, host = VARIABLES
    path = tmp_path / "endpoints.yaml"
    data = {
        "endpoints": [
            endpoint("http://${" + host + "}:8000", model("m"), name="a", api_key_env=key),
            endpoint("http://x", model("m", "embedding"), name="b"),
        ]
    }
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: valid: 2 cases on 2 endpoints",
        f"reads {host}, {key}: not checked (add --resolve to check them)",
    ]
    assert main(["validate", "--resolve", str(path)]) == 4
    err = capsys.readouterr().err
    assert f"environment variable {host}" in err and f"environment variable {key} (the API key) is not set" in err
    monkeypatch.setenv(host, "inference.internal")
    monkeypatch.setenv(key, "sk-validate-secret")
    assert main(["validate", "--resolve", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f"reads {host}, {key}: each is set"
    assert "sk-validate-secret" not in out + err and "inference.internal" not in out + err


def test_validate_reads_the_file_a_run_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No FILE: $MODEL_MONITOR_ENDPOINTS, else endpoints.yaml in the current folder; a missing one is exit 4."""
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 4
    assert "endpoints.yaml" in capsys.readouterr().err
    path = tmp_path / "staging.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [endpoint("http://x", model("m"))]}))
    monkeypatch.setenv("MODEL_MONITOR_ENDPOINTS", str(path))
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == f"{path}: valid: 1 cases on 1 endpoints\n"


def test_a_bad_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--nope"])
    assert exited.value.code == 4
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def test_init_writes_a_starter_that_validate_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every server the starter names becomes cases (LiteLLM's through discovery), the file keeps its comments,
    and with its variables set it resolves too."""
    path = tmp_path / "endpoints.yaml"
    assert main(["init", str(path)]) == 0
    assert path.read_text() == STARTER.read_text()
    capsys.readouterr()
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{path}: valid: 7 cases on 5 endpoints, 1 of them list their models at run time"
    names = [e["name"] for e in yaml.safe_load(path.read_text())["endpoints"]]
    assert names == ["vllm", "llamacpp", "ollama", "litellm", "openai"]
    for name in ("VLLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, "sk-starter")
    assert main(["validate", "--resolve", str(path)]) == 4, "LiteLLM's endpoint has no case of its own, but lists"
    assert "environment variable LITELLM_API_KEY (the API key) is not set" in capsys.readouterr().err
    monkeypatch.setenv("LITELLM_API_KEY", "sk-starter")
    assert main(["validate", "--resolve", str(path)]) == 0


def test_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text("mine\n")
    assert main(["init", str(path)]) == 4
    assert path.read_text() == "mine\n"
    assert capsys.readouterr().err == f"{path}: already exists; not overwritten (give another file name)\n"
    assert main(["init", str(tmp_path / "no-such-folder" / "endpoints.yaml")]) == 4
    assert "cannot write: No such file or directory" in capsys.readouterr().err
