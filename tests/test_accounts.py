"""Provider accounts from the accounts file: what it may say, the errors it gets, how it
combines with the environment's accounts, and that a change is seen without a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genbatch import accounts
from genbatch.config import Settings, load_settings
from genbatch.errors import ConfigError
from genbatch.providers import accounts as provider_accounts
from genbatch.providers import registry, wavespeed
from genbatch.worker.queue_ahead import queue_ahead

PROVIDERS = ("novita", "highwayapi", "wavespeed", "byteplus")
TIERS = {"wavespeed": wavespeed.TIERS}
GOOD = """
[ws-a]
provider = "wavespeed"
api_key = "key-a"
tier = "silver"

[ws-b]
provider = "wavespeed"
api_key_env = "TEST_WS_KEY_B"
concurrency = 3
queue_ahead_max = 0
drain = true

[bp-1]
provider = "byteplus"
api_key = "key-bp"
submit_rpm = 180
[bp-1.models."seedance-1-5-pro-251215"]
concurrency = 3
submit_rpm = 30
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def settings(path: str, **more: object) -> Settings:
    return load_settings(accounts_file=path, novita_api_key="env-novita", **more)


def test_the_file_names_accounts_and_the_environment_fills_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WS_KEY_B", "key-b")
    s = settings(write(tmp_path, GOOD), wavespeed_api_key="env-ws", byteplus_max_in_flight=7)
    names = [a.label for a in provider_accounts.accounts(s)]
    # novita and highwayapi keep their environment accounts; wavespeed and byteplus have
    # exactly the file's (the environment's wavespeed key is not an account any more)
    assert names[:5] == ["novita", "highwayapi", "ws-a", "ws-b", "bp-1"]
    assert names[5:] == list(registry.names()[4:])  # later providers: their environment's
    ws_a, ws_b, bp = (provider_accounts.account(s, n) for n in ("ws-a", "ws-b", "bp-1"))
    assert (ws_a.name, ws_a.max_in_flight, ws_a.submit_rpm) == ("wavespeed", 300, 500.0)
    assert ws_a.queue_ahead_max == 20 and ws_b.queue_ahead_max == 0  # default, and set
    assert ws_b.api_key is not None and ws_b.api_key.get_secret_value() == "key-b"
    assert ws_b.drain and not ws_a.drain
    assert bp.max_in_flight == 7 and bp.submit_rpm == 180.0  # env default, file value
    limits = bp.model_limits("seedance-1-5-pro-251215")
    assert limits is not None and (limits.max_in_flight, limits.submit_rpm) == (3, 30.0)
    # Novita: what it does over its concurrency is unknown: no queueing ahead
    assert provider_accounts.account(s, "novita").queue_ahead_max == 0
    assert provider_accounts.keys_held(s) == ("novita", "ws-a", "ws-b", "bp-1")  # names, never keys
    assert provider_accounts.providers_held(s) == ("novita", "wavespeed", "byteplus")


def test_an_account_whose_variable_is_unset_has_no_key_here(tmp_path: Path) -> None:
    os.environ.pop("TEST_WS_KEY_B", None)
    s = settings(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="no API key for account 'ws-b' here: set "
                                          "TEST_WS_KEY_B"):
        provider_accounts.account(s, "ws-b").require_key()
    assert "ws-b" not in provider_accounts.keys_held(s)


@pytest.mark.parametrize(("text", "message"), [
    ('[Bad]\nprovider = "wavespeed"\napi_key = "k"', r"\[Bad\]: an account name is a-z"),
    ('[a]\nprovider = "nope"\napi_key = "k"', r"\[a\] provider: must be one of novita"),
    ('[a]\nprovider = "novita"\napi_key = "k"\nspeed = 3', r"\[a\] speed: unknown setting"),
    ('[a]\nprovider = "novita"', r"\[a\]: give exactly one of api_key and api_key_env"),
    ('[a]\nprovider = "novita"\napi_key = "k"\napi_key_env = "X"', "exactly one of"),
    ('[a]\nprovider = "novita"\napi_key = "k"\nconcurrency = 0',
     r"\[a\] concurrency: must be a whole number of at least 1"),
    ('[a]\nprovider = "novita"\napi_key = "k"\nconcurrency = 2.5', "a whole number"),
    ('[a]\nprovider = "byteplus"\napi_key = "k"\ntier = "gold"',
     r"\[a\] tier: only wavespeed accounts have a tier"),
    ('[a]\nprovider = "wavespeed"\napi_key = "k"\ntier = "platinum"', "must be one of bronze"),
    ('[novita]\nprovider = "byteplus"\napi_key = "k"', "the name of another provider"),
    ('[a]\nprovider = "byteplus"\napi_key = "k"\n[a.models.m]\nburst = 1',
     r"\[a\] models.'m' burst: unknown setting"),
    ('[a\nprovider = "novita"', "not valid TOML"),
])
def test_a_bad_file_is_one_line_naming_file_account_and_field(
        tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        provider_accounts.accounts(settings(path))
    assert str(err.value).startswith(path) and "\n" not in str(err.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"GENBATCH_ACCOUNTS_FILE: cannot read .*nope\.toml"):
        provider_accounts.accounts(settings(str(tmp_path / "nope.toml")))


def test_a_change_is_seen_without_a_restart_and_a_bad_edit_keeps_what_was_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "RECHECK_S", 0.0)
    path = write(tmp_path, '[ws-a]\nprovider = "wavespeed"\napi_key = "a"\n')
    s = settings(path)
    assert [a.label for a in provider_accounts.accounts(s, "wavespeed")] == ["ws-a"]
    Path(path).write_text('[ws-a]\nprovider = "wavespeed"\napi_key = "a"\n'
                          '[ws-new]\nprovider = "wavespeed"\napi_key = "n"\n', encoding="utf-8")
    assert [a.label for a in provider_accounts.accounts(s, "wavespeed")] == ["ws-a", "ws-new"]
    Path(path).write_text("[ws-a\n", encoding="utf-8")  # a half-saved edit
    assert [a.label for a in provider_accounts.accounts(s, "wavespeed")] == ["ws-a", "ws-new"]


def test_an_account_asked_for_by_name_is_looked_for_in_the_file_at_once(
        tmp_path: Path) -> None:
    """The scheduler may dispatch to an account just added before a worker re-read the
    file: the worker must find it, not count it as a missing key."""
    path = write(tmp_path, '[ws-a]\nprovider = "wavespeed"\napi_key = "a"\n')
    s = settings(path)
    # read: cached 2 s now
    assert [a.label for a in provider_accounts.accounts(s, "wavespeed")] == ["ws-a"]
    Path(path).write_text('[ws-a]\nprovider = "wavespeed"\napi_key = "a"\n'
                          '[ws-b]\nprovider = "wavespeed"\napi_key = "b"\n', encoding="utf-8")
    assert provider_accounts.account(s, "ws-b").label == "ws-b"


def test_unknown_account_names_the_known_ones(tmp_path: Path) -> None:
    s = settings(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="no account 'ws-z' here; known: novita, "
                                          "highwayapi, ws-a, ws-b, bp-1"):
        provider_accounts.account(s, "ws-z")


def test_queue_ahead_is_sized_from_the_generation_time_and_bounded() -> None:
    s = Settings(poll_min_interval_s=5.0)
    # C x 2 poll spacings / T: spacing max(5 s, 0.15 T)
    assert queue_ahead(20, 50, 60.0, s) == 6   # 20 x 2 x 9 / 60
    assert queue_ahead(20, 50, 20.0, s) == 10  # 20 x 2 x 5 / 20
    assert queue_ahead(20, 4, 20.0, s) == 4    # bounded
    assert queue_ahead(20, 0, 20.0, s) == 0    # off
    assert queue_ahead(2, 50, 3600.0, s) == 1  # a long (flex) generation: one ahead
    assert queue_ahead(20, 12, None, s) == 12  # nothing learned yet: the bound
    assert accounts.parse_accounts("", "f", PROVIDERS, {}) == ()


def test_the_shipped_example_and_the_documented_example_parse() -> None:
    root = Path(__file__).resolve().parents[1]
    example = (root / "config" / "accounts.example.toml").read_text(encoding="utf-8")
    names = [a.name for a in accounts.parse_accounts(example, "example", PROVIDERS, {}, TIERS)]
    assert names == ["ws-a", "ws-b", "bp-1"]
    page = (root / "docs" / "operating" / "accounts.md").read_text(encoding="utf-8")
    toml = page.split("```toml\n", 1)[1].split("```", 1)[0]
    assert [a.name for a in accounts.parse_accounts(toml, "docs", PROVIDERS, {}, TIERS)] == \
        ["ws-a", "ws-b", "bp-1"]


def test_probable_mistakes_are_warned_about_naming_the_closest_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("GENBATCH_")]:
        monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)  # no .env
    path = write(tmp_path, '[bp-1]\nprovider = "byteplus"\napi_key_env = "GB_TEST_UNSET_KEY"\n'
                           '[bp-2]\nprovider = "byteplus"\napi_key = "k"\n')
    s = Settings(accounts_file=path, novta_api_key="k", wavespeed_webhok_secret="s",
                 totally_unknown="1")

    assert provider_accounts.setting_warnings(s) == [
        "GENBATCH_NOVTA_API_KEY is not a genbatch setting and is ignored; did you mean "
        "GENBATCH_NOVITA_API_KEY?",
        "GENBATCH_TOTALLY_UNKNOWN is not a genbatch setting and is ignored",
        "GENBATCH_WAVESPEED_WEBHOK_SECRET is not a genbatch setting and is ignored; did you "
        "mean GENBATCH_WAVESPEED_WEBHOOK_SECRET?",
        "account bp-1: GB_TEST_UNSET_KEY is not set here, so this process cannot use it",
    ]
    assert provider_accounts.setting_warnings(Settings(novita_api_key="k")) == []
