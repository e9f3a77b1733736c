"""MkDocs hook: the CLI and configuration references, generated from the code at each build.

`mkdocs.yml` lists this file under `hooks:`. At `on_files` it adds two pages that exist in no
file, so they cannot drift from the code:

- `reference/cli.md`: every command of the click tree behind `genbatch.cli.app`
  (`typer.main.get_command`), its help, usage, arguments and options;
- `reference/configuration.md`: every field of `genbatch.config.Settings`, with its
  environment variable, type, default, bounds and description.

At `on_page_markdown` a line `<!-- settings: PROVIDER -->` (the provider pages) becomes the
table of that provider's settings.

`tests/test_docs.py` imports this module by path and checks both pages name every command and
every setting.
"""

from __future__ import annotations

import html
import inspect
import re
import types
import typing
from typing import Any

CLI_PAGE = "reference/cli.md"
SETTINGS_PAGE = "reference/configuration.md"

# Settings fields declared without a `description=` (the descriptions these had in the
# README's Configuration table). A description given in genbatch/config.py wins.
FALLBACK_DESCRIPTIONS: dict[str, str] = {
    "connect_timeout_s": "HTTP connect timeout",
    "download_timeout_s": "read timeout of a video download",
    "poll_min_interval_s": "never poll more often (WaveSpeed asks ≥ 5 s, Novita 3-5 s)",
    "poll_max_interval_s": "backoff cap between polls",
    "scheduler_tick_s": "scheduler loop period (two ticks are also the slack of the even "
                        "spacing of requests after a 429)",
    "dispatch_batch_size": "most submits one dispatch enqueues per provider",
    "worker_concurrency": "tasks a worker runs at once",
    "worker_pool": "Celery pool: `threads`, `prefork` or `solo`",
    "log_level": "log level of the long-running commands",
    "novita_submit_rpm": "submits per minute for the account, all workers together (a guess: "
                         "Novita publishes no Seedance RPM; its archived table lists 20 for "
                         "video models)",
    "novita_poll_rpm": "polls per minute for the account (a guess)",
    "highwayapi_submit_rpm": "submits per minute for the account (HighwayAPI states about "
                             "200 RPM for Seedance)",
    "highwayapi_poll_rpm": "polls per minute for the account (a guess)",
    "wavespeed_submit_rpm": "submits per minute for the account (Bronze level: 2 videos per "
                            "minute)",
    "wavespeed_poll_rpm": "polls per minute for the account (a guess; polls are ≥ 5 s apart "
                          "per item anyway)",
    "wavespeed_max_in_flight": "the account's concurrency (Bronze level allows 2; WaveSpeed "
                               "queues tasks over it, see Queueing ahead)",
    "byteplus_submit_rpm": "submits per minute for the account (a guess: ModelArk enforces "
                           "an RPM but publishes none for Seedance)",
    "byteplus_poll_rpm": "polls per minute for the account (a guess)",
    "byteplus_base_url": "BytePlus ModelArk base URL, with or without `/api/v3`",
}
PROVIDER_LABELS = {"novita": "Novita", "highwayapi": "HighwayAPI", "wavespeed": "WaveSpeed",
                   "byteplus": "BytePlus ModelArk"}


# ---------------------------------------------------------------- markdown helpers


def _escape(text: str) -> str:
    """Markdown-safe text; `code spans` are kept as they are."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        part = html.escape(parts[i], quote=False)
        parts[i] = re.sub(r"([\\*_\[\]|])", r"\\\1", part)
    return "`".join(parts)


def _code(text: str) -> str:
    """A code span for a table cell (a `|` would end the cell)."""
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return _escape(" ".join(text.split()))


# ---------------------------------------------------------------- CLI


def cli_commands() -> list[tuple[str, Any, Any]]:
    """(command path, click command, click context) of every visible command, depth first."""
    import typer

    from genbatch.cli import app

    root = typer.main.get_command(app)
    found: list[tuple[str, Any, Any]] = []

    def walk(command: Any, name: str, parent: Any) -> None:
        ctx = command.context_class(command, info_name=name, parent=parent)
        found.append((ctx.command_path, command, ctx))
        if hasattr(command, "commands"):
            for sub in command.list_commands(ctx):
                child = command.get_command(ctx, sub)
                if child is not None and not child.hidden:
                    walk(child, sub, ctx)

    walk(root, "genbatch", None)
    return found


def _anchor(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def cli_reference() -> str:
    commands = cli_commands()
    out = [
        "# CLI reference",
        "",
        "Generated at each build from the commands themselves (`genbatch.cli.app`, walked "
        "with `typer.main.get_command`): it is what `genbatch COMMAND --help` prints. "
        "The [Commands](../commands.md) page says what each does in more words.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for path, command, _ctx in commands[1:]:
        short = command.get_short_help_str(limit=120)
        out.append(f"| [`{path}`](#{_anchor(path)}) | {_cell(short)} |")
    out.append("")
    for path, command, ctx in commands:
        level = "##" if path.count(" ") <= 1 else "###"
        out += [f"{level} {path}", ""]
        out += ["```text", f"{path} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
        doc = inspect.cleandoc(command.help or "")
        if doc:
            out += [_escape(doc.replace("\b\n", "")), ""]
        rows = []
        for param in command.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            decl, text = record
            if param.param_type_name == "argument":
                text = getattr(param, "help", None) or ""
                required = " (required)" if param.required else ""
                rows.append(f"| {_code(decl)} | argument{required} | {_cell(text)} |")
            else:
                rows.append(f"| {_code(decl)} | option | {_cell(text)} |")
        if rows:
            out += ["| name | kind | meaning |", "|---|---|---|", *rows, ""]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- Settings


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any]) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    found = []
    for item in metadata:
        for attr, sign in signs.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return ", ".join(found)


def _sections(cls: type) -> dict[str, str]:
    """Field name → the `# Comment.` heading above it in the class body (its group)."""
    groups: dict[str, str] = {}
    current = "General"
    for line in inspect.getsource(cls).splitlines():
        comment = re.match(r"    # (.+)", line)
        field = re.match(r"    ([a-z_0-9]+): ", line)
        if comment:
            current = comment.group(1).split(" (")[0].split(": ")[0].rstrip(".")
        elif field:
            groups[field.group(1)] = current
    return groups


def settings_fields() -> list[dict[str, str]]:
    """One row per Settings field: env, type, default, bounds, description, group."""
    from genbatch.config import NOT_VARIABLES, Settings

    prefix = str(Settings.model_config.get("env_prefix", ""))
    groups = _sections(Settings)
    rows = []
    for name, field in Settings.model_fields.items():
        if name in NOT_VARIABLES:
            continue
        provider = name.split("_", 1)[0]
        description = field.description or FALLBACK_DESCRIPTIONS.get(name, "")
        if not description and provider in PROVIDER_LABELS:
            label = PROVIDER_LABELS[provider]
            description = {
                "api_key": f"{label} API key",
                "base_url": f"{label} API base URL",
                "max_in_flight": "the account's concurrency: generations in flight at once (on "
                                 "WaveSpeed and BytePlus the queue-ahead comes on top); the "
                                 "default of the provider's accounts in the accounts file",
            }.get(name.split("_", 1)[1], "")
        secret = "SecretStr" in _type_name(field.annotation)
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else ("`\"\"`" if default == "" else f"`{default}`")
        if default is None and provider in PROVIDER_LABELS and not secret:
            shown = f"the provider's ([{PROVIDER_LABELS[provider]}](../providers/{provider}.md))"
        rows.append({
            "name": name, "env": f"{prefix}{name.upper()}", "type": _type_name(field.annotation),
            "default": shown, "bounds": _bounds(field.metadata),
            "description": description + (" (secret: never logged or shown)" if secret else ""),
            "group": groups.get(name, "General"),
        })
    return rows


def settings_reference() -> str:
    out = [
        "# Configuration reference",
        "",
        "One `Settings` object (pydantic-settings), read from environment variables "
        "`GENBATCH_*` or a `.env` file in the working directory; built once at each entry "
        "point. Named provider accounts, several per provider, come from the accounts file "
        "(`GENBATCH_ACCOUNTS_FILE`, see [Accounts](../operating/accounts.md)).",
        "",
        "Generated at each build from `genbatch.config.Settings`: every field, its variable, "
        "type, default, bounds and description.",
        "",
    ]
    group = None
    for row in settings_fields():
        if row["group"] != group:
            group = row["group"]
            out += ["", f"## {group}", "", "| variable | type | default | meaning |",
                    "|---|---|---|---|"]
        bounds = f" ({row['bounds']})" if row["bounds"] else ""
        out.append(f"| `{row['env']}` | {row['type']} | {row['default']}{bounds} | "
                   f"{_cell(row['description'])} |")
    return "\n".join(out) + "\n"


def provider_settings(provider: str) -> str:
    """The table of one provider's settings (`GENBATCH_<PROVIDER>_*`), for its page: the ones
    every provider reads and its plugin's own, with the plugin's defaults."""
    from genbatch.providers import registry
    from genbatch.providers.accounts import PROVIDER_SETTINGS

    plugin = registry.get(provider)
    limits = plugin.limits
    defaults = {
        plugin.key_setting: "unset", "base_url": f"`{limits.base_url}`",
        "max_in_flight": f"`{limits.max_in_flight}`", "submit_rpm": f"`{limits.submit_rpm:g}`",
        "poll_rpm": f"`{limits.poll_rpm:g}`",
        "video_hosts": ", ".join(f"`{h}`" for h in plugin.outputs.video_hosts),
    }
    declared = {row["name"]: row for row in settings_fields()}
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name in (plugin.key_setting, *PROVIDER_SETTINGS, *plugin.settings):
        field = f"{provider}_{name}"
        meaning = plugin.settings.get(name) or (declared[field]["description"] if field in
                                                declared else GENERIC_MEANINGS.get(name, ""))
        if name == plugin.key_setting and "secret" not in meaning:
            meaning = f"{meaning or 'the API key'} (secret: never logged or shown)"
        env = f"GENBATCH_{field.upper()}"
        rows.append(f"| `{env}` | {defaults.get(name, 'unset')} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


GENERIC_MEANINGS = {
    "api_key": "the account's API key",
    "base_url": "API base URL",
    "max_in_flight": "the account's concurrency: generations in flight at once",
    "submit_rpm": "submits per minute for the account, all workers together",
    "poll_rpm": "polls per minute for the account",
    "video_hosts": "comma-separated host patterns video URLs may point at",
}


SETTINGS_MARK = re.compile(r"^<!-- settings: ([a-z]+) -->$", re.MULTILINE)


# ---------------------------------------------------------------- the hook


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    files.append(File.generated(config, SETTINGS_PAGE, content=settings_reference()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """`<!-- settings: wavespeed -->` on a line of its own becomes that provider's settings."""
    return SETTINGS_MARK.sub(lambda m: provider_settings(m.group(1)), markdown)
