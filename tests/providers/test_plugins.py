"""Providers found by entry point: genbatch's own, a third-party one installed beside it (a
real distribution on sys.path), and broken ones named in one line while the others work."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from genbatch.config import Settings
from genbatch.errors import ConfigError
from genbatch.providers import accounts, registry
from genbatch.providers.plugin import Capability

BUILTINS = ("novita", "highwayapi", "wavespeed", "byteplus")

GOOD = '''
from dataclasses import replace
from genbatch.providers import novita
from genbatch.providers.plugin import Limits, Outputs, ProviderPlugin

class ZetaAdapter(novita.NovitaProvider):
    name = "zeta"

PLUGIN = ProviderPlugin(
    name="zeta", summary="a test provider", adapter=ZetaAdapter,
    models={"zeta-1": replace(novita.SEEDANCE_V1_PRO, name="zeta-1", wire_model="zeta-1")},
    limits=Limits(base_url="https://api.zeta.test", max_in_flight=7, submit_rpm=30,
                  poll_rpm=300),
    outputs=Outputs(video_hosts=("*.zeta.test",)),
)
'''


def install(root: Path, dist: str, module: str, source: str, points: dict[str, str]) -> None:
    """A real installed distribution: its module and a dist-info with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"  # as wheels name it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n",
                                   encoding="utf-8")
    lines = "\n".join(f"{name} = {target}" for name, target in points.items())
    (info / "entry_points.txt").write_text(f"[genbatch.providers]\n{lines}\n", encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    registry.reload()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("gbplug_")]:
            del sys.modules[name]
        registry.reload()


def test_genbatchs_own_providers_come_from_its_entry_points() -> None:
    assert registry.names()[:4] == BUILTINS
    assert {registry.get(p).package for p in BUILTINS} == {"genbatch"}
    assert registry.broken() == ()


def test_an_installed_package_adds_a_provider_with_its_models_and_limits(site: Path) -> None:
    install(site, "genbatch-zeta", "gbplug_zeta", GOOD, {"zeta": "gbplug_zeta:PLUGIN"})
    registry.reload()

    assert registry.names()[:4] == BUILTINS and "zeta" in registry.names()
    plugin = registry.get("zeta")
    assert plugin.package == "genbatch-zeta" and list(plugin.models) == ["zeta-1"]
    account = accounts.env_account(Settings(zeta_api_key="zk", zeta_submit_rpm="12"), "zeta")
    assert (account.base_url, account.max_in_flight, account.submit_rpm) == (
        "https://api.zeta.test", 7, 12.0)
    assert account.require_key().get_secret_value() == "zk"
    assert accounts.keys_held(Settings(zeta_api_key="zk")) == ("zeta",)


def test_a_plugin_setting_of_the_wrong_kind_names_the_variable(site: Path) -> None:
    install(site, "genbatch-zeta", "gbplug_zeta", GOOD, {"zeta": "gbplug_zeta:PLUGIN"})
    registry.reload()
    with pytest.raises(ConfigError, match=r"^GENBATCH_ZETA_MAX_IN_FLIGHT=lots: must be a "):
        accounts.env_account(Settings(zeta_max_in_flight="lots"), "zeta")


@pytest.mark.parametrize(("source", "reason"), [
    ("import not_a_module_anywhere\n", "ModuleNotFoundError: No module named"),
    ("def PLUGIN():\n    raise RuntimeError('no licence key')\n", "RuntimeError: no licence key"),
    (GOOD.replace('models={"zeta-1": replace(novita.SEEDANCE_V1_PRO, name="zeta-1", '
                  'wire_model="zeta-1")}', "models={}"), "its model table is empty"),
    (GOOD.replace('name="zeta-1"', 'name="other"'), "listed under another name"),
    (GOOD.replace('outputs=Outputs(video_hosts=("*.zeta.test",)),',
                  'outputs=Outputs(video_hosts=("*.zeta.test",)), '
                  'capabilities=frozenset({"list_tasks"}),'),
     "declares list_tasks but its adapter has no list_tasks()"),
    ("PLUGIN = 42\n", "the entry point gives int, not a ProviderPlugin"),
])
def test_a_broken_plugin_is_named_in_one_line_and_the_others_work(
        site: Path, caplog: pytest.LogCaptureFixture, source: str, reason: str) -> None:
    before = registry.names()
    install(site, "genbatch-zeta", "gbplug_zeta", source, {"zeta": "gbplug_zeta:PLUGIN"})
    with caplog.at_level(logging.WARNING, logger="genbatch.providers.registry"):
        registry.reload()
        names = registry.names()

    assert names == before and "zeta" not in names  # the others keep working
    (broken,) = registry.broken()
    assert (broken.name, broken.package) == ("zeta", "genbatch-zeta")
    assert reason in broken.reason and "\n" not in broken.reason
    assert any("'zeta' (package genbatch-zeta) left out" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ConfigError, match=r"provider 'zeta' \(package genbatch-zeta\) is not"):
        registry.get("zeta")


def test_a_second_plugin_cannot_take_a_name_already_taken(site: Path) -> None:
    install(site, "genbatch-zeta", "gbplug_zeta", GOOD, {"zeta": "gbplug_zeta:PLUGIN"})
    install(site, "genbatch-zeta2", "gbplug_zeta2", GOOD.replace('name="zeta"', 'name="novita"'),
            {"novita": "gbplug_zeta2:PLUGIN"})
    registry.reload()

    assert registry.get("novita").package == "genbatch"
    assert [(b.name, b.package, b.reason) for b in registry.broken()] == [
        ("novita", "genbatch-zeta2", "the name is taken by package genbatch")]


def test_the_built_ins_declare_what_their_adapters_do() -> None:
    have = {p: {str(c) for c in registry.get(p).capabilities} for p in BUILTINS}
    assert have["wavespeed"] >= {Capability.UPLOAD, Capability.LIST, Capability.CALLBACKS,
                                 Capability.SIGNED_CALLBACKS}
    assert have["byteplus"] >= {Capability.CANCEL, Capability.LIST}
    assert Capability.LIST not in have["novita"] and Capability.UPLOAD not in have["novita"]
    assert registry.get("wavespeed").limits.queues and not registry.get("novita").limits.queues


def test_genbatch_providers_lists_each_with_its_package_and_names_the_broken(
        site: Path) -> None:
    from typer.testing import CliRunner

    from genbatch.cli import app

    install(site, "genbatch-zeta", "gbplug_zeta", GOOD, {"zeta": "gbplug_zeta:PLUGIN"})
    install(site, "genbatch-bad", "gbplug_bad", "PLUGIN = 42\n", {"bad": "gbplug_bad:PLUGIN"})
    registry.reload()
    runner = CliRunner()

    listed = runner.invoke(app, ["providers", "--json"])
    text = runner.invoke(app, ["providers"], env={"COLUMNS": "120"})

    assert listed.exit_code == 0 and text.exit_code == 0
    data = json.loads(listed.stdout)
    by_name = {p["name"]: p for p in data["providers"]}
    assert list(by_name)[:4] == list(BUILTINS) and by_name["zeta"]["package"] == "genbatch-zeta"
    assert by_name["zeta"]["models"][0]["name"] == "zeta-1"
    assert by_name["zeta"]["limits"]["concurrency"] == 7
    assert "GENBATCH_ZETA_API_KEY" in by_name["zeta"]["settings"]
    assert set(by_name["wavespeed"]["capabilities"]) >= {"upload", "list_tasks"}
    assert by_name["wavespeed"]["limits"]["over_concurrency"] == "queues"
    assert data["broken"] == [{"name": "bad", "package": "genbatch-bad",
                               "reason": "the entry point gives int, not a ProviderPlugin"}]
    assert "zeta" in text.stdout and "genbatch-zeta" in text.stdout
    assert "broken: provider 'bad' (package genbatch-bad): the entry point gives int" in \
        text.stdout
