"""Configuration files that are hostile, huge or ambiguous: each one is refused
quickly, with a ConfigError naming the file and what is wrong (and where)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_fast import ConfigError
from zeta_fast.config import load_router_config, parse_router_config
from zeta_fast.scoring_file import load_document

# The documented bounds (docs/router.md, load_document's docstring).
MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 32

REPLICA = '{id: r, url: "http://127.0.0.1:8001"}'
MINIMAL_YAML = f"models:\n  - id: m\n    capabilities: {{chat: 80}}\n    replicas: [{REPLICA}]\n"


def minimal() -> dict[str, Any]:
    return {
        "models": [
            {
                "id": "m",
                "capabilities": {"chat": 80},
                "replicas": [{"id": "r", "url": "http://127.0.0.1:8001"}],
            }
        ]
    }


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_document(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message


# -- size and aliases -------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    message = refused(write(tmp_path, "bomb.yaml", billion_laughs()))
    assert "more than 100000 values (a YAML alias counts as all it repeats)" in message


def test_a_yaml_alias_inside_the_node_it_names_is_refused(tmp_path: Path) -> None:
    message = refused(write(tmp_path, "loop.yaml", "a: &loop [1, *loop]\n"))
    assert "a[1]: an alias inside the node it names (line 1)" in message


def test_ordinary_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "anchors.yaml",
        "defaults: &replica {backend: vllm, max_concurrency: 4}\n"
        "models:\n"
        "  - id: m\n"
        "    capabilities: {chat: 80}\n"
        "    replicas:\n"
        '      - {<<: *replica, id: a, url: "http://127.0.0.1:8001"}\n'
        '      - {<<: *replica, id: b, url: "http://127.0.0.1:8002", max_concurrency: 8}\n',
    )
    document = load_document(path)
    del document["defaults"]
    replicas = parse_router_config(document).models[0].replicas
    assert [(r.backend, r.max_concurrency) for r in replicas] == [("vllm", 4), ("vllm", 8)]


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path, suffix: str) -> None:
    padding = "x" * MAX_DOCUMENT_BYTES
    text = {
        ".yaml": f'pad: "{padding}"\n',
        ".json": json.dumps({"pad": padding}),
        ".toml": f'pad = "{padding}"\n',
    }[suffix]
    message = refused(write(tmp_path, f"big{suffix}", text))
    assert "larger than 1048576 bytes, the limit of a configuration file" in message


def test_a_large_file_within_the_limit_loads(tmp_path: Path) -> None:
    entries = [{"name": f"key-{i}", "note": "n" * 400} for i in range(2_000)]
    text = yaml.safe_dump({"entries": entries})
    assert 0.8 * MAX_DOCUMENT_BYTES < len(text) < MAX_DOCUMENT_BYTES
    assert load_document(write(tmp_path, "large.yaml", text))["entries"] == entries


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
def test_yaml_is_read_by_libyaml() -> None:
    # The pure-Python parser takes minutes on a file near the size limit.
    from zeta_fast import scoring_file

    assert issubclass(scoring_file._YAML_LOADER, yaml.CSafeLoader)


# -- nesting ----------------------------------------------------------------------


def nested(suffix: str, depth: int) -> str:
    """A document whose top-level mapping holds lists ``depth - 1`` deep."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return {".json": f'{{"a": {inner}}}', ".yaml": f"a: {inner}\n", ".toml": f"a = {inner}\n"}[
        suffix
    ]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".toml"])
def test_nesting_at_the_limit_loads(tmp_path: Path, suffix: str) -> None:
    assert "a" in load_document(write(tmp_path, f"deep{suffix}", nested(suffix, MAX_DEPTH)))


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".toml"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_nesting_beyond_the_limit_is_refused(tmp_path: Path, suffix: str, depth: int) -> None:
    message = refused(write(tmp_path, f"deep{suffix}", nested(suffix, depth)))
    assert "nested deeper than 32 levels" in message


def test_serve_refuses_a_deep_file_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "deep.json", nested(".json", 100_000))
    result = subprocess.run(
        [sys.executable, "-m", "zeta_fast.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == f"zeta-fast: error: {path}: nested deeper than 32 levels\n"


# -- duplicate keys ---------------------------------------------------------------


def test_a_second_models_list_in_yaml_is_refused(tmp_path: Path) -> None:
    text = MINIMAL_YAML + "gateway: {port: 8080}\n" + MINIMAL_YAML.replace("id: m", "id: n")
    message = refused(write(tmp_path, "twice.yaml", text))
    assert "duplicate key 'models' in the top-level mapping (line 6, first at line 1)" in message


def test_a_nested_duplicate_key_in_yaml_is_refused(tmp_path: Path) -> None:
    text = MINIMAL_YAML.replace("{chat: 80}", "{chat: 80, code: 70, chat: 10}")
    message = refused(write(tmp_path, "twice.yaml", text))
    assert "duplicate key 'chat' in models[0].capabilities (line 3, first at line 3)" in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"models": [], "models": []}', "duplicate key 'models' in the top-level mapping"),
        (
            '{"models": [{"id": "m", "replicas": [{"id": "r", "url": "a", "url": "b"}]}]}',
            "duplicate key 'url' in models[0].replicas[0]",
        ),
    ],
)
def test_a_duplicate_key_in_json_is_refused(tmp_path: Path, text: str, where: str) -> None:
    assert where in refused(write(tmp_path, "twice.json", text))


def test_a_duplicate_key_in_toml_is_refused(tmp_path: Path) -> None:
    # tomllib's own rule; here so that all three formats are seen to agree.
    assert "cannot parse" in refused(write(tmp_path, "twice.toml", "a = 1\na = 2\n"))


# -- booleans for numbers ---------------------------------------------------------


def test_port_yes_in_yaml_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "router.yaml", MINIMAL_YAML + "gateway: {port: yes}\n")
    with pytest.raises(ConfigError, match=r"gateway\.port: Input should be a number, not a bool"):
        load_router_config(path)


@pytest.mark.parametrize(
    ("section", "path"),
    [
        (lambda d: d["models"][0]["replicas"][0], "models[0].replicas[0].max_concurrency"),
        (lambda d: d["models"][0], "models[0].context_window"),
        (lambda d: d.setdefault("dispatch", {}), "dispatch.max_attempts"),
        (lambda d: d.setdefault("dispatch", {}), "dispatch.max_total_s"),
        (lambda d: d.setdefault("dispatch", {}).setdefault("breaker", {}), "breaker.cooldown_s"),
        (lambda d: d.setdefault("learning", {}), "learning.explore"),
        (lambda d: d.setdefault("outcome_log", {}), "outcome_log.retention_days"),
        (lambda d: d.setdefault("cost", {}), "cost.willingness_to_pay"),
        (lambda d: d, "relative_latency_factor"),
    ],
)
@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_for_a_number_is_refused(section: Any, path: str, value: bool) -> None:
    data = minimal()
    section(data)[path.rpartition(".")[2]] = value
    with pytest.raises(ConfigError) as caught:
        parse_router_config(data)
    assert f"{path}: Input should be a number, not a boolean" in str(caught.value)
    assert f"(got {value})" in str(caught.value)


def test_a_boolean_inside_a_numeric_mapping_or_range_is_refused() -> None:
    data = minimal()
    data["models"][0]["capabilities"] = {"chat": True}
    data["models"][0]["complexity_range"] = [False, True]
    with pytest.raises(ConfigError) as caught:
        parse_router_config(data)
    for path in ("capabilities.chat", "complexity_range[0]", "complexity_range[1]"):
        assert f"models[0].{path}: Input should be a number, not a boolean" in str(caught.value)


def test_numbers_still_read_across_int_and_float() -> None:
    data = minimal()
    data["gateway"] = {"port": 8080.0}
    data["dispatch"] = {"breaker": {"cooldown_s": 5}}
    data["models"][0]["replicas"][0]["max_concurrency"] = 4.0
    config = parse_router_config(data)
    assert (config.gateway.port, config.models[0].replicas[0].max_concurrency) == (8080, 4)
    assert config.dispatch.breaker.cooldown_s == 5.0
    assert isinstance(config.gateway.port, int)


def test_booleans_still_read_as_booleans(tmp_path: Path) -> None:
    path = write(tmp_path, "router.yaml", MINIMAL_YAML + "alerts: {enabled: no}\n")
    assert load_router_config(path).alerts.enabled is False


# -- replica URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/v1",
        "http://127.0.0.1:8001/v1/",
        "https://gateway.example.com/llama/v1",
        "http://admin:hunter2-secret@127.0.0.1:8001/v1",
        "http://127.0.0.1:8001/v1?token=hunter2-secret",
    ],
)
def test_a_replica_url_ending_in_v1_is_refused(url: str) -> None:
    data = minimal()
    data["models"][0]["replicas"][0]["url"] = url
    with pytest.raises(ConfigError) as caught:
        parse_router_config(data)
    message = str(caught.value)
    assert "models[0].replicas[0].url: Value error, must not end in /v1" in message
    assert "appends /v1/chat/completions" in message
    assert "hunter2-secret" not in message
    if "@" not in url:
        # The value, as it may be shown (a URL with userinfo is never quoted).
        assert "(got 'http" in message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8001", "http://127.0.0.1:8001/", "https://gw.example.com/llama"]
)
def test_a_replica_url_without_v1_is_kept(url: str) -> None:
    data = minimal()
    data["models"][0]["replicas"][0]["url"] = url
    assert str(parse_router_config(data).models[0].replicas[0].url).rstrip("/") == url.rstrip("/")


# -- other ambiguous shapes -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("list.yaml", "- models: []\n", "the top level must be a mapping, got list"),
        ("empty.yaml", "# nothing here\n", "the file is empty"),
        ("bool-key.yaml", "models: []\nyes: 1\n", "key True is not a string (quote it"),
        ("int-key.yaml", "contexts: {1: {}}\n", "contexts: key 1 is not a string"),
        ("nan.yaml", "cost: {willingness_to_pay: .nan}\n", "cost.willingness_to_pay: nan is not"),
        ("inf.json", '{"scoring": {"latency_weight": Infinity}}', "scoring.latency_weight: inf"),
        ("nan.toml", "[scoring]\nlatency_weight = nan\n", "scoring.latency_weight: nan is not"),
        ("date.yaml", "state_path: 2024-01-01\n", "state_path: a date is not a configuration"),
        ("date.toml", "state_path = 2024-01-01\n", "state_path: a date is not a configuration"),
        ("set.yaml", "fallbacks: !!set {a, b}\n", "fallbacks: a set is not a configuration"),
        ("digits.json", '{"port": ' + "9" * 5000 + "}", "cannot parse: Exceeds the limit"),
    ],
)
def test_ambiguous_documents_are_refused(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    assert expected in refused(write(tmp_path, name, text))


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("host: caf\u00e9\n".encode("latin-1"))
    assert refused(path) == f"{path}: not UTF-8 text (byte 9)"
